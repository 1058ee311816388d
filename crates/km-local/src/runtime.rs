//! The local provider's own `spec.runtime` fields: `isolation` and `network`.

use std::fmt;

use km_core::profile::{FieldError, Runtime};
use serde::{Deserialize, Serialize};

/// What a local profile may say under `spec.runtime` besides `substrate`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalRuntime {
    /// What separates the sandbox from this machine; default `namespaces`.
    #[serde(default)]
    pub isolation: Isolation,
    /// Which network the sandbox sees; default `host`.
    #[serde(default)]
    pub network: Network,
}

impl LocalRuntime {
    /// The fields a local profile's `spec.runtime` takes.
    pub const KEYS: &[&str] = &["isolation", "network"];

    /// Reads them from a profile's runtime, each error at its place.
    pub fn of(runtime: &Runtime) -> Result<Self, Vec<FieldError>> {
        runtime.section(Self::KEYS)
    }
}

/// `spec.runtime.isolation`: what separates a local sandbox from the machine it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Its own user, mount, pid, ipc and uts namespaces (bubblewrap): the operator's files,
    /// processes and other sandboxes are out of its sight.
    #[default]
    Namespaces,
    /// None: the sandbox runs as the operator, with the operator's access.
    None,
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Namespaces => "namespaces",
            Self::None => "none",
        })
    }
}

/// `spec.runtime.network`: which network a local sandbox sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The machine's own network, loopback included.
    #[default]
    Host,
    /// A network of its own with only loopback: no internet, no service of the machine.
    None,
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Host => "host",
            Self::None => "none",
        })
    }
}

//! Sandbox profiles: the YAML schema, `extends` inheritance and the resolved result.

mod load;
mod merge;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

pub use load::{ProfileError, SearchPath, load_profile};
pub use merge::Merge;

/// The only `apiVersion` km understands.
pub const API_VERSION: &str = "klankermaker.ai/v1alpha1";
/// The only `kind` km understands.
pub const KIND: &str = "SandboxProfile";

/// One profile file as written; every field is optional so a child can inherit it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfileDoc {
    /// Must be [`API_VERSION`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Must be [`KIND`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name, ID prefix and labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Parent profiles, by file base name; later parents override earlier ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extends: Option<Spanned<Extends>>,
    /// What the sandbox runs on and how the operator reaches it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<Spec>,
}

/// `extends: base` or `extends: [a, b]`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Extends {
    /// A single parent.
    One(String),
    /// Several parents, applied in order.
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Extends {
    // Written by hand: serde's untagged buffering loses the YAML locations km reports.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExtendsVisitor;
        impl<'de> serde::de::Visitor<'de> for ExtendsVisitor {
            type Value = Extends;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a profile name or a list of profile names")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Extends, E> {
                Ok(Extends::One(name.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Extends, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(Extends::Many(names))
            }
        }
        deserializer.deserialize_any(ExtendsVisitor)
    }
}

impl Extends {
    fn names(&self) -> Vec<String> {
        match self {
            Self::One(name) => vec![name.clone()],
            Self::Many(names) => names.clone(),
        }
    }
}

/// `metadata`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// The profile's name (required in the profile being used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Sandbox ID prefix, `^[a-z][a-z0-9]{0,11}$`; default `sb`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Spanned<String>>,
    /// Free-form labels, merged per key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// `spec`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// `spec.runtime`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// `spec.cli`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cli: Option<CliSpec>,
}

/// Where the sandbox runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Substrate {
    /// A supervised process sandbox on this machine.
    Local,
    /// An EC2 instance.
    Ec2,
}

impl fmt::Display for Substrate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Local => "local",
            Self::Ec2 => "ec2",
        })
    }
}

/// `spec.runtime`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Runtime {
    /// `local` or `ec2`; default `local`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub substrate: Option<Substrate>,
    /// EC2 instance type (ec2 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// AWS region (ec2 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// AMI ID (ec2 only); default: the latest Amazon Linux 2023 image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ami: Option<String>,
    /// What separates the sandbox from this machine (local only); default `namespaces`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    /// Which network the sandbox sees (local only); default `host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
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

/// `spec.cli`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CliSpec {
    /// Provision sshd + authorized_keys at boot; omitted inherits, default true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vscode_enabled: Option<bool>,
}

/// A profile with inheritance applied and defaults filled in.
#[derive(Debug, Clone)]
pub struct Profile {
    /// `metadata.name`.
    pub name: String,
    /// The ID prefix.
    pub prefix: String,
    /// Where the sandbox runs.
    pub substrate: Substrate,
    /// Whether the sandbox gets sshd and the operator's key.
    pub vscode_enabled: bool,
    /// The fully resolved document, as `km validate` prints it.
    pub resolved: ProfileDoc,
}

impl Profile {
    /// The resolved `spec.runtime` (region, instance type, AMI), empty where unset.
    pub fn runtime(&self) -> Runtime {
        self.resolved
            .spec
            .as_ref()
            .and_then(|spec| spec.runtime.clone())
            .unwrap_or_default()
    }

    /// The resolved profile as YAML.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(&self.resolved).unwrap_or_default()
    }
}

//! What the management component understands and is sent: its manifest (version, build,
//! the request fields it decodes), the create and destroy requests, and the outcome it writes
//! back. The queue and the manager itself (`manager`) and the AWS deployment (`platforms`) both
//! build on this.

#[cfg(feature = "aws")]
use std::collections::BTreeMap;
use std::path::Path;

use km_core::id::{Alias, SandboxId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{CommandResult, io_at};
#[cfg(feature = "aws")]
use crate::ui;

/// The request field that carries the operator's public key.
pub(crate) const VSCODE_KEY_FIELD: &str = "VSCodeSSHPubKey";
/// The Lambda manager's environment variable that carries the AWS platform's settings (JSON,
/// as in `~/.km/config.json`), written by `km init --aws --sidecars`.
#[cfg(feature = "aws")]
pub(crate) const PLATFORM_VAR: &str = "KM_PLATFORM";
/// What an installed manager is and understands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    /// km's version.
    pub(crate) version: String,
    /// `sha256:` of the manager's executable: two builds of one version differ here.
    pub(crate) build_id: String,
    /// Every field of a create request this manager decodes.
    pub(crate) request_fields: Vec<String>,
}

impl Manifest {
    /// This build's manifest.
    pub(crate) fn of_this_build(exe: &Path) -> CommandResult<Self> {
        Ok(Self {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            build_id: build_id(exe)?,
            request_fields: CreateRequest::FIELDS
                .iter()
                .map(|f| (*f).to_owned())
                .collect(),
        })
    }

    /// `km X (build abcdef012345)`.
    pub(crate) fn short(&self) -> String {
        let hex = self.hex();
        format!("km {} (build {})", self.version, &hex[..hex.len().min(12)])
    }

    /// The build ID's hex digits.
    pub(crate) fn hex(&self) -> &str {
        self.build_id.trim_start_matches("sha256:")
    }

    /// The manifest as a Lambda function's environment.
    #[cfg(feature = "aws")]
    pub(crate) fn to_environment(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("KM_VERSION".to_owned(), self.version.clone()),
            ("KM_BUILD_ID".to_owned(), self.build_id.clone()),
            (
                "KM_REQUEST_FIELDS".to_owned(),
                self.request_fields.join(","),
            ),
        ])
    }

    /// The manifest a function's environment carries, if it carries one.
    #[cfg(feature = "aws")]
    pub(crate) fn from_environment(environment: &BTreeMap<String, String>) -> Option<Self> {
        Some(Self {
            version: environment.get("KM_VERSION")?.clone(),
            build_id: environment.get("KM_BUILD_ID")?.clone(),
            request_fields: environment
                .get("KM_REQUEST_FIELDS")?
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

pub(crate) fn build_id(exe: &Path) -> CommandResult<String> {
    let bytes = std::fs::read(exe).map_err(io_at(exe))?;
    let digest = Sha256::digest(&bytes);
    Ok(format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

/// A create request, as the manager decodes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRequest {
    pub(crate) request_id: String,
    pub(crate) sandbox_id: SandboxId,
    pub(crate) alias: Option<Alias>,
    /// The resolved profile (`extends` applied), as YAML.
    pub(crate) profile: String,
    /// Where the operator read the profile from, for the record.
    pub(crate) profile_path: String,
    /// The operator's public key line, when the profile enables VS Code.
    #[serde(rename = "VSCodeSSHPubKey")]
    pub(crate) vscode_ssh_pub_key: Option<String>,
}

impl CreateRequest {
    /// The fields this build decodes (kept equal to the struct by a unit test).
    pub(crate) const FIELDS: &'static [&'static str] = &[
        "request_id",
        "sandbox_id",
        "alias",
        "profile",
        "profile_path",
        VSCODE_KEY_FIELD,
    ];
}

/// A destroy request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DestroyRequest {
    pub(crate) request_id: String,
    pub(crate) sandbox_id: SandboxId,
    /// Destroy even when locked (`km destroy --force`).
    pub(crate) force: bool,
}

/// What the manager wrote back for a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Outcome {
    pub(crate) request_id: String,
    /// `done` or `failed`.
    pub(crate) state: String,
    /// Why it failed, in the manager's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// Warns that the manager `installed` is not this km (`this`), naming what it does not know.
#[cfg(feature = "aws")]
pub(crate) fn report_difference(installed: &Manifest, this: &Manifest, update: &str) {
    if installed.build_id == this.build_id {
        ui::status(&format!("✓ Management component is {}", installed.short()));
    } else {
        ui::warn(&difference(installed, this, update));
    }
}

/// How the manager `installed` differs from this km, and the command that updates it.
pub(crate) fn difference(installed: &Manifest, this: &Manifest, update: &str) -> String {
    let missing: Vec<_> = this
        .request_fields
        .iter()
        .filter(|f| !installed.request_fields.contains(f))
        .cloned()
        .collect();
    let gap = if missing.is_empty() {
        String::new()
    } else {
        format!(", does not know {}", missing.join(", "))
    };
    format!(
        "the management component is {}{gap}, not this {} — run: {update}",
        installed.short(),
        this.short()
    )
}

/// A request to a platform's management component that `km doctor` reports: one that waited
/// too long, or whose manager attempt ended without writing its end.
pub(crate) struct StaleRequest {
    pub(crate) detail: String,
    /// What `--fix` did: `Ok(how)` or `Err(why not)`; `None` when not asked or nothing to do.
    pub(crate) fixed: Option<Result<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_lists_exactly_the_fields_a_request_carries() {
        let request = CreateRequest {
            request_id: "create-sb-0123abcd-1".into(),
            sandbox_id: "sb-0123abcd".parse().unwrap(),
            alias: None,
            profile: String::new(),
            profile_path: String::new(),
            vscode_ssh_pub_key: None,
        };
        let value = serde_json::to_value(&request).unwrap();
        let mut fields: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        let mut listed = CreateRequest::FIELDS.to_vec();
        listed.sort_unstable();
        assert_eq!(fields, listed);
    }

    #[cfg(feature = "aws")]
    #[test]
    fn a_manifest_survives_the_trip_through_a_function_environment() {
        let manifest = Manifest {
            version: "0.1.0".into(),
            build_id: "sha256:00ff".into(),
            request_fields: CreateRequest::FIELDS
                .iter()
                .map(|f| (*f).to_owned())
                .collect(),
        };
        assert_eq!(
            Manifest::from_environment(&manifest.to_environment()),
            Some(manifest)
        );
        assert_eq!(Manifest::from_environment(&BTreeMap::new()), None);
    }

    #[test]
    fn an_unknown_field_is_refused_by_name() {
        let error = serde_json::from_value::<DestroyRequest>(serde_json::json!({
            "request_id": "destroy-sb-0123abcd-1",
            "sandbox_id": "sb-0123abcd",
            "force": false,
            "surprise": true,
        }))
        .unwrap_err();
        assert!(
            error.to_string().contains("unknown field `surprise`"),
            "{error}"
        );
    }
}

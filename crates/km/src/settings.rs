//! This machine's km settings (`~/.km/config.json`), written by `km init`: which platform's
//! store holds the sandbox records, and what the AWS platform launches instances with.

use km_core::id::Operator;
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::error::{CommandError, CommandResult, io_at};

/// Where this machine's sandbox records live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PlatformChoice {
    /// SQLite in `~/.km`, sandboxes on this machine.
    #[default]
    Local,
    /// A DynamoDB table shared by the team, sandboxes on EC2.
    Aws,
}

/// What `km init --aws` saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AwsSettings {
    /// The region of the DynamoDB table (and the default for sandboxes).
    pub(crate) region: String,
    /// The DynamoDB table of sandbox records.
    pub(crate) table: String,
    /// EC2 instance type for sandboxes.
    pub(crate) instance_type: String,
    /// Subnet to launch in (the default VPC's when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) subnet: Option<String>,
    /// Security group for sandboxes (the VPC's default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) security_group: Option<String>,
    /// IAM instance profile that lets the SSM agent register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) instance_profile: Option<String>,
    /// The S3 bucket of the management component's artifacts (`km init --aws --sidecars`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) manager_bucket: Option<String>,
    /// The Lambda function that runs the management component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) manager_function: Option<String>,
}

/// The whole settings file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Settings {
    #[serde(default)]
    pub(crate) platform: PlatformChoice,
    /// This operator's name on the keys it makes (`km init --operator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) operator: Option<Operator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) aws: Option<AwsSettings>,
    /// Everything else km init recorded (tool paths, version), kept as it was.
    #[serde(flatten)]
    pub(crate) other: serde_json::Map<String, serde_json::Value>,
}

/// `user@host` with anything an operator name cannot hold replaced, for machines that never
/// named their operator.
fn default_operator(context: &Context) -> Operator {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let user = context.user.clone().unwrap_or_else(|| "operator".into());
    let cleaned: String = format!("{user}@{host}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    cleaned
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .parse()
        .unwrap_or_else(|_| "operator".parse().expect("a valid operator name"))
}

impl Settings {
    /// Who this machine's operator is: the name `km init --operator` saved, else user@host.
    pub(crate) fn operator(&self, context: &Context) -> Operator {
        self.operator
            .clone()
            .unwrap_or_else(|| default_operator(context))
    }

    /// The saved settings; the local platform's defaults when km init has not run.
    pub(crate) fn load(context: &Context) -> CommandResult<Self> {
        let file = context.paths.config_file();
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(io_at(&file)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            CommandError::user(format!("{} is not valid km settings", file.display()))
                .cause(e)
                .hint("run `km init` (or `km init --aws …`) again to rewrite it")
        })
    }

    /// Writes the settings atomically (0600).
    pub(crate) fn save(&self, context: &Context) -> CommandResult<()> {
        let file = context.paths.config_file();
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| CommandError::user("cannot encode km's settings").cause(e))?;
        km_core::atomic_file::write_atomic(&file, format!("{text}\n").as_bytes(), 0o600)
            .map_err(io_at(&file))
    }
}

/// This machine's operator name (`km init --operator`, else user@host).
pub(crate) fn operator(context: &Context) -> CommandResult<Operator> {
    Ok(Settings::load(context)?.operator(context))
}

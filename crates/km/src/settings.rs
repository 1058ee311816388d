//! This machine's km settings (`~/.km/config.json`), written by `km init`: which platform's
//! store holds the sandbox records, who the operator is, and each provider's own section.

use km_core::id::Operator;
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::error::{CommandError, CommandResult, io_at};

/// The whole settings file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Settings {
    /// The platform whose store holds this machine's records: `local` (SQLite in `~/.km`), or
    /// a provider whose store the team shares (`aws`: DynamoDB), which then keeps the records
    /// of that provider's sandboxes while local ones stay on this machine.
    #[serde(default = "local")]
    pub(crate) platform: String,
    /// This operator's name on the keys it makes (`km init --operator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) operator: Option<Operator>,
    /// Each provider's own section (`aws`: what `km init --aws` saved), tool paths and
    /// version, kept as they were: only the provider reads its section.
    #[serde(flatten)]
    pub(crate) other: serde_json::Map<String, serde_json::Value>,
}

/// A machine that chose no shared store keeps its records itself: the local platform's name
/// (the registry checks that the two agree).
pub(crate) const MACHINE_ONLY: &str = "local";

fn local() -> String {
    MACHINE_ONLY.to_owned()
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            platform: local(),
            operator: None,
            other: serde_json::Map::new(),
        }
    }
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
        let read = context
            .settings_bytes
            .get_or_read(|| match std::fs::read(&file) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            })
            .map_err(io_at(&file))?;
        let Some(bytes) = read else {
            return Ok(Self::default());
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            CommandError::user(format!("{} is not valid km settings", file.display()))
                .cause(e)
                .hint("run `km init` (or `km init --aws …`) again to rewrite it")
        })
    }

    /// The section `name` of the settings file, as its provider reads it.
    // Only providers with settings of their own (AWS) read and write sections.
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub(crate) fn section<T: serde::de::DeserializeOwned>(
        &self,
        context: &Context,
        name: &str,
    ) -> CommandResult<Option<T>> {
        let Some(value) = self.other.get(name) else {
            return Ok(None);
        };
        serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|e| {
                CommandError::user(format!(
                    "the {name:?} section of {} is not valid km settings",
                    context.paths.config_file().display()
                ))
                .cause(e)
                .hint(format!("run `km init --{name} …` again to rewrite it"))
            })
    }

    /// Replaces the section `name`.
    // Only providers with settings of their own (AWS) read and write sections.
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub(crate) fn set_section<T: Serialize>(&mut self, name: &str, value: &T) -> CommandResult<()> {
        let value = serde_json::to_value(value)
            .map_err(|e| CommandError::internal(format!("cannot encode km's settings: {e}")))?;
        self.other.insert(name.to_owned(), value);
        Ok(())
    }

    /// Writes the settings atomically (0600).
    pub(crate) fn save(&self, context: &Context) -> CommandResult<()> {
        let file = context.paths.config_file();
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| CommandError::internal(format!("cannot encode km's settings: {e}")))?;
        let bytes = format!("{text}\n").into_bytes();
        km_core::atomic_file::write_atomic(&file, &bytes, 0o600).map_err(io_at(&file))?;
        context.settings_bytes.written(bytes);
        Ok(())
    }
}

/// This machine's operator name (`km init --operator`, else user@host).
pub(crate) fn operator(context: &Context) -> CommandResult<Operator> {
    Ok(Settings::load(context)?.operator(context))
}

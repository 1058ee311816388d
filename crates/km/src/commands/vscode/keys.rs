//! `km vscode keys`: the keys a sandbox accepts, whose each one is, and which is this machine's.

use std::process::ExitCode;

use km_core::id::{KeyOwner, SandboxId};
use km_core::keys::{fingerprint_of_line, key_material};
use km_core::remote_script::Probe;

use crate::cli::VscodeKeysArgs;
use crate::context::Context;
use crate::error::CommandResult;
use crate::ui;

use super::{MachineKey, probe_running, problem_error, require_enabled};

/// One line of the sandbox's `authorized_keys`.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct InstalledKey {
    /// `SHA256:…`, or `unreadable` for a line that is not a key.
    pub(super) fingerprint: String,
    /// The operator named by the comment (`km-<id>:<operator>`), if any.
    pub(super) operator: Option<String>,
    /// `operator`, `unnamed` (a `km-<id>` key from an older km) or `foreign` (not km's).
    pub(super) kind: &'static str,
    /// Whether this machine holds the private half.
    pub(super) this_machine: bool,
    /// The key's `type base64`, to remove it by.
    #[serde(skip)]
    pub(super) material: Option<String>,
}

/// Every key line the probe found, described.
pub(super) fn installed_keys(
    id: &SandboxId,
    found: &Probe,
    mine: &MachineKey,
) -> Vec<InstalledKey> {
    let local = mine.local_line.as_deref().and_then(key_material);
    found
        .authorized_keys
        .iter()
        .flatten()
        .map(|line| {
            let material = key_material(line);
            let comment = line.split_whitespace().nth(2).unwrap_or_default();
            let (operator, kind) = match id.key_owner(comment) {
                KeyOwner::Operator(name) => (Some(name.to_string()), "operator"),
                KeyOwner::Unnamed => (None, "unnamed"),
                KeyOwner::Foreign => (None, "foreign"),
            };
            InstalledKey {
                fingerprint: fingerprint_of_line(line).unwrap_or_else(|_| "unreadable".into()),
                operator,
                kind,
                this_machine: local.is_some() && material == local,
                material,
            }
        })
        .collect()
}

pub(crate) fn run(context: &Context, args: &VscodeKeysArgs) -> CommandResult<ExitCode> {
    let store = context.store()?;
    let record = context.resolve(store.as_ref(), &args.sandbox)?;
    require_enabled(&record)?;
    let id = &record.id;
    let found = probe_running(context, &record)?;
    if found.authorized_keys.is_none()
        && let Some(problem) = found.problem()
    {
        return Err(problem_error(&record, problem));
    }
    let keys = installed_keys(id, &found, &MachineKey::of(context, id)?);
    if args.json {
        ui::data(&serde_json::to_string_pretty(&keys).unwrap_or_else(|_| "[]".into()));
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!("{:<52}  {:<24}  {}\n", "FINGERPRINT", "OPERATOR", "");
    for key in &keys {
        let operator = match (key.kind, &key.operator) {
            (_, Some(name)) => name.clone(),
            ("unnamed", None) => "(unnamed, older km)".into(),
            _ => "(not km's)".into(),
        };
        out.push_str(&format!(
            "{:<52}  {:<24}  {}\n",
            key.fingerprint,
            ui::printable(&operator),
            if key.this_machine {
                "← this machine"
            } else {
                ""
            }
        ));
    }
    ui::data(out.trim_end());
    if !keys.iter().any(|k| k.this_machine) {
        ui::status(&format!(
            "This machine holds none of these keys; add one with: km vscode rekey {id}"
        ));
    }
    Ok(ExitCode::SUCCESS)
}

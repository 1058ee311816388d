//! `km vscode keys`: the keys a sandbox accepts, whose each one is, and which is this machine's.

use std::process::ExitCode;

use km_core::authorized_keys::{AuthorizedLine, parse_line};
use km_core::id::{KeyOwner, SandboxId};
use km_core::remote_script::Probe;

use crate::cli::VscodeKeysArgs;
use crate::context::Context;
use crate::error::CommandResult;
use crate::ops::sandbox_handle::SandboxHandle;
use crate::ui;

use super::{MachineKey, probe_running, problem_error, require_enabled};

/// One key the sandbox's `authorized_keys` accepts (every line carrying it), or one line km
/// cannot read.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct InstalledKey {
    /// `SHA256:…`, or `unreadable` for a line that is not a key km can read.
    pub(super) fingerprint: String,
    /// The operator named by the comment (`km-<id>:<operator>`), if any.
    pub(super) operator: Option<String>,
    /// `operator`, `unnamed` (a `km-<id>` key from an older km), `foreign` (not km's) or
    /// `unreadable`.
    pub(super) kind: &'static str,
    /// Whether this machine holds the private half.
    pub(super) this_machine: bool,
    /// How many lines of `authorized_keys` carry it.
    pub(super) lines: usize,
    /// The exact lines, to remove by.
    #[serde(skip)]
    pub(super) exact_lines: Vec<String>,
    /// The base64 key blob, which names the key in a session's `$SSH_USER_AUTH`.
    #[serde(skip)]
    pub(super) blob: Option<String>,
}

/// Every key the probe found, one entry per key (a key on several lines is one key: same
/// fingerprint, same key), then one entry per line km cannot read.
pub(super) fn installed_keys(
    id: &SandboxId,
    found: &Probe,
    mine: &MachineKey,
) -> Vec<InstalledKey> {
    let local = mine
        .local_line
        .as_deref()
        .and_then(|line| match parse_line(line) {
            AuthorizedLine::Key(key) => Some(key.fingerprint),
            _ => None,
        });
    let mut keys: Vec<InstalledKey> = Vec::new();
    for line in found.authorized_keys.iter().flatten() {
        let key = match parse_line(line) {
            AuthorizedLine::Ignored => continue,
            AuthorizedLine::Unreadable => {
                keys.push(InstalledKey {
                    fingerprint: UNREADABLE.into(),
                    operator: None,
                    kind: "unreadable",
                    this_machine: false,
                    lines: 1,
                    exact_lines: vec![line.clone()],
                    blob: None,
                });
                continue;
            }
            AuthorizedLine::Key(key) => key,
        };
        let (operator, kind) = match id.key_owner(&key.comment) {
            KeyOwner::Operator(name) => (Some(name.to_string()), "operator"),
            KeyOwner::Unnamed => (None, "unnamed"),
            KeyOwner::Foreign => (None, "foreign"),
        };
        if let Some(known) = keys.iter_mut().find(|k| k.fingerprint == key.fingerprint) {
            known.lines += 1;
            known.exact_lines.push(line.clone());
            if known.kind == "foreign" && kind != "foreign" {
                (known.operator, known.kind) = (operator, kind);
            }
            continue;
        }
        keys.push(InstalledKey {
            this_machine: local.as_deref() == Some(key.fingerprint.as_str()),
            fingerprint: key.fingerprint,
            operator,
            kind,
            lines: 1,
            exact_lines: vec![line.clone()],
            blob: Some(key.blob),
        });
    }
    keys
}

/// What `km vscode keys` shows for a line that is not a key km can read.
pub(super) const UNREADABLE: &str = "unreadable";

pub(crate) fn run(context: &Context, args: &VscodeKeysArgs) -> CommandResult<ExitCode> {
    let sandbox = SandboxHandle::open(context, &args.sandbox)?;
    let record = &sandbox.record;
    require_enabled(record)?;
    let id = &record.id;
    let found = probe_running(&sandbox)?;
    if found.authorized_keys.is_none()
        && let Some(problem) = found.problem()
    {
        return Err(problem_error(record, problem));
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
            ("unreadable", None) => "(not a key km can read)".into(),
            _ => "(not km's)".into(),
        };
        out.push_str(&format!(
            "{:<52}  {:<24}  {}\n",
            key.fingerprint,
            ui::printable(&operator),
            match (key.this_machine, key.lines) {
                (true, 1) => "← this machine".to_owned(),
                (true, n) => format!("← this machine ({n} lines)"),
                (false, 1) => String::new(),
                (false, n) => format!("({n} lines)"),
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

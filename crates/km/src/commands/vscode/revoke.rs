//! `km vscode revoke`: remove one key from a sandbox, by fingerprint or operator, and end the
//! sessions that logged in with it.

use std::process::ExitCode;
use std::time::Duration;

use km_core::authorized_keys::{AuthorizedLine, parse_line};
use km_core::id::SandboxId;
use km_core::remote_script::{parse_revoke, revoke_key_script};

use crate::cli::VscodeRevokeArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::ops::sandbox_handle::SandboxHandle;
use crate::ui;

use super::keys::installed_keys;
use super::{MachineKey, probe_running, require_enabled};

const REVOKE_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) fn run(context: &Context, args: &VscodeRevokeArgs) -> CommandResult<ExitCode> {
    let sandbox = SandboxHandle::open(context, &args.sandbox)?;
    let record = &sandbox.record;
    require_enabled(record)?;
    let id = &record.id;
    let platform = sandbox.platform()?;
    let found = probe_running(&sandbox)?;
    let keys = installed_keys(id, &found, &MachineKey::of(context, id)?);
    let chosen: Vec<_> = keys
        .iter()
        .filter(|k| k.fingerprint == args.key || k.operator.as_deref() == Some(args.key.as_str()))
        .collect();
    let key = match chosen.as_slice() {
        [one] => *one,
        [] => {
            return Err(CommandError::user(format!(
                "sandbox {id} has no key with fingerprint or operator {}",
                ui::printable(&args.key)
            ))
            .hint(format!("see its keys: km vscode keys {id}")));
        }
        _ if chosen.iter().all(|k| k.kind == "unreadable") => {
            return Err(unreadable_refused(id, chosen.len()));
        }
        _ => {
            return Err(CommandError::user(format!(
                "{} names {} different keys on sandbox {id}",
                ui::printable(&args.key),
                chosen.len()
            ))
            .hint(format!("name one by its fingerprint (km vscode keys {id})")));
        }
    };
    let Some(blob) = key.blob.clone() else {
        return Err(unreadable_refused(id, 1));
    };
    if !args.yes {
        let whose = key.operator.clone().unwrap_or_else(|| key.kind.to_owned());
        let warning = if key.this_machine {
            "\nThis is this machine's own key: it will no longer get in."
        } else {
            ""
        };
        let question = format!(
            "Revoke {} ({whose}, {} line(s)) on {id} and end its open sessions?{warning}",
            key.fingerprint, key.lines
        );
        if !ui::confirm_or_refuse(
            &question,
            &format!("revoke a key of {id}"),
            &format!("km vscode revoke {id} {} --yes", key.fingerprint),
        )? {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let script = revoke_key_script(&key.exact_lines, &blob, &platform.sessions_root(record));
    let output = platform.exec(record, &script, REVOKE_TIMEOUT)?;
    let report = parse_revoke(&output.stdout);
    let Some(remaining) = report.remaining.as_ref().filter(|_| output.exit_code == 0) else {
        return Err(CommandError::user(format!(
            "removing {} from sandbox {id} could not be confirmed",
            key.fingerprint
        ))
        .cause(output.stderr.trim().to_owned())
        .hint(format!("check with: km vscode keys {id}")));
    };
    let still_there = remaining
        .iter()
        .filter(|line| matches!(parse_line(line), AuthorizedLine::Key(k) if k.fingerprint == key.fingerprint))
        .count();
    if still_there > 0 {
        return Err(CommandError::user(format!(
            "{} is still on {still_there} line(s) of sandbox {id}'s authorized_keys (added again meanwhile?)",
            key.fingerprint
        ))
        .hint(format!("km vscode revoke {id} {} --yes", key.fingerprint)));
    }
    let kept = found
        .authorized_keys
        .iter()
        .flatten()
        .filter(|line| !key.exact_lines.contains(line))
        .filter(|line| !remaining.contains(line))
        .count();
    ui::status(&format!(
        "✓ Revoked {} ({}) on {id}: removed {} line(s) of authorized_keys, kept every other line",
        key.fingerprint,
        key.operator.as_deref().unwrap_or(key.kind),
        key.lines
    ));
    if kept > 0 {
        ui::warn(&format!(
            "{kept} other line(s) of sandbox {id}'s authorized_keys changed meanwhile (another km at work?); check with: km vscode keys {id}"
        ));
    }
    if key.this_machine {
        ui::status(&format!(
            "This machine's key no longer works; get a new one with: km vscode rekey {id}"
        ));
    }
    if !report.unknown.is_empty() {
        ui::warn(&format!(
            "{} process(es) outlived earlier sessions whose key can no longer be told (sshd removed their auth file): {}; if they may be this key's, end them: km shell {id} -- kill {}",
            report.unknown.len(),
            describe(&report.unknown),
            pids(&report.unknown)
        ));
    }
    if !report.survived.is_empty() {
        return Err(CommandError::user(format!(
            "the key is removed, but {} process(es) of its sessions on {id} are still running: {}",
            report.survived.len(),
            describe(&report.survived)
        ))
        .hint(format!(
            "km shell {id} -- kill -KILL {}",
            pids(&report.survived)
        )));
    }
    ui::status(&format!(
        "✓ Ended {} process(es) of sessions that used it; none survived",
        report.ended.len()
    ));
    Ok(ExitCode::SUCCESS)
}

fn unreadable_refused(id: &SandboxId, lines: usize) -> CommandError {
    CommandError::user(format!(
        "{lines} line(s) of sandbox {id}'s authorized_keys are not keys km can read, so km cannot tell which sessions used them and removes nothing"
    ))
    .cause("km removes only lines it has read as keys (options, type, base64, comment), never by a guess")
    .hint(format!(
        "look at the file and edit it by hand: km shell {id} -- cat .ssh/authorized_keys"
    ))
}

fn describe(processes: &[(u32, String)]) -> String {
    processes
        .iter()
        .map(|(pid, name)| format!("{pid} ({})", ui::printable(name)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pids(processes: &[(u32, String)]) -> String {
    processes
        .iter()
        .map(|(pid, _)| pid.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

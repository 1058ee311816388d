//! `km vscode revoke`: remove one key from a sandbox, by fingerprint or operator, and end the
//! sessions that logged in with it.

use std::process::ExitCode;
use std::time::Duration;

use km_core::remote_script::{parse_revoke, revoke_key_script};

use crate::cli::VscodeRevokeArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::ui;

use super::keys::installed_keys;
use super::{MachineKey, probe_running, require_enabled};

const REVOKE_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) fn run(context: &Context, args: &VscodeRevokeArgs) -> CommandResult<ExitCode> {
    let store = context.store()?;
    let record = context.resolve(store.as_ref(), &args.sandbox)?;
    require_enabled(&record)?;
    let id = &record.id;
    let platform = context.platform_for(&record)?;
    let found = probe_running(context, &record)?;
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
        _ => {
            return Err(CommandError::user(format!(
                "{} names {} keys on sandbox {id}",
                ui::printable(&args.key),
                chosen.len()
            ))
            .hint(format!("name one by its fingerprint (km vscode keys {id})")));
        }
    };
    let Some(material) = key.material.clone() else {
        return Err(CommandError::user(format!(
            "the line {} on sandbox {id} is not a key km can remove",
            key.fingerprint
        )));
    };
    if !args.yes {
        let whose = key.operator.clone().unwrap_or_else(|| key.kind.to_owned());
        let warning = if key.this_machine {
            "\nThis is this machine's own key: it will no longer get in."
        } else {
            ""
        };
        let question = format!(
            "Revoke {} ({whose}) on {id} and end its open sessions?{warning}",
            key.fingerprint
        );
        if !ui::confirm_or_refuse(
            &question,
            &format!("revoke a key of {id}"),
            &format!("km vscode revoke {id} {} --yes", key.fingerprint),
        )? {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let output = platform.exec(&record, &revoke_key_script(&material), REVOKE_TIMEOUT)?;
    let (left, stopped) = parse_revoke(&output.stdout);
    if output.exit_code != 0 || left != 0 {
        return Err(CommandError::user(format!(
            "removing {} from sandbox {id} could not be confirmed",
            key.fingerprint
        ))
        .cause(output.stderr.trim().to_owned())
        .hint(format!("check with: km vscode keys {id}")));
    }
    ui::status(&format!(
        "✓ Revoked {} ({}) on {id}",
        key.fingerprint,
        key.operator.as_deref().unwrap_or(key.kind)
    ));
    ui::status(&format!(
        "✓ Ended {} process(es) of sessions that used it",
        stopped.len()
    ));
    if key.this_machine {
        ui::status(&format!(
            "This machine's key no longer works; get a new one with: km vscode rekey {id}"
        ));
    }
    Ok(ExitCode::SUCCESS)
}

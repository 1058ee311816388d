//! `km vscode rekey`: rotate a sandbox's keypair without destroying it.
//!
//! Gates, in the seed's order, before any key material changes: running → not locked (unless
//! `--force`) → remote probe. Then the new pair goes to `<id>.new`, the sandbox's own
//! `authorized_keys` line is replaced and read back, a real login with the new key is made, and
//! only then `.pub.new → .pub` and `.new → <id>`. Any failure restores the old line remotely
//! and leaves the local key untouched.

use std::process::ExitCode;
use std::time::Duration;

use km_core::id::SandboxId;
use km_core::keys::{KeyPair, fingerprint_of_file, key_material};
use km_core::platform::Platform;
use km_core::record::{SandboxRecord, SandboxStore};
use km_core::remote_script::{install_key_script, parse_readback};

use crate::cli::VscodeRekeyArgs;
use crate::commands::destroy::with_suffix;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::ssh_client::verify_login;
use crate::ui;

use super::{probe, problem_error, require_enabled};

const INSTALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Test-only fault injection, compiled into debug builds only: lets the end-to-end tests
/// exercise the rollback paths against a real sandbox.
fn fault(name: &str) -> bool {
    cfg!(debug_assertions) && std::env::var("KM_TEST_FAULT").is_ok_and(|v| v == name)
}

pub(crate) fn run(context: &Context, args: &VscodeRekeyArgs) -> CommandResult<ExitCode> {
    let store = context.store()?;
    let record = context.resolve(&store, &args.sandbox)?;
    require_enabled(&record)?;
    let id = record.id.clone();
    let platform = context.platform()?;

    if !platform.is_running(&record) {
        return Err(CommandError::user(format!("sandbox {id} is not running"))
            .hint(format!("km resume {id}")));
    }
    ui::status(&format!("✓ Sandbox {id} running"));
    if record.locked && !args.force {
        return Err(CommandError::user(format!("sandbox {id} is locked"))
            .hint(format!("km unlock {id}, or pass --force")));
    }
    let found = probe(&platform, &record)?;
    if let Some(problem) = found.problem() {
        return Err(problem_error(&record, problem));
    }
    ui::status("✓ Pre-flight check passed");

    let private = context.paths.private_key(&id);
    let public = context.paths.public_key(&id);
    let old_fingerprint = fingerprint_of_file(&public).ok();
    let new_pair =
        KeyPair::generate(&id.key_comment()).map_err(|e| CommandError::user(e.to_string()))?;
    let new_line = new_pair
        .public_line()
        .map_err(|e| CommandError::user(e.to_string()))?;
    if !args.yes {
        let question = format!(
            "Rotate the key of {id}?\n  old: {}\n  new: {}\nOpen sessions keep working until they reconnect.",
            old_fingerprint.as_deref().unwrap_or("none on this machine"),
            new_pair.fingerprint()
        );
        if !ui::confirm_or_refuse(
            &question,
            &format!("rekey {id}"),
            &format!("km vscode rekey {id} --yes"),
        )? {
            return Ok(ExitCode::SUCCESS);
        }
    }

    let private_new = with_suffix(&private, ".new");
    let public_new = with_suffix(&public, ".new");
    let discard_new = || {
        let _ = std::fs::remove_file(&private_new);
        let _ = std::fs::remove_file(&public_new);
    };
    new_pair.write(&private_new, &public_new).map_err(|e| {
        discard_new();
        CommandError::user(format!("cannot write the new keypair for {id}")).cause(e)
    })?;
    ui::status(&format!(
        "✓ New keypair generated ({})",
        new_pair.fingerprint()
    ));

    let old_line = found.key_line_for(&id.key_comment()).map(str::to_owned);
    if let Err(error) = push_and_verify(context, &platform, &record, &new_line) {
        discard_new();
        let restored = restore_remote(&platform, &record, old_line.as_deref());
        let state = match (&old_line, restored) {
            (Some(_), Ok(())) => "the sandbox's old key line was restored; the old key still works",
            (None, Ok(())) => "the sandbox had no key line for this machine and has none now",
            (_, Err(_)) => {
                "the sandbox's authorized_keys could not be restored; run the rekey again"
            }
        };
        return Err(error
            .cause(format!(
                "local key unchanged at {}; no .new files left",
                private.display()
            ))
            .cause(state)
            .hint(format!(
                "km vscode status {id}, then km vscode rekey {id} again"
            )));
    }
    ui::status("✓ Pushed to sandbox (verified by read-back and a real login)");

    std::fs::rename(&public_new, &public)
        .and_then(|()| std::fs::rename(&private_new, &private))
        .map_err(|e| {
            CommandError::user(format!(
                "the sandbox has the new key but the local files could not be committed: {e}"
            ))
            .hint(format!(
                "the new private key is at {}; run km vscode rekey {id} again",
                private_new.display()
            ))
        })?;
    store.set_key_fingerprint(&id, Some(&new_pair.fingerprint()))?;
    ui::status(&format!(
        "✓ Local key {} replaced atomically",
        private.display()
    ));
    ui::status(&format!(
        "Rekey complete for {id}: {}",
        new_pair.fingerprint()
    ));
    Ok(ExitCode::SUCCESS)
}

fn push_and_verify(
    context: &Context,
    platform: &impl Platform,
    record: &SandboxRecord,
    new_line: &str,
) -> CommandResult<()> {
    let id: &SandboxId = &record.id;
    let script = if fault("rekey-push-failure") {
        "echo 'injected push failure' >&2; exit 1".to_owned()
    } else {
        install_key_script(&id.key_comment(), Some(new_line))
    };
    let output = platform.exec(record, &script, INSTALL_TIMEOUT)?;
    if output.exit_code != 0 {
        return Err(CommandError::user(format!(
            "pushing the new key to {id} failed (exit {})",
            output.exit_code
        ))
        .cause(output.stderr.trim().to_owned()));
    }
    let mut readback = parse_readback(&output.stdout);
    if fault("rekey-readback-mismatch") {
        readback = Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOk8Cj0eQ0PY0Pvr5LB1kxXpTkp4KOWDgyjRm1qKk1Fi injected".into());
    }
    if readback.as_deref().and_then(key_material) != key_material(new_line) {
        return Err(CommandError::user(format!(
            "verification failed: the key read back from {id} is not the one pushed"
        )));
    }
    let new_private = with_suffix(&context.paths.private_key(id), ".new");
    verify_login(context, id, &new_private, &platform.login_user()).map_err(|why| {
        CommandError::user(format!(
            "verification failed: logging in to {id} with the new key did not work"
        ))
        .cause(why)
    })
}

fn restore_remote(
    platform: &impl Platform,
    record: &SandboxRecord,
    old_line: Option<&str>,
) -> Result<(), ()> {
    let script = install_key_script(&record.id.key_comment(), old_line);
    match platform.exec(record, &script, INSTALL_TIMEOUT) {
        Ok(output) if output.exit_code == 0 => Ok(()),
        _ => Err(()),
    }
}

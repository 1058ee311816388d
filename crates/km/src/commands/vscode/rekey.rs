//! `km vscode rekey`: rotate a sandbox's keypair without destroying it.
//!
//! Gates, in this order, before any key material changes: running → not locked (unless
//! `--force`) → remote probe. A rotation an earlier run left half-done is finished or undone
//! first. Then the new pair goes to `<id>.new`, this operator's own `authorized_keys` line (its
//! comment `km-<id>:<operator>`) is replaced and read back — other operators' lines stay — a real login with the new key is made, and only then the new key is
//! committed locally. Any failure restores the old line remotely and leaves the local key
//! untouched. From the first new file to the commit, Ctrl-C, SIGTERM and SIGHUP are held back;
//! after a `kill -9` the next km command that uses the key repairs the state.

use std::process::ExitCode;
use std::time::Duration;

use km_core::id::SandboxId;
use km_core::keys::{KeyPair, fingerprint_of_file, key_material};
use km_core::platform::Platform;
use km_core::record::SandboxRecord;
use km_core::remote_script::{install_key_script, parse_readback};

use crate::cli::VscodeRekeyArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::interrupts::{INTERRUPTED_EXIT, Interrupts};
use crate::key_rotation::{self, KeyFiles, settle};
use crate::ops::sandbox_handle::SandboxHandle;
use crate::ssh_client::verify_login;
use crate::ui;

use super::{MachineKey, pin_if_unpinned, probe, problem_error, require_enabled};

const INSTALL_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) fn run(context: &Context, args: &VscodeRekeyArgs) -> CommandResult<ExitCode> {
    let sandbox = SandboxHandle::open(context, &args.sandbox)?;
    let (store, record) = (&sandbox.store, &sandbox.record);
    require_enabled(record)?;
    let id = record.id.clone();
    let platform = sandbox.platform()?;
    sandbox.ensure_running()?;
    ui::status(&format!("✓ Sandbox {id} running"));
    sandbox.ensure_unlocked(args.force)?;
    let found = probe(platform, record)?;
    if let Some(problem) = found.problem() {
        return Err(problem_error(record, problem));
    }
    ui::status("✓ Pre-flight check passed");
    settle(context, store.as_ref(), platform, record)?;
    pin_if_unpinned(context, record, &found)?;

    let files = KeyFiles::of(context, &id);
    let old_fingerprint = fingerprint_of_file(&files.public).ok();
    let mine = MachineKey::of(context, &id)?;
    let new_pair =
        KeyPair::generate(&mine.comment).map_err(|e| CommandError::user(e.to_string()))?;
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

    let Some(_rotation) = key_rotation::try_lock(context, &id)? else {
        return Err(CommandError::user(format!(
            "another km process is rotating the key of {id} right now"
        ))
        .hint(format!(
            "wait for it, then check with `km vscode status {id}`"
        )));
    };
    let interrupts = Interrupts::hold()
        .map_err(|e| CommandError::user("cannot install km's signal handlers").cause(e))?;
    new_pair
        .write(&files.private_new, &files.public_new)
        .map_err(|e| {
            let _ = files.discard_new();
            CommandError::user(format!("cannot write the new keypair for {id}")).cause(e)
        })?;
    ui::status(&format!(
        "✓ New keypair generated ({})",
        new_pair.fingerprint()
    ));

    let old_line = mine.installed(&found).map(str::to_owned);
    if let Err(error) = push_and_verify(context, platform, record, &mine, &new_line) {
        return Err(roll_back(
            platform,
            record,
            &files,
            &mine,
            old_line.as_deref(),
            error,
        ));
    }
    ui::status("✓ Pushed to sandbox (verified by read-back and a real login)");

    key_rotation::commit(context, store.as_ref(), &id, &new_pair)?;
    ui::status(&format!(
        "✓ Local key {} replaced atomically",
        files.private.display()
    ));
    ui::status(&format!(
        "Rekey complete for {id}: {}",
        new_pair.fingerprint()
    ));
    if interrupts.received() {
        ui::status("Interrupted: the rekey was completed first, so nothing is half-done.");
        return Ok(ExitCode::from(INTERRUPTED_EXIT));
    }
    Ok(ExitCode::SUCCESS)
}

/// Puts the sandbox's old line back and drops the new local pair; says truthfully how far
/// that got.
fn roll_back(
    platform: &dyn Platform,
    record: &SandboxRecord,
    files: &KeyFiles,
    mine: &MachineKey,
    old_line: Option<&str>,
    error: CommandError,
) -> CommandError {
    let id = &record.id;
    let restored = restore_remote(platform, record, mine, old_line);
    let remote_state = match (old_line, restored) {
        (Some(_), Ok(())) => "the sandbox's old key line was restored; the old key still works",
        (None, Ok(())) => "the sandbox had no key line for this machine and has none now",
        (_, Err(())) => "the sandbox's authorized_keys could not be restored",
    };
    // While the sandbox may hold the new key, the new key is all that still opens it.
    let discarded = restored.map(|()| files.discard_new());
    let local_state = match discarded {
        Ok(Ok(())) => format!(
            "local key unchanged at {}; no .new files left",
            files.private.display()
        ),
        Err(()) => format!(
            "local key unchanged at {}; the new key stays at {} until km can tell which key the sandbox accepts",
            files.private.display(),
            files.private_new.display()
        ),
        Ok(Err(e)) => format!(
            "local key unchanged at {}, but {} could not be removed: {e}",
            files.private.display(),
            files.private_new.display()
        ),
    };
    error.cause(local_state).cause(remote_state).hint(format!(
        "km vscode status {id}, then km vscode rekey {id} again"
    ))
}

fn push_and_verify(
    context: &Context,
    platform: &dyn Platform,
    record: &SandboxRecord,
    mine: &MachineKey,
    new_line: &str,
) -> CommandResult<()> {
    let id: &SandboxId = &record.id;
    let script = install_key_script(&mine.comment_refs(), Some(new_line));
    let output = platform.exec(record, &script, INSTALL_TIMEOUT)?;
    if output.exit_code != 0 {
        return Err(CommandError::user(format!(
            "pushing the new key to {id} failed (exit {})",
            output.exit_code
        ))
        .cause(output.stderr.trim().to_owned()));
    }
    let readback = parse_readback(&output.stdout);
    if readback.as_deref().and_then(key_material) != key_material(new_line) {
        return Err(CommandError::user(format!(
            "verification failed: the key read back from {id} is not the one pushed"
        )));
    }
    let new_private = KeyFiles::of(context, id).private_new;
    verify_login(context, id, &new_private, &platform.login_user(record)).map_err(|why| {
        CommandError::user(format!(
            "verification failed: logging in to {id} with the new key did not work"
        ))
        .cause(why)
    })
}

fn restore_remote(
    platform: &dyn Platform,
    record: &SandboxRecord,
    mine: &MachineKey,
    old_line: Option<&str>,
) -> Result<(), ()> {
    let script = install_key_script(&mine.comment_refs(), old_line);
    match platform.exec(record, &script, INSTALL_TIMEOUT) {
        Ok(output) if output.exit_code == 0 => Ok(()),
        _ => Err(()),
    }
}

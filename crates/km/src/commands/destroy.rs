//! `km destroy`: the sandbox, its record, its key files, its Host entry and its pinned key.

use std::process::ExitCode;

use km_core::id::SandboxId;

use crate::cli::DestroyArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::key_rotation::KeyFiles;
use crate::ssh_entries;
use crate::ui;

pub(crate) fn run(context: &Context, args: &DestroyArgs) -> CommandResult<ExitCode> {
    let store = context.store()?;
    let record = context.resolve(store.as_ref(), &args.sandbox)?;
    let id = &record.id;
    if record.locked && !args.force {
        return Err(CommandError::user(format!(
            "sandbox {id} is locked by {}",
            super::lifecycle::lock_description(&record)
        ))
        .hint(format!("km unlock {id}, or pass --force")));
    }
    if !args.yes
        && !ui::confirm_or_refuse(
            &format!("Destroy sandbox {id} and its keys?"),
            &format!("destroy {id}"),
            &format!("km destroy {id} --yes"),
        )?
    {
        return Ok(ExitCode::SUCCESS);
    }
    if args.remote {
        return crate::manager::destroy_remote(context, args, id);
    }
    let platform = context.platform_for(&record)?;
    platform.destroy(&record)?;
    forget_operator_state(context, id)?;
    store.delete(id)?;
    ui::status(&format!(
        "✓ Sandbox {id} destroyed (keys, ssh config entry and host key pin removed)"
    ));
    Ok(ExitCode::SUCCESS)
}

/// Removes what km keeps on this machine for a sandbox: key files (including rekey leftovers),
/// the Host entry and the pinned host key.
pub(crate) fn forget_operator_state(context: &Context, id: &SandboxId) -> CommandResult<()> {
    let files = KeyFiles::of(context, id);
    for path in [
        files.private,
        files.public,
        files.private_new,
        files.public_new,
        context.paths.rekey_lock(id),
    ] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(
                    CommandError::user(format!("cannot remove {}", path.display())).cause(e),
                );
            }
        }
    }
    ssh_entries::remove_host(context, id)?;
    ssh_entries::unpin_host_key(context, id)?;
    Ok(())
}

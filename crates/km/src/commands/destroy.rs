//! `km destroy`: the sandbox, its record, its key files, its Host entry and its pinned key.

use std::process::ExitCode;

use crate::cli::DestroyArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::ops::operator_state::forget_operator_state;
use crate::platforms;
use crate::ui;

pub(crate) fn run(context: &Context, args: &DestroyArgs) -> CommandResult<ExitCode> {
    let store = platforms::open_store(context)?;
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
    let platform = platforms::platform_for(context, &record)?;
    platform.destroy(&record)?;
    forget_operator_state(context, id)?;
    store.delete(id)?;
    ui::status(&format!(
        "✓ Sandbox {id} destroyed (keys, ssh config entry and host key pin removed)"
    ));
    Ok(ExitCode::SUCCESS)
}

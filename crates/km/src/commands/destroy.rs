//! `km destroy`: the sandbox, its record, its key files, its Host entry and its pinned key.

use std::process::ExitCode;

use crate::cli::DestroyArgs;
use crate::context::Context;
use crate::error::CommandResult;
use crate::ops::destroy::{OperatorState, destroy};
use crate::ops::sandbox_handle::SandboxHandle;
use crate::ui;

pub(crate) fn run(context: &Context, args: &DestroyArgs) -> CommandResult<ExitCode> {
    let sandbox = SandboxHandle::open(context, &args.sandbox)?;
    let id = sandbox.id();
    sandbox.ensure_unlocked(args.force)?;
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
    destroy(context, &sandbox, OperatorState::Forget)?;
    ui::status(&format!(
        "✓ Sandbox {id} destroyed (keys, ssh config entry and host key pin removed)"
    ));
    Ok(ExitCode::SUCCESS)
}

//! `km __agent`: the per-sandbox agent process that `km create` and `km resume` start.

use std::process::ExitCode;

use crate::cli::AgentArgs;
use crate::error::{CommandError, CommandResult};

pub(crate) fn run(args: &AgentArgs) -> CommandResult<ExitCode> {
    km_local::agent::run_agent(&args.dir).map_err(|e| {
        CommandError::user(format!("the agent of sandbox {} failed", args.sandbox)).cause(e)
    })?;
    Ok(ExitCode::SUCCESS)
}

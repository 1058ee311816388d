//! `km shell`: run a command over the command channel, or open an interactive ssh session.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use km_core::platform::Platform;
use km_core::userdata::shell_quote;

use crate::cli::ShellArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::ssh_client::ssh_command;

/// Commands run over the channel are stopped after this long.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3600);

pub(crate) fn run(context: &Context, args: &ShellArgs) -> CommandResult<ExitCode> {
    let store = context.store()?;
    let record = context.resolve(&store, &args.sandbox)?;
    let platform = context.platform()?;
    if args.command.is_empty() {
        if !record.vscode_enabled {
            return Err(CommandError::user(format!(
                "sandbox {} has no sshd (its profile set vscodeEnabled: false), so there is no interactive shell",
                record.id
            ))
            .hint(format!("run a command instead: km shell {} -- <command>", record.id)));
        }
        let status = ssh_command(
            context,
            &record.id,
            &context.paths.private_key(&record.id),
            &platform.login_user(),
        )
        .map_err(|why| CommandError::user("cannot build the ssh command line").cause(why))?
        .arg("-t")
        .arg(record.id.host_alias())
        .status()
        .map_err(|e| CommandError::user("cannot run ssh").cause(e))?;
        return Ok(ExitCode::from(
            u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
        ));
    }
    let script: Vec<String> = args.command.iter().map(|word| shell_quote(word)).collect();
    let output = platform.exec(&record, &script.join(" "), COMMAND_TIMEOUT)?;
    print!("{}", output.stdout);
    eprint!("{}", output.stderr);
    let _ = std::io::stdout().flush();
    if output.timed_out {
        return Err(CommandError::user(format!(
            "the command was stopped after {}s",
            COMMAND_TIMEOUT.as_secs()
        )));
    }
    Ok(ExitCode::from(u8::try_from(output.exit_code).unwrap_or(1)))
}

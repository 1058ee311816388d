//! `km shell`: run a command in a sandbox the way `ssh host cmd` would, or open an interactive
//! ssh session.
//!
//! With a command, this process's own stdin, stdout and stderr are handed to the command in
//! the sandbox: bytes are never decoded, buffered or capped, and killing km (Ctrl-C) kills
//! the command.

use std::os::fd::AsRawFd;
use std::process::ExitCode;

use km_core::platform::{Liveness, PlatformError};
use km_core::userdata::shell_quote;

use crate::cli::ShellArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::key_rotation::settle;
use crate::ops::sandbox_handle::SandboxHandle;
use crate::ssh_client::ssh_command;

pub(crate) fn run(context: &Context, args: &ShellArgs) -> CommandResult<ExitCode> {
    let sandbox = SandboxHandle::open(context, &args.sandbox)?;
    let (store, record, platform) = (&sandbox.store, &sandbox.record, sandbox.platform()?);
    if args.command.is_empty() {
        if !record.vscode_enabled {
            if let Some(mut session) = platform.shell_session(record)? {
                let status = session
                    .status()
                    .map_err(|e| CommandError::user("cannot start the shell session").cause(e))?;
                return Ok(ExitCode::from(
                    u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
                ));
            }
            return Err(CommandError::user(format!(
                "sandbox {} has no sshd (its profile set vscodeEnabled: false), so there is no interactive shell",
                record.id
            ))
            .hint(format!("run a command instead: km shell {} -- <command>", record.id)));
        }
        settle(context, store.as_ref(), platform, record)?;
        let status = ssh_command(
            context,
            &record.id,
            &context.paths.private_key(&record.id),
            &platform.login_user(record),
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
    // A stopped sandbox is refused at once: on EC2, SSM would accept the command and hold it
    // Pending until its delivery timeout.
    if platform.liveness(record)? != Liveness::Running {
        return Err(PlatformError::NotRunning(record.id.clone()).into());
    }
    let script: Vec<String> = args.command.iter().map(|word| shell_quote(word)).collect();
    let exit_code = platform.run_with_stdio(
        record,
        &script.join(" "),
        [
            std::io::stdin().as_raw_fd(),
            std::io::stdout().as_raw_fd(),
            std::io::stderr().as_raw_fd(),
        ],
    )?;
    Ok(ExitCode::from(u8::try_from(exit_code).unwrap_or(255)))
}

//! `km proxy`: an ssh ProxyCommand that connects ssh to the sandbox's sshd.
//!
//! Plain form: this process's own stdin and stdout are handed to the sandbox's sshd; no byte
//! passes through it, and it only waits so that ssh sees it live for as long as the session is.
//! `--fdpass` form (ssh's `ProxyUseFdpass yes`): km asks the platform for a connection to an
//! sshd session (on the local platform, one the agent started ahead of time, so sshd's start-up
//! is not on the login's path), hands it to ssh over its stdout and exits at once: no km
//! process lives on per connection, and ssh talks to sshd over a Unix socket with no TCP delays.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use km_local::protocol::pass_descriptor;

use crate::cli::ProxyArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::key_rotation::recover_and_report;
use crate::ops::sandbox_handle::SandboxHandle;

pub(crate) fn run(context: &Context, args: &ProxyArgs) -> CommandResult<ExitCode> {
    let sandbox = SandboxHandle::open(context, &args.sandbox)?;
    let (store, record, platform) = (&sandbox.store, &sandbox.record, sandbox.platform()?);
    // The operator's login waits for a rotation in progress (or a repair after a killed one)
    // and connects only once it is settled, so ssh never offers a stale key. km's own
    // verification logins run while that lock is held, so they never wait for it.
    if !args.settling {
        recover_and_report(context, store.as_ref(), platform, record)?;
    }
    if args.fdpass {
        if !platform.streams_outlive_the_caller() {
            return Err(CommandError::user(format!(
                "sandbox {} is reached through a process that must stay alive, so km cannot hand ssh a socket and exit",
                record.id
            ))
            .hint(format!(
                "rewrite the entry with `km vscode start --proxy {}`, which picks the form that works",
                record.id
            )));
        }
        let ours = platform.ready_stream(record)?;
        pass_descriptor(std::io::stdout().as_raw_fd(), ours.as_raw_fd()).map_err(|e| {
            CommandError::user("cannot hand the connection to ssh")
                .cause(e)
                .hint("--fdpass needs `ProxyUseFdpass yes` in the ssh config entry; rewrite it with `km vscode start --proxy <sb>`")
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    // ssh sends its ProxyCommand SIGHUP as it exits: outlive it long enough to say why the
    // stream failed (an expired login, a stopped instance) instead of dying silently.
    let hung_up = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hung_up)
        .map_err(|e| CommandError::user("cannot set up signal handling").cause(e))?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let session = platform.open_stream(record, &[stdin.as_raw_fd(), stdout.as_raw_fd()])?;
    // Drop our copies, so ssh sees end-of-stream exactly when sshd closes its side.
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| CommandError::user("cannot open /dev/null").cause(e))?;
    let _ = nix::unistd::dup2_stdin(&null);
    let _ = nix::unistd::dup2_stdout(&null);
    session.wait()?;
    Ok(ExitCode::SUCCESS)
}

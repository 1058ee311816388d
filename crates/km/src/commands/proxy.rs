//! `km proxy`: an ssh ProxyCommand that hands its own stdin and stdout to the sandbox's sshd.
//!
//! After the hand-off no byte passes through this process; it only waits so that ssh sees it
//! live for as long as the session is.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::key_rotation::{IfBusy, recover_and_report};

pub(crate) fn run(context: &Context, reference: &str) -> CommandResult<ExitCode> {
    let store = context.store()?;
    let record = context.resolve(store.as_ref(), reference)?;
    let platform = context.platform_for(&record)?;
    // A login that km itself makes while repairing holds the lock, so this never recurses.
    recover_and_report(
        context,
        store.as_ref(),
        platform.as_ref(),
        &record,
        IfBusy::Skip,
    )?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let session = platform.open_stream(&record, &[stdin.as_raw_fd(), stdout.as_raw_fd()])?;
    // Drop our copies, so ssh sees end-of-stream exactly when sshd closes its side.
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| CommandError::user("cannot open /dev/null").cause(e))?;
    let _ = nix::unistd::dup2_stdin(&null);
    let _ = nix::unistd::dup2_stdout(&null);
    session.wait();
    Ok(ExitCode::SUCCESS)
}

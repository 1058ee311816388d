//! `km vscode start | status | rekey`, and the checks they share.

mod open;
mod rekey;
mod start;
mod status;

use std::process::ExitCode;
use std::time::Duration;

use km_core::platform::Platform;
use km_core::record::SandboxRecord;
use km_core::remote_script::{Probe, ProbeProblem, parse_probe, probe_script};

use crate::cli::VscodeCommand;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};

/// How long a pre-flight script may run in the sandbox.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) fn dispatch(context: &Context, command: VscodeCommand) -> CommandResult<ExitCode> {
    match command {
        VscodeCommand::Start(args) => start::run(context, &args),
        VscodeCommand::Status(args) => status::run(context, &args),
        VscodeCommand::Rekey(args) => rekey::run(context, &args),
        VscodeCommand::Open(args) => open::run(context, &args),
    }
}

/// The hard error for sandboxes whose profile turned VS Code off.
fn require_enabled(record: &SandboxRecord) -> CommandResult<()> {
    if record.vscode_enabled {
        return Ok(());
    }
    Err(CommandError::user(format!(
        "sandbox {} was created without vscodeEnabled: true, so it has no sshd or authorized_keys",
        record.id
    ))
    .hint(format!(
        "recreate it: km destroy {} --yes && km create {}",
        record.id, record.profile_path
    )))
}

/// What `start` and `open` check before they write an entry: a local key, a running sandbox, a
/// passing probe, and no half-done rekey.
fn ready_for_ssh(
    context: &Context,
    store: &dyn km_core::record::SandboxStore,
    platform: &dyn Platform,
    record: &SandboxRecord,
) -> CommandResult<()> {
    let id = &record.id;
    let key = context.paths.private_key(id);
    if !key.exists() {
        return Err(CommandError::user(format!(
            "private key for {id} not found at {}",
            key.display()
        ))
        .cause("keys live on the machine that created the sandbox")
        .hint(format!(
            "bootstrap a new key on this machine: km vscode rekey {id}"
        )));
    }
    if !platform.is_running(record) {
        return Err(CommandError::user(format!("sandbox {id} is not running"))
            .hint(format!("km resume {id}")));
    }
    let found = probe(platform, record)?;
    if let Some(problem) = found.problem() {
        return Err(problem_error(record, problem));
    }
    crate::key_rotation::settle(context, store, platform, record)
}

/// Runs the pre-flight probe over the command channel.
fn probe(platform: &dyn Platform, record: &SandboxRecord) -> CommandResult<Probe> {
    let script = probe_script(&platform.sshd_check(), &platform.host_key_path(record));
    let output = platform.exec(record, &script, PROBE_TIMEOUT)?;
    Ok(parse_probe(&output.stdout))
}

/// Turns a probe problem into its own message and next command.
fn problem_error(record: &SandboxRecord, problem: ProbeProblem) -> CommandError {
    let id = &record.id;
    match problem {
        ProbeProblem::NotEnabled => CommandError::user(format!(
            "VS Code is not enabled in sandbox {id}: no sshd and no authorized_keys"
        ))
        .hint(format!(
            "recreate it with vscodeEnabled: true: km destroy {id} --yes && km create {}",
            record.profile_path
        )),
        ProbeProblem::SshdDown => {
            CommandError::user(format!("sshd is not running in sandbox {id}")).hint(format!(
                "restart the sandbox: km stop {id} && km resume {id}"
            ))
        }
        ProbeProblem::Inconsistent => CommandError::user(format!(
            "unexpected state in sandbox {id}: sshd is running but ~/.ssh/authorized_keys is absent"
        ))
        .hint(format!(
            "install a key again with `km vscode rekey {id}`, or recreate the sandbox"
        )),
    }
}

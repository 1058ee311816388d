//! `km vscode start | status | rekey | open | keys | revoke | server`, and the checks they share.

mod keys;
mod open;
mod rekey;
mod revoke;
mod server;
mod start;
mod status;

use std::process::ExitCode;

use km_core::id::{KeyOwner, SandboxId};
use km_core::keys::key_material;
use km_core::platform::Platform;
use km_core::record::SandboxRecord;
use km_core::remote_script::{Probe, ProbeProblem};

use crate::cli::VscodeCommand;
use crate::context::Context;
use crate::error::{CommandError, CommandResult, ErrorKind};
use crate::ops::probe::{pin_if_unpinned, probe};
use crate::ops::sandbox_handle::{SandboxHandle, ensure_running};

pub(crate) fn dispatch(context: &Context, command: VscodeCommand) -> CommandResult<ExitCode> {
    match command {
        VscodeCommand::Start(args) => start::run(context, &args),
        VscodeCommand::Status(args) => status::run(context, &args),
        VscodeCommand::Rekey(args) => rekey::run(context, &args),
        VscodeCommand::Open(args) => open::run(context, &args),
        VscodeCommand::Keys(args) => keys::run(context, &args),
        VscodeCommand::Revoke(args) => revoke::run(context, &args),
        VscodeCommand::Server(args) => server::run(context, &args),
    }
}

/// The hard error for sandboxes whose profile turned VS Code off.
fn require_enabled(record: &SandboxRecord) -> CommandResult<()> {
    if record.vscode_enabled {
        return Ok(());
    }
    Err(CommandError::of(
        ErrorKind::Refused,
        format!(
            "sandbox {} was created without vscodeEnabled: true, so it has no sshd or authorized_keys",
            record.id
        ),
    )
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
    ensure_running(platform, record)?;
    let found = probe(platform, record)?;
    if let Some(problem) = found.problem() {
        return Err(problem_error(record, problem));
    }
    // A sandbox made by the management component, or on another machine, is pinned here first.
    pin_if_unpinned(context, record, &found)?;
    crate::key_rotation::settle(context, store, platform, record)
}

/// The probe of a sandbox that must be running (for `keys` and `revoke`).
fn probe_running(sandbox: &SandboxHandle<'_>) -> CommandResult<Probe> {
    sandbox.ensure_running()?;
    probe(sandbox.platform()?, &sandbox.record)
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

/// This machine's key to a sandbox, as the sandbox's `authorized_keys` knows it.
struct MachineKey {
    /// The comment this operator's keys get now: `km-<id>:<operator>`.
    comment: String,
    /// Every comment a line of this machine's may carry: the current one, and the comment of
    /// the key this machine holds (an unnamed `km-<id>` from an older km, or an older name).
    comments: Vec<String>,
    /// The public line this machine holds, if any.
    local_line: Option<String>,
}

impl MachineKey {
    fn of(context: &Context, id: &SandboxId) -> CommandResult<Self> {
        let comment = id.operator_key_comment(&crate::settings::operator(context)?);
        let local_line = std::fs::read_to_string(context.paths.public_key(id))
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|line| !line.is_empty());
        let mut comments = vec![comment.clone()];
        if let Some(held) = local_line
            .as_deref()
            .and_then(|line| line.split_whitespace().nth(2))
            .filter(|held| id.key_owner(held) != KeyOwner::Foreign && *held != comment)
        {
            comments.push(held.to_owned());
        }
        Ok(Self {
            comment,
            comments,
            local_line,
        })
    }

    fn comment_refs(&self) -> Vec<&str> {
        self.comments.iter().map(String::as_str).collect()
    }

    /// The sandbox's line for this machine: the one holding this machine's key, else the one
    /// carrying this operator's comment.
    fn installed<'a>(&self, found: &'a Probe) -> Option<&'a str> {
        let lines = found.authorized_keys.as_ref()?;
        let mine = self.local_line.as_deref().and_then(key_material);
        lines
            .iter()
            .find(|line| mine.is_some() && key_material(line) == mine)
            .or_else(|| {
                lines.iter().find(|line| {
                    line.split_whitespace()
                        .last()
                        .is_some_and(|c| self.comments.iter().any(|mine| mine == c))
                })
            })
            .map(String::as_str)
    }
}

//! Writes km's entries into the operator's `~/.ssh/config` and km's pinned known_hosts, each
//! under the shared advisory lock and replaced atomically.

use km_core::atomic_file::{RefusedReplace, edit_locked};
use km_core::id::SandboxId;
use km_core::known_hosts;
use km_core::ssh_config::{self, BlockError, HostEntry};

use crate::context::Context;
use crate::error::{CommandError, CommandResult, check_file_hint};

impl From<BlockError> for CommandError {
    fn from(error: BlockError) -> Self {
        CommandError::user(format!("cannot edit ~/.ssh/config: {error}"))
            .cause("the file was left exactly as it was")
            .hint(format!(
                "fix the markers by hand: keep one `{}` … `{}` pair (or delete both lines and everything between), then run the command again",
                ssh_config::BEGIN_MARKER,
                ssh_config::END_MARKER
            ))
    }
}

enum EditError {
    Block(BlockError),
    Io(std::io::Error),
}

impl From<std::io::Error> for EditError {
    fn from(error: std::io::Error) -> Self {
        Self::Io(error)
    }
}

fn edit_ssh_config(
    context: &Context,
    edit: impl FnOnce(&str) -> Result<String, BlockError>,
) -> CommandResult<()> {
    let path = context.paths.ssh_config();
    let result = edit_locked(&context.paths.ssh_config_lock(), &path, 0o600, |current| {
        let text = match current {
            Some(bytes) => std::str::from_utf8(bytes).map_err(|_| {
                EditError::Io(std::io::Error::other("~/.ssh/config is not valid UTF-8"))
            })?,
            None => "",
        };
        edit(text)
            .map(|t| Some(t.into_bytes()))
            .map_err(EditError::Block)
    });
    match result {
        Ok(_) => Ok(()),
        Err(EditError::Block(e)) => Err(e.into()),
        Err(EditError::Io(e)) => Err(io_error(&path, e)),
    }
}

/// An I/O failure on `path`, with the specific fix when km refused to replace the file.
fn io_error(path: &std::path::Path, error: std::io::Error) -> CommandError {
    if let Some(refused) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<RefusedReplace>())
    {
        return CommandError::user(format!("refusing to rewrite {}", refused.path))
            .cause(&refused.reason)
            .cause("the file was left exactly as it was")
            .hint(&refused.hint);
    }
    CommandError::user(format!("cannot update {}", path.display()))
        .cause(error)
        .hint(check_file_hint(path))
}

/// The `Host km-<id>` entry VS Code and ssh use through `km vscode start`.
pub(crate) fn host_entry(
    context: &Context,
    id: &SandboxId,
    port: u16,
    user: &str,
) -> CommandResult<HostEntry> {
    let alias = id.host_alias();
    let key = context.paths.private_key(id);
    let known = context.paths.known_hosts();
    let entry = HostEntry::new(alias.clone())
        .option("HostName", "127.0.0.1")
        .option("Port", port.to_string())
        .option("User", ssh_config::quote_value(user)?)
        .path_option("IdentityFile", &key.display().to_string())?
        .option("IdentitiesOnly", "yes")
        .option("HostKeyAlias", alias)
        .path_option("UserKnownHostsFile", &known.display().to_string())?
        .option("StrictHostKeyChecking", "yes")
        .option("ProxyCommand", "none")
        .option("ProxyJump", "none")
        .option("ServerAliveInterval", "30");
    Ok(entry)
}

/// Inserts or replaces the sandbox's entry.
pub(crate) fn upsert_host(context: &Context, entry: &HostEntry) -> CommandResult<()> {
    edit_ssh_config(context, |text| ssh_config::upsert(text, entry))
}

/// Removes the sandbox's entry (the whole block when it was the last).
pub(crate) fn remove_host(context: &Context, id: &SandboxId) -> CommandResult<()> {
    edit_ssh_config(context, |text| ssh_config::remove(text, &id.host_alias()))
}

fn edit_known_hosts(context: &Context, edit: impl FnOnce(&[u8]) -> Vec<u8>) -> CommandResult<()> {
    let path = context.paths.known_hosts();
    edit_locked::<std::io::Error>(&context.paths.ssh_config_lock(), &path, 0o600, |current| {
        Ok(Some(edit(current.unwrap_or_default())))
    })
    .map_err(|e| io_error(&path, e))?;
    Ok(())
}

/// Pins the sandbox's host key (`type base64`).
pub(crate) fn pin_host_key(context: &Context, id: &SandboxId, key: &str) -> CommandResult<()> {
    edit_known_hosts(context, |text| {
        known_hosts::pin(text, &id.host_alias(), key)
    })
}

/// Forgets the sandbox's host key.
pub(crate) fn unpin_host_key(context: &Context, id: &SandboxId) -> CommandResult<()> {
    edit_known_hosts(context, |text| known_hosts::unpin(text, &id.host_alias()))
}

/// The pinned host key, if any.
pub(crate) fn pinned_host_key(context: &Context, id: &SandboxId) -> Option<String> {
    let text = std::fs::read(context.paths.known_hosts()).ok()?;
    known_hosts::pinned(&text, &id.host_alias())
}

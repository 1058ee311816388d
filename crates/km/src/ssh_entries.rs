//! Writes km's entries into the operator's `~/.ssh/config` and km's pinned known_hosts, each
//! under the shared advisory lock and replaced atomically.

use km_core::atomic_file::{RefusedReplace, edit_locked};
use km_core::id::SandboxId;
use km_core::known_hosts;
use km_core::ssh_config::{self, BlockError, HostEntry};
use km_core::userdata::shell_quote;

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

/// How ssh reaches the sandbox from a Host entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Through the `km vscode start` tunnel on 127.0.0.1:<port>.
    Port(u16),
    /// Through `km proxy` as the ProxyCommand; `fdpass` when km hands ssh a socket and exits.
    Proxy { fdpass: bool },
}

/// The `ProxyCommand` line for `id`: km by absolute path, shell-quoted, `%` escaped.
pub(crate) fn proxy_command(
    context: &Context,
    id: &SandboxId,
    fdpass: bool,
) -> CommandResult<String> {
    let exe = context.km_exe.display().to_string();
    if exe.chars().any(char::is_control) {
        return Err(CommandError::user(format!(
            "km's own path {exe:?} holds a control character, which an ssh config cannot carry"
        )));
    }
    let flag = if fdpass { " --fdpass" } else { "" };
    Ok(format!(
        "{} proxy{flag} {id}",
        shell_quote(&exe).replace('%', "%%")
    ))
}

/// The ProxyCommand of a login km itself makes to settle a key rotation: that proxy must not
/// wait for the rotation lock its own caller holds.
pub(crate) fn settling_proxy_command(context: &Context, id: &SandboxId) -> CommandResult<String> {
    let plain = proxy_command(context, id, false)?;
    let suffix = format!(" proxy {id}");
    let program = plain.strip_suffix(&suffix).unwrap_or(&plain);
    Ok(format!("{program} proxy --settling {id}"))
}

/// Which transport an existing entry uses, read back from `~/.ssh/config`.
pub(crate) fn entry_transport(context: &Context, id: &SandboxId) -> Option<Transport> {
    let text = std::fs::read_to_string(context.paths.ssh_config()).ok()?;
    let entry = ssh_config::parse_entries(&text)
        .ok()?
        .into_iter()
        .find(|e| e.alias == id.host_alias())?;
    let value = |name: &str| {
        entry.lines.iter().find_map(|line| {
            let (key, rest) = line.trim().split_once(char::is_whitespace)?;
            key.eq_ignore_ascii_case(name)
                .then(|| rest.trim().to_owned())
        })
    };
    match value("ProxyCommand") {
        Some(command) if command != "none" => Some(Transport::Proxy {
            fdpass: value("ProxyUseFdpass").is_some_and(|v| v == "yes"),
        }),
        _ => value("Port")?.parse().ok().map(Transport::Port),
    }
}

/// The `Host km-<id>` entry VS Code and ssh use.
pub(crate) fn host_entry(
    context: &Context,
    id: &SandboxId,
    transport: Transport,
    user: &str,
) -> CommandResult<HostEntry> {
    let alias = id.host_alias();
    let key = context.paths.private_key(id);
    let known = context.paths.known_hosts();
    let entry = HostEntry::new(alias.clone()).option("HostName", "127.0.0.1");
    let entry = match transport {
        Transport::Port(port) => entry
            .option("Port", port.to_string())
            .option("ProxyCommand", "none"),
        Transport::Proxy { fdpass } => {
            let entry = entry.option("ProxyCommand", proxy_command(context, id, fdpass)?);
            if fdpass {
                entry.option("ProxyUseFdpass", "yes")
            } else {
                entry
            }
        }
    };
    let entry = entry
        .option("User", ssh_config::quote_value(user)?)
        .path_option("IdentityFile", &key.display().to_string())?
        .option("IdentitiesOnly", "yes")
        .option("HostKeyAlias", alias)
        .path_option("UserKnownHostsFile", &known.display().to_string())?
        .option("StrictHostKeyChecking", "yes")
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

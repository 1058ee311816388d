//! Runs the real OpenSSH client against a sandbox through `km proxy`, with the sandbox's key
//! and pinned host key; used for verification logins and interactive shells.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use km_core::id::SandboxId;
use km_core::ssh_config;

use crate::ssh_entries::{proxy_command, settling_proxy_command};

use crate::context::Context;

/// A path as an ssh `-o` value: `%` escaped (ssh expands `%` tokens in these options) and
/// quoted when it holds spaces, exactly as in the Host entry km writes.
fn path_value(path: &Path) -> Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
    ssh_config::path_value(text).map_err(|e| e.to_string())
}

/// An `ssh` command that reaches `id` through `km proxy <id>`, authenticating with `key`.
///
/// The proxy is always given the sandbox ID, never an alias or number to resolve again.
pub(crate) fn ssh_command(
    context: &Context,
    id: &SandboxId,
    key: &Path,
    user: &str,
) -> Result<Command, String> {
    ssh_command_through(
        context,
        id,
        key,
        user,
        &proxy_command(context, id, false).map_err(|e| e.message)?,
    )
}

fn ssh_command_through(
    context: &Context,
    id: &SandboxId,
    key: &Path,
    user: &str,
    proxy: &str,
) -> Result<Command, String> {
    let mut command = Command::new("ssh");
    command
        .arg("-F")
        .arg("none")
        .arg("-o")
        .arg(format!("IdentityFile={}", path_value(key)?))
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            path_value(&context.paths.known_hosts())?
        ))
        .arg("-o")
        .arg(format!("HostKeyAlias={}", id.host_alias()))
        .arg("-o")
        .arg(format!("ProxyCommand={proxy}"))
        .arg("-l")
        .arg(user);
    Ok(command)
}

/// Logs in with `key` and runs `true`; returns ssh's complaint on failure.
pub(crate) fn verify_login(
    context: &Context,
    id: &SandboxId,
    key: &Path,
    user: &str,
) -> Result<(), String> {
    // Verification logins are made while km holds the rotation lock (or settles one): their
    // proxy must not wait for that lock.
    let proxy = settling_proxy_command(context, id).map_err(|e| e.message)?;
    let output = ssh_command_through(context, id, key, user, &proxy)?
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-T"])
        .arg(id.host_alias())
        .arg("true")
        .stdin(Stdio::null())
        // Its own process group: the operator's Ctrl-C, held back by km in a critical
        // section, must not kill the verification either.
        .process_group(0)
        .output()
        .map_err(|e| format!("cannot run ssh: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(stderr
            .lines()
            .last()
            .unwrap_or("ssh failed")
            .trim()
            .to_owned())
    }
}

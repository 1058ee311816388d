//! Runs the real OpenSSH client against a sandbox through `km proxy`, with the sandbox's key
//! and pinned host key; used for verification logins and interactive shells.

use std::path::Path;
use std::process::{Command, Stdio};

use km_core::id::SandboxId;
use km_core::userdata::shell_quote;

use crate::context::Context;

/// An `ssh` command that reaches `id` through `km proxy`, authenticating with `key`.
pub(crate) fn ssh_command(context: &Context, id: &SandboxId, key: &Path, user: &str) -> Command {
    let proxy = format!(
        "{} proxy {}",
        shell_quote(&context.km_exe.display().to_string()),
        id
    );
    let mut command = Command::new("ssh");
    command
        .arg("-F")
        .arg("none")
        .arg("-i")
        .arg(key)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            context.paths.known_hosts().display()
        ))
        .arg("-o")
        .arg(format!("HostKeyAlias={}", id.host_alias()))
        .arg("-o")
        .arg(format!("ProxyCommand={proxy}"))
        .arg("-l")
        .arg(user);
    command
}

/// Logs in with `key` and runs `true`; returns ssh's complaint on failure.
pub(crate) fn verify_login(
    context: &Context,
    id: &SandboxId,
    key: &Path,
    user: &str,
) -> Result<(), String> {
    let output = ssh_command(context, id, key, user)
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-T"])
        .arg(id.host_alias())
        .arg("true")
        .stdin(Stdio::null())
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

//! Renders a sandbox's first-boot userdata: the shell script that provisions sshd's host key
//! and, only when VS Code is enabled, the operator's `authorized_keys`.
//!
//! One template serves every platform. The local agent runs it with `KM_ROOT` and
//! `KM_SANDBOX_HOME` pointing into the sandbox directory; a platform adds its own steps around
//! it ([`BootSteps`]: on EC2, cloud-init's userdata, what a real machine needs). Every value is
//! validated before rendering and single-quoted in the script.

use crate::id::SandboxId;
use crate::keys::{KeyError, parse_public_line};

/// What a platform adds around the shared first boot: shell steps run before it (once `root`
/// and `home` are set) and after it. The local platform adds none; EC2's (its `sandbox` user,
/// sshd on loopback, SELinux labels) live with the EC2 platform.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BootSteps {
    /// Run before the shared steps.
    pub prepare: &'static str,
    /// Run after them.
    pub finish: &'static str,
}

/// What the first boot needs to know.
#[derive(Debug, Clone)]
pub struct UserData {
    /// What the platform adds around the shared steps.
    pub steps: BootSteps,
    /// The sandbox being booted.
    pub sandbox_id: SandboxId,
    /// The profile's resolved `spec.cli.vscodeEnabled`.
    pub vscode_enabled: bool,
    /// The operator's public key line (`VSCodeSSHPubKey`), present when VS Code is enabled.
    pub vscode_ssh_pub_key: Option<String>,
}

/// Quotes `value` for a POSIX shell.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

impl UserData {
    /// Renders the script, refusing a public key that is not one clean ed25519 line.
    pub fn render(&self) -> Result<String, KeyError> {
        let key_line = match (&self.vscode_ssh_pub_key, self.vscode_enabled) {
            (Some(line), true) => {
                // Re-serialise what parsed, so nothing but the key itself reaches the script.
                parse_public_line(line)?.to_openssh()?
            }
            _ => String::new(),
        };
        let id = shell_quote(self.sandbox_id.as_str());
        let enabled = if self.vscode_enabled && !key_line.is_empty() {
            "true"
        } else {
            "false"
        };
        let key = shell_quote(&key_line);
        let BootSteps { prepare, finish } = self.steps;
        Ok(format!(
            r#"#!/bin/sh
# km userdata: first boot of sandbox {sandbox_id}
set -eu
KM_SANDBOX_ID={id}
KM_VSCODE_ENABLED={enabled}
VSCodeSSHPubKey={key}
root="${{KM_ROOT:-}}"
home="${{KM_SANDBOX_HOME:-/home/sandbox}}"
{prepare}umask 077
mkdir -p "$root/etc/ssh" "$home/workspace"
if [ ! -f "$root/etc/ssh/ssh_host_ed25519_key" ]; then
  ssh-keygen -q -t ed25519 -N '' -C "km-host-$KM_SANDBOX_ID" -f "$root/etc/ssh/ssh_host_ed25519_key"
fi
# Public, as on a stock image: km reads it as the sandbox user to pin it (umask 077 above).
chmod 644 "$root/etc/ssh/ssh_host_ed25519_key.pub"
if [ "$KM_VSCODE_ENABLED" = true ]; then
  mkdir -p "$home/.ssh"
  chmod 700 "$home/.ssh"
  printf '%s\n' "$VSCodeSSHPubKey" > "$home/.ssh/authorized_keys.km-new"
  chmod 600 "$home/.ssh/authorized_keys.km-new"
  mv -f "$home/.ssh/authorized_keys.km-new" "$home/.ssh/authorized_keys"
  if [ -n "${{KM_SANDBOX_USER:-}}" ]; then chown -R "$KM_SANDBOX_USER:" "$home/.ssh"; fi
fi
{finish}echo "km-userdata: first boot of $KM_SANDBOX_ID done (vscode=$KM_VSCODE_ENABLED)"
"#,
            sandbox_id = self.sandbox_id
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyPair;

    fn id() -> SandboxId {
        "sb-0123abcd".parse().unwrap()
    }

    #[test]
    fn enabled_userdata_carries_the_key_quoted() {
        let line = KeyPair::generate("km-sb-0123abcd")
            .unwrap()
            .public_line()
            .unwrap();
        let script = UserData {
            steps: BootSteps::default(),
            sandbox_id: id(),
            vscode_enabled: true,
            vscode_ssh_pub_key: Some(line.clone()),
        }
        .render()
        .unwrap();
        assert!(script.contains(&format!("VSCodeSSHPubKey='{line}'")));
        assert!(script.contains("KM_VSCODE_ENABLED=true"));
    }

    #[test]
    fn disabled_userdata_has_no_key() {
        let script = UserData {
            steps: BootSteps::default(),
            sandbox_id: id(),
            vscode_enabled: false,
            vscode_ssh_pub_key: None,
        }
        .render()
        .unwrap();
        assert!(script.contains("KM_VSCODE_ENABLED=false"));
        assert!(script.contains("VSCodeSSHPubKey=''"));
    }

    #[test]
    fn a_hostile_key_never_reaches_the_script() {
        let hostile = "ssh-ed25519 AAAA'\nrm -rf / #";
        let result = UserData {
            steps: BootSteps::default(),
            sandbox_id: id(),
            vscode_enabled: true,
            vscode_ssh_pub_key: Some(hostile.into()),
        }
        .render();
        assert!(result.is_err());
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}

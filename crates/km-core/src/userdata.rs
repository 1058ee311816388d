//! Renders a sandbox's first-boot userdata: the shell script that provisions sshd's host key
//! and, only when VS Code is enabled, the operator's `authorized_keys`.
//!
//! One template serves both platforms. The local agent runs it with `KM_ROOT` and
//! `KM_SANDBOX_HOME` pointing into the sandbox directory; on EC2 it is the instance's
//! cloud-init userdata and adds what a real machine needs: the `sandbox` user, OpenSSH's
//! server if the image lacks it, sshd on 127.0.0.1 only (SSM reaches it from inside) with
//! curve25519 key exchange, and SELinux labels. Every value is validated before rendering and
//! single-quoted in the script. Every path the EC2 steps touch starts with `$root` (empty on
//! a real instance), so the same script also prepares a simulated instance's directory.

use crate::id::SandboxId;
use crate::keys::{KeyError, parse_public_line};

/// Where the userdata runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Run by the local agent inside the sandbox directory.
    Local,
    /// cloud-init on an EC2 instance, as root.
    Ec2,
}

/// The steps only a real EC2 instance needs, run before the shared ones.
const EC2_PREPARE: &str = r#"KM_SANDBOX_USER=sandbox
if ! id "$KM_SANDBOX_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$KM_SANDBOX_USER"
fi
home="$root/home/$KM_SANDBOX_USER"
if [ "$KM_VSCODE_ENABLED" = true ] && [ ! -x /usr/sbin/sshd ]; then
  if command -v dnf >/dev/null 2>&1; then dnf install -y openssh-server
  elif command -v yum >/dev/null 2>&1; then yum install -y openssh-server
  elif command -v apt-get >/dev/null 2>&1; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y openssh-server
  fi
fi
if [ "$KM_VSCODE_ENABLED" = true ]; then
  mkdir -p "$root/etc/ssh/sshd_config.d"
  cat > "$root/etc/ssh/sshd_config.d/50-km.conf" <<'KM_SSHD'
# km: reached only through SSM from inside the instance
ListenAddress 127.0.0.1
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org
ExposeAuthInfo yes
KM_SSHD
  chmod 644 "$root/etc/ssh/sshd_config.d/50-km.conf"
fi
"#;

/// The steps only a real EC2 instance needs, run after the shared ones.
const EC2_FINISH: &str = r#"chown "$KM_SANDBOX_USER:" "$home/workspace"
if [ "$KM_VSCODE_ENABLED" = true ]; then
  if command -v restorecon >/dev/null 2>&1; then restorecon -R "$home/.ssh"; fi
  if command -v systemctl >/dev/null 2>&1; then
    systemctl enable sshd >/dev/null 2>&1 || systemctl enable ssh
    systemctl restart sshd >/dev/null 2>&1 || systemctl restart ssh
  fi
fi
mkdir -p "$root/var/lib/km"
: > "$root/var/lib/km/first-boot.done"
"#;

/// Where the EC2 userdata leaves its mark when first boot has finished, relative to `$root`.
pub const EC2_FIRST_BOOT_DONE: &str = "/var/lib/km/first-boot.done";

/// What the first boot needs to know.
#[derive(Debug, Clone)]
pub struct UserData {
    /// Where it runs.
    pub target: Target,
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
        let (prepare, finish) = match self.target {
            Target::Local => ("", ""),
            Target::Ec2 => (EC2_PREPARE, EC2_FINISH),
        };
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
            target: Target::Local,
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
            target: Target::Local,
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
            target: Target::Local,
            sandbox_id: id(),
            vscode_enabled: true,
            vscode_ssh_pub_key: Some(hostile.into()),
        }
        .render();
        assert!(result.is_err());
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn ec2_userdata_adds_the_user_sshd_on_loopback_and_selinux_labels() {
        let line = KeyPair::generate("km-sb-0123abcd")
            .unwrap()
            .public_line()
            .unwrap();
        let render = |target| {
            UserData {
                target,
                sandbox_id: id(),
                vscode_enabled: true,
                vscode_ssh_pub_key: Some(line.clone()),
            }
            .render()
            .unwrap()
        };
        let ec2 = render(Target::Ec2);
        for step in [
            "useradd --create-home",
            "ListenAddress 127.0.0.1",
            "KexAlgorithms curve25519-sha256",
            "PasswordAuthentication no",
            "restorecon -R",
            "chmod 700 \"$home/.ssh\"",
            "chmod 600",
            "chown -R \"$KM_SANDBOX_USER:\" \"$home/.ssh\"",
            "dnf install -y openssh-server",
            "\"$root/etc/ssh/sshd_config.d/50-km.conf\"",
            EC2_FIRST_BOOT_DONE,
        ] {
            assert!(ec2.contains(step), "{step} missing from:\n{ec2}");
        }
        assert!(ec2.contains(&format!("VSCodeSSHPubKey='{line}'")));
        let local = render(Target::Local);
        assert!(!local.contains("useradd") && !local.contains("ListenAddress"));
    }
}

//! What an EC2 instance's first boot adds around km's shared userdata: the `sandbox` user,
//! OpenSSH's server if the image lacks it, sshd on 127.0.0.1 only (SSM reaches it from inside)
//! with curve25519 key exchange, SELinux labels, and the mark that first boot finished. Every
//! path these steps touch starts with `$root` (empty on a real instance), so the same script
//! also prepares a simulated instance's directory.

use km_core::userdata::BootSteps;

/// The steps only a real EC2 instance needs, run before the shared ones.
const PREPARE: &str = r#"KM_SANDBOX_USER=sandbox
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
const FINISH: &str = r#"chown "$KM_SANDBOX_USER:" "$home/workspace"
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
pub(crate) const FIRST_BOOT_DONE: &str = "/var/lib/km/first-boot.done";

/// The steps km's userdata runs around its shared ones on an EC2 instance.
pub(crate) const BOOT_STEPS: BootSteps = BootSteps {
    prepare: PREPARE,
    finish: FINISH,
};

#[cfg(test)]
mod tests {
    use std::process::Command;

    use km_core::keys::KeyPair;
    use km_core::userdata::UserData;

    use super::*;

    fn render(steps: BootSteps, enabled: bool) -> String {
        let line = KeyPair::generate("km-sb-0123abcd")
            .unwrap()
            .public_line()
            .unwrap();
        UserData {
            steps,
            sandbox_id: "sb-0123abcd".parse().unwrap(),
            vscode_enabled: enabled,
            vscode_ssh_pub_key: enabled.then_some(line),
        }
        .render()
        .unwrap()
    }

    #[test]
    fn ec2_userdata_adds_the_user_sshd_on_loopback_and_selinux_labels() {
        let ec2 = render(BOOT_STEPS, true);
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
            FIRST_BOOT_DONE,
        ] {
            assert!(ec2.contains(step), "{step} missing from:\n{ec2}");
        }
        let local = render(BootSteps::default(), true);
        assert!(!local.contains("useradd") && !local.contains("ListenAddress"));
    }

    /// Both variants pass `sh -n`, `bash -n` and shellcheck, and fit EC2's 16 KB userdata limit.
    #[test]
    fn ec2_userdata_parses_passes_shellcheck_and_fits_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        for enabled in [true, false] {
            let script = render(BOOT_STEPS, enabled);
            assert!(script.len() < 16 * 1024, "{} bytes", script.len());
            let path = dir.path().join("userdata.sh");
            std::fs::write(&path, &script).unwrap();
            for program in [
                &["sh", "-n"][..],
                &["bash", "-n"][..],
                &["shellcheck", "--shell=sh", "--severity=style"][..],
            ] {
                let output = Command::new(program[0])
                    .args(&program[1..])
                    .arg(&path)
                    .output()
                    .unwrap_or_else(|e| panic!("cannot run {}: {e}", program[0]));
                assert!(
                    output.status.success(),
                    "{} rejects the EC2 userdata (vscode {enabled}):\n{}{}",
                    program[0],
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
}

//! Finding OpenSSH's server binaries and writing a sandbox's private sshd configuration.

use std::path::{Path, PathBuf};

/// Where the server-side OpenSSH programs are.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SshdTools {
    /// Absolute path of `sshd` (it refuses to re-exec from a relative path).
    pub sshd: PathBuf,
    /// Absolute path of `sftp-server`, needed by scp, sftp and VS Code.
    pub sftp_server: PathBuf,
}

/// Why the tools could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// No usable sshd.
    #[error("OpenSSH sshd not found (looked in {0})")]
    NoSshd(String),
    /// No sftp-server.
    #[error("OpenSSH sftp-server not found (looked in {0})")]
    NoSftpServer(String),
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.is_absolute()
        && std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds sshd: `override_path` (from `KM_SSHD`) if given, else the usual places, then `PATH`.
pub fn find_tools(
    override_path: Option<&Path>,
    path_var: Option<&str>,
) -> Result<SshdTools, ToolsError> {
    let path_dirs: Vec<PathBuf> = path_var
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect();
    let sshd_candidates: Vec<PathBuf> = match override_path {
        Some(p) => vec![p.to_path_buf()],
        None => ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
            .iter()
            .map(PathBuf::from)
            .chain(path_dirs.iter().map(|d| d.join("sshd")))
            .collect(),
    };
    let sshd = sshd_candidates
        .iter()
        .find(|p| is_executable(p))
        .cloned()
        .ok_or_else(|| ToolsError::NoSshd(list(&sshd_candidates)))?;
    let mut sftp_candidates: Vec<PathBuf> = [
        "/usr/lib/openssh/sftp-server",
        "/usr/libexec/openssh/sftp-server",
        "/usr/libexec/sftp-server",
        "/usr/lib/ssh/sftp-server",
        "/usr/local/libexec/sftp-server",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    if let Some(dir) = sshd.parent().and_then(Path::parent) {
        sftp_candidates.push(dir.join("libexec/sftp-server"));
        sftp_candidates.push(dir.join("lib/openssh/sftp-server"));
    }
    let sftp_server = sftp_candidates
        .iter()
        .find(|p| is_executable(p))
        .cloned()
        .ok_or_else(|| ToolsError::NoSftpServer(list(&sftp_candidates)))?;
    Ok(SshdTools { sshd, sftp_server })
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long sshd gives a connection to authenticate before dropping it.
pub const LOGIN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// Where the session wrapper lives.
pub fn session_wrapper(sandbox_dir: &Path) -> PathBuf {
    sandbox_dir.join("etc/session.sh")
}

/// Every session (shell, command, sftp, VS Code's `bash`) starts in the sandbox's home,
/// so relative paths from scp, sftp and scripts land inside the sandbox.
pub const SESSION_WRAPPER: &str = r#"#!/bin/sh
cd "$HOME" 2>/dev/null || exit 1
if [ -n "${SSH_ORIGINAL_COMMAND:-}" ]; then
  exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
fi
exec "${SHELL:-/bin/sh}" -l
"#;

/// Whether `path` can be written into an OpenSSH config: inside double quotes anything goes
/// except another double quote or a control character.
pub fn fits_openssh_config(path: &Path) -> bool {
    path.to_str()
        .is_some_and(|text| !text.chars().any(|c| c == '"' || c.is_control()))
}

fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// The sandbox's sshd_config: inetd mode only (no listener), key auth only, curve25519 key
/// exchange (the post-quantum default costs ~145 ms per login on loopback), forwarding and
/// sftp on, and `HOME` pointing into the sandbox.
pub fn render_sshd_config(sandbox_dir: &Path, home: &Path, tools: &SshdTools) -> String {
    [
        format!(
            "HostKey {}",
            quoted(&sandbox_dir.join("etc/ssh/ssh_host_ed25519_key"))
        ),
        format!(
            "AuthorizedKeysFile {}",
            quoted(&home.join(".ssh/authorized_keys"))
        ),
        "PidFile none".into(),
        "UsePAM no".into(),
        "PubkeyAuthentication yes".into(),
        "PasswordAuthentication no".into(),
        "KbdInteractiveAuthentication no".into(),
        "PermitRootLogin prohibit-password".into(),
        // Sandboxes may live under a world-writable temp dir in tests; km owns these files.
        "StrictModes no".into(),
        "AllowTcpForwarding yes".into(),
        "AllowStreamLocalForwarding yes".into(),
        "X11Forwarding no".into(),
        "PrintMotd no".into(),
        // Each session's key is named in $SSH_USER_AUTH, so `km vscode revoke` can end them.
        "ExposeAuthInfo yes".into(),
        // An idle connection that never logs in is dropped soon; see `LOGIN_GRACE`.
        format!("LoginGraceTime {}", LOGIN_GRACE.as_secs()),
        "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org".into(),
        format!("Subsystem sftp {}", quoted(&tools.sftp_server)),
        format!("SetEnv \"HOME={}\"", home.display()),
        // sshd starts sessions in the passwd home; the wrapper moves them into the sandbox's.
        format!(
            "ForceCommand {}",
            km_core::userdata::shell_quote(&session_wrapper(sandbox_dir).display().to_string())
        ),
        "LogLevel VERBOSE".into(),
        String::new(),
    ]
    .join("\n")
}

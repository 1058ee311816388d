//! The EC2 byte stream: one SSM session per connection, opened by the AWS CLI and its
//! session-manager-plugin (what operators already have), on the connection's own descriptors.
//!
//! `aws ssm start-session --document-name AWS-StartSSHSession` gets the accepted socket (or
//! ssh's stdin and stdout) as its stdin and stdout, so km copies no bytes and every connection
//! is its own session: VS Code's parallel connections never queue behind one another.

use std::io::Read;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use km_core::id::SandboxId;
use km_core::platform::{PlatformError, StreamSession};

/// Where the AWS CLI's installation is explained.
const AWS_CLI_INSTALL: &str =
    "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html";
/// Where the Session Manager plugin's installation is explained.
const PLUGIN_INSTALL: &str = "https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html";
/// How much of the CLI's complaint is kept to explain a failed session.
const STDERR_KEPT: u64 = 64 * 1024;

/// The instance a session goes to.
#[derive(Debug, Clone)]
pub(crate) struct SessionTarget {
    pub(crate) instance_id: String,
    pub(crate) region: String,
    pub(crate) sandbox: SandboxId,
}

/// `name` on `PATH`, if it is there.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where the AWS CLI and its session-manager-plugin are, or what is missing and how to install
/// it, for `km doctor`.
pub(crate) fn tools_found() -> Result<String, String> {
    let aws = aws_cli().map_err(|e| e.to_string())?;
    let plugin = on_path("session-manager-plugin").unwrap_or_default();
    Ok(format!(
        "{} and {} open the sandboxes' SSM sessions",
        aws.display(),
        plugin.display()
    ))
}

/// The AWS CLI, after checking that it and the plugin it needs are installed.
fn aws_cli() -> Result<PathBuf, PlatformError> {
    let aws = on_path("aws").ok_or_else(|| {
        PlatformError::Channel(format!(
            "the AWS CLI (`aws`) is not on PATH; km reaches EC2 sandboxes through `aws ssm start-session` — install it: {AWS_CLI_INSTALL}"
        ))
    })?;
    if on_path("session-manager-plugin").is_none() {
        return Err(PlatformError::Channel(format!(
            "AWS's session-manager-plugin is not on PATH; `aws ssm start-session` needs it to reach EC2 sandboxes — install it: {PLUGIN_INSTALL}"
        )));
    }
    Ok(aws)
}

impl SessionTarget {
    fn start_session(&self, aws: &Path) -> Command {
        let mut command = Command::new(aws);
        command.args([
            "ssm",
            "start-session",
            "--target",
            &self.instance_id,
            "--region",
            &self.region,
        ]);
        command
    }

    /// An interactive shell session (SSM's default document), on the caller's terminal.
    pub(crate) fn shell(&self) -> Result<Command, PlatformError> {
        Ok(self.start_session(&aws_cli()?))
    }

    /// Opens an SSH session to the instance's sshd on `fds` (one socket, or stdin and stdout).
    pub(crate) fn open(&self, fds: &[RawFd]) -> Result<Box<dyn StreamSession>, PlatformError> {
        let aws = aws_cli()?;
        let (first, last) = match fds {
            [one] => (*one, *one),
            [input, output] => (*input, *output),
            _ => {
                return Err(PlatformError::Channel(format!(
                    "an SSM session takes one socket or a stdin/stdout pair, not {} descriptors",
                    fds.len()
                )));
            }
        };
        let io = |e: std::io::Error| {
            PlatformError::Channel(format!("cannot hand the connection to `aws`: {e}"))
        };
        let stdin = duplicate(first).map_err(io)?;
        let stdout = duplicate(last).map_err(io)?;
        let mut child = self
            .start_session(&aws)
            .args([
                "--document-name",
                "AWS-StartSSHSession",
                "--parameters",
                "portNumber=22",
            ])
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| PlatformError::Channel(format!("cannot run {}: {e}", aws.display())))?;
        let mut stderr = child.stderr.take();
        let complaint = std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(stderr) = stderr.as_mut() {
                let _ = stderr.take(STDERR_KEPT).read_to_end(&mut kept);
                // Drain the rest so the CLI never blocks on a full pipe.
                let _ = std::io::copy(stderr, &mut std::io::sink());
            }
            String::from_utf8_lossy(&kept).into_owned()
        });
        Ok(Box::new(SsmStream {
            child,
            complaint,
            target: self.clone(),
        }))
    }

    /// What a failed `aws ssm start-session` said, as an error with the next step.
    fn failure(&self, complaint: &str) -> PlatformError {
        let said = complaint
            .lines()
            .map(str::trim)
            .rfind(|line| !line.is_empty())
            .unwrap_or("no message")
            .to_owned();
        if complaint.contains("ExpiredToken")
            || complaint.contains("security token included in the request is expired")
            || complaint.contains("UnrecognizedClientException")
            || complaint.contains("InvalidSignatureException")
            || complaint.contains("RequestExpired")
            // The AWS CLI v2's own words when an SSO login has run out.
            || complaint.contains("Token has expired and refresh failed")
        {
            PlatformError::Credentials(format!(
                "AWS credentials expired or invalid while connecting to sandbox {} ({said}); sign in again (e.g. `aws sso login`), then reconnect",
                self.sandbox
            ))
        } else if complaint.contains("SessionManagerPlugin is not found") {
            PlatformError::Channel(format!(
                "AWS's session-manager-plugin is missing ({said}) — install it: {PLUGIN_INSTALL}"
            ))
        } else if complaint.contains("TargetNotConnected") {
            PlatformError::Channel(format!(
                "SSM cannot reach instance {} of sandbox {} ({said}): it is stopped, or its SSM agent or sshd is not running; check: km vscode status {}",
                self.instance_id, self.sandbox, self.sandbox
            ))
        } else if complaint.contains("AccessDenied") {
            PlatformError::Channel(format!(
                "AWS denied the SSM session to sandbox {} ({said}); the IAM policy km needs is in docs/aws.md",
                self.sandbox
            ))
        } else {
            PlatformError::Channel(format!(
                "the SSM session to sandbox {} failed: {said}",
                self.sandbox
            ))
        }
    }
}

/// A copy of a descriptor the caller keeps open for the length of the call.
#[allow(unsafe_code)]
fn duplicate(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: `Platform::open_stream`'s callers pass descriptors that stay open for the whole
    // call; the borrow ends before it returns, and only the owned duplicate is kept.
    unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
}

/// One live `aws ssm start-session`.
struct SsmStream {
    child: Child,
    complaint: JoinHandle<String>,
    target: SessionTarget,
}

impl StreamSession for SsmStream {
    fn wait(mut self: Box<Self>) -> Result<Option<i32>, PlatformError> {
        let status = self.child.wait().map_err(|e| {
            PlatformError::Channel(format!("lost track of `aws ssm start-session`: {e}"))
        })?;
        let complaint = self.complaint.join().unwrap_or_default();
        if status.success() {
            return Ok(status.code());
        }
        Err(self.target.failure(&complaint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SessionTarget {
        SessionTarget {
            instance_id: "i-0123456789abcdef0".into(),
            region: "eu-west-1".into(),
            sandbox: "sb-0123abcd".parse().unwrap(),
        }
    }

    #[test]
    fn expired_credentials_are_told_apart_from_other_failures() {
        let expired = target().failure(
            "\nAn error occurred (ExpiredTokenException) when calling the StartSession operation: The security token included in the request is expired\n",
        );
        assert!(
            matches!(expired, PlatformError::Credentials(_)),
            "{expired}"
        );
        let offline = target().failure(
            "An error occurred (TargetNotConnected) when calling the StartSession operation: i-0123456789abcdef0 is not connected.",
        );
        assert!(
            matches!(&offline, PlatformError::Channel(m) if m.contains("km vscode status sb-0123abcd")),
            "{offline}"
        );
        let sso = target().failure(
            "\nError when retrieving token from sso: Token has expired and refresh failed\n",
        );
        assert!(matches!(sso, PlatformError::Credentials(_)), "{sso}");
        let plugin = target().failure("SessionManagerPlugin is not found. Please refer to …");
        assert!(plugin.to_string().contains(PLUGIN_INSTALL));
    }
}

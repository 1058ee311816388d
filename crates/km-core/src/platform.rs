//! The seam between km's commands and the places sandboxes run (local processes, EC2).
//!
//! Every command above this trait is written once. A platform provisions from rendered
//! userdata, runs scripts over its authenticated command channel (the local agent, or SSM
//! SendCommand), and opens streams to the sandbox's sshd.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::id::{Alias, SandboxId};
use crate::profile::Runtime;
use crate::record::SandboxRecord;
use crate::userdata::BootSteps;

/// What a script run in the sandbox produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code (-1 when killed).
    pub exit_code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Whether the timeout stopped it.
    pub timed_out: bool,
}

/// What a platform needs to create a sandbox.
#[derive(Debug, Clone)]
pub struct ProvisionRequest {
    /// The new sandbox's ID.
    pub id: SandboxId,
    /// Its alias, for the platform's own labels (EC2 tags).
    pub alias: Option<Alias>,
    /// The first-boot script.
    pub userdata: String,
    /// The profile's `spec.runtime`: its substrate and the fields its provider reads (checked).
    pub runtime: Runtime,
}

/// Errors from a platform.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The sandbox is not running (stopped, crashed, or never booted).
    #[error("sandbox {0} is not running")]
    NotRunning(SandboxId),
    /// Provisioning or boot failed.
    #[error("{0}")]
    Boot(String),
    /// Something accepts the sandbox's connections but never answers (a stopped or hung
    /// process): waiting longer cannot help.
    #[error("sandbox {id} does not answer: {detail}")]
    Unresponsive {
        /// The sandbox.
        id: SandboxId,
        /// What was waited for, and how long.
        detail: String,
    },
    /// The command or stream channel failed.
    #[error("{0}")]
    Channel(String),
    /// The platform's credentials are missing or expired: retrying cannot help until the
    /// operator signs in again.
    #[error("{0}")]
    Credentials(String),
    /// The platform could not be reached, or throttled km past its retries: the call had no
    /// effect to rely on, and may be tried again.
    #[error("{0}")]
    Unreachable(String),
    /// This machine cannot run a sandbox the way its profile asks, until the operator acts.
    #[error("{what}")]
    Unsupported {
        /// What is missing or refused.
        what: String,
        /// What the operator can do, best first.
        fixes: Vec<String>,
    },
}

impl From<Vec<crate::profile::FieldError>> for PlatformError {
    /// A profile's runtime that its provider refuses: only reached by a profile that skipped
    /// km's own check (which reports each field at its place).
    fn from(errors: Vec<crate::profile::FieldError>) -> Self {
        Self::Unsupported {
            what: errors
                .iter()
                .map(|e| format!("spec.runtime.{}: {}", e.key, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            fixes: vec!["fix the profile, then check it with `km validate <profile>`".into()],
        }
    }
}

/// What separates a sandbox from the machine it runs on, as `km list` and `km doctor` say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Boundary {
    /// A machine of its own (an EC2 instance).
    Machine,
    /// Namespaces of its own on this machine, no network but loopback.
    NamespacesOffline,
    /// Namespaces of its own on this machine, sharing its network.
    Namespaces,
    /// Nothing: it runs with the operator's own access.
    None,
}

impl Boundary {
    /// The word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Machine => "machine",
            Self::NamespacesOffline => "namespaces, no network",
            Self::Namespaces => "namespaces",
            Self::None => "none",
        }
    }
}

/// Whether a sandbox runs, as its platform answers now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// Running and answering.
    Running,
    /// There, but not running: stopped, crashed, or not yet booted.
    Stopped,
    /// The platform no longer has it (an instance EC2 has forgotten, a directory removed).
    Gone,
}

/// One thing `km doctor` checks about a platform on this machine.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// What was checked, as a short name.
    pub name: &'static str,
    /// What was found, or what is wrong and how to fix it.
    pub outcome: Result<String, String>,
}

/// A stream to the sandbox's sshd that outlives the call that opened it.
pub trait StreamSession: Send {
    /// Blocks until the sandbox side of the stream ends; returns sshd's exit code if known,
    /// or why the stream could not be carried (for a stream that needs a live process).
    fn wait(self: Box<Self>) -> Result<Option<i32>, PlatformError>;
}

/// A place sandboxes run. `Send + Sync` so a tunnel can serve many connections at once.
pub trait Platform: Send + Sync {
    /// The name stored in each record.
    fn name(&self) -> &'static str;
    /// Whether this machine can run a sandbox with `runtime`, checked before anything is made
    /// (no keypair, no record) so that a refusal leaves nothing to roll back.
    fn preflight(&self, _runtime: &Runtime) -> Result<(), PlatformError> {
        Ok(())
    }
    /// Creates and boots the sandbox, running its userdata at first boot; returns its
    /// resources (recorded, and all a later command needs to find it again).
    fn provision(&self, request: &ProvisionRequest) -> Result<serde_json::Value, PlatformError>;
    /// As [`Platform::provision`], handing `placed` where the sandbox is as soon as it exists,
    /// before it has booted, so that a create cut short (a crashed manager) can still be found
    /// and removed. Platforms whose sandboxes are found without it need not override it.
    fn provision_placed(
        &self,
        request: &ProvisionRequest,
        _placed: &dyn Fn(&serde_json::Value) -> Result<(), PlatformError>,
    ) -> Result<serde_json::Value, PlatformError> {
        self.provision(request)
    }
    /// Starts a stopped sandbox without repeating first boot.
    fn resume(&self, record: &SandboxRecord) -> Result<(), PlatformError>;
    /// Stops every process of the sandbox; its disk stays.
    fn stop(&self, record: &SandboxRecord) -> Result<(), PlatformError>;
    /// Removes the sandbox and everything it had.
    fn destroy(&self, record: &SandboxRecord) -> Result<(), PlatformError>;
    /// Whether each of `records` runs now (not only what was last recorded), in order, asked
    /// once for them all where the platform can (one EC2 call per region). An error means the
    /// platform could not be asked (credentials, network); it is never taken for "stopped".
    fn states(&self, records: &[&SandboxRecord]) -> Result<Vec<Liveness>, PlatformError>;
    /// [`Platform::states`] for one sandbox.
    fn liveness(&self, record: &SandboxRecord) -> Result<Liveness, PlatformError> {
        self.states(&[record])?.pop().ok_or_else(|| {
            PlatformError::Channel(format!(
                "the platform said nothing about sandbox {}",
                record.id
            ))
        })
    }
    /// Runs a shell script in the sandbox, with `$HOME` set to the sandbox user's home.
    fn exec(
        &self,
        record: &SandboxRecord,
        script: &str,
        timeout: Duration,
    ) -> Result<ExecOutput, PlatformError>;
    /// Runs a shell script in the sandbox on the caller's own stdin, stdout and stderr, like
    /// `ssh host cmd`: output arrives as it is produced, byte for byte, input is read as the
    /// command wants it, and the command is killed if the caller dies. Returns its exit code.
    fn run_with_stdio(
        &self,
        record: &SandboxRecord,
        script: &str,
        stdio: [RawFd; 3],
    ) -> Result<i32, PlatformError>;
    /// Hands `fds` (one socket, or stdin and stdout) to a fresh sshd session in the sandbox.
    fn open_stream(
        &self,
        record: &SandboxRecord,
        fds: &[RawFd],
    ) -> Result<Box<dyn StreamSession>, PlatformError>;
    /// A connection to a fresh sshd session in the sandbox, for a caller that hands it on
    /// (ssh's `ProxyUseFdpass`) and exits. Only for platforms whose streams outlive the caller.
    fn ready_stream(&self, record: &SandboxRecord) -> Result<OwnedFd, PlatformError> {
        stream_over_socket_pair(self, record)
    }
    /// A shell condition, run in the sandbox, that succeeds when sshd can serve.
    fn sshd_check(&self) -> String;
    /// The PID under which this sandbox's sshd sessions run, inside the sandbox, as one shell
    /// word: `km vscode revoke` ends sessions below it and nowhere else.
    fn sessions_root(&self, record: &SandboxRecord) -> String;
    /// Where the sandbox's host public key is, inside the sandbox, as one shell word (quoted
    /// where needed).
    fn host_key_path(&self, record: &SandboxRecord) -> String;
    /// The sandbox's workspace folder, as a path inside the sandbox (what an editor opens).
    fn workspace_path(&self, record: &SandboxRecord) -> String;
    /// Where to look when the sandbox will not boot or resume: a command or a place, in the
    /// platform's own terms.
    fn logs_hint(&self, record: &SandboxRecord) -> String;
    /// What `km doctor` should check about this platform on this machine.
    fn doctor(&self) -> Vec<HealthCheck> {
        Vec::new()
    }
    /// What separates the sandbox from the machine it runs on.
    fn boundary(&self, _record: &SandboxRecord) -> Boundary {
        Boundary::Machine
    }
    /// The user an ssh client logs in as.
    fn login_user(&self, record: &SandboxRecord) -> String;
    /// Whether a stream, once opened on a descriptor, needs no process of km's to stay alive
    /// (so `km proxy --fdpass` can hand ssh a socket and exit).
    fn streams_outlive_the_caller(&self) -> bool;
    /// The steps this platform adds around the shared first-boot script (none by default).
    fn boot_steps(&self) -> BootSteps {
        BootSteps::default()
    }
    /// An interactive shell in the sandbox that needs no sshd, for sandboxes created without
    /// VS Code, when the platform has one (an SSM session on EC2).
    fn shell_session(
        &self,
        _record: &SandboxRecord,
    ) -> Result<Option<std::process::Command>, PlatformError> {
        Ok(None)
    }
}

/// A socket pair whose one end goes to [`Platform::open_stream`]; returns the other end.
pub fn stream_over_socket_pair<P: Platform + ?Sized>(
    platform: &P,
    record: &SandboxRecord,
) -> Result<OwnedFd, PlatformError> {
    let (ours, theirs) = UnixStream::pair()
        .map_err(|e| PlatformError::Channel(format!("cannot make a socket pair: {e}")))?;
    // The session handle is dropped unwaited: the sandbox's sshd owns `theirs` now.
    let _session = platform.open_stream(record, &[theirs.as_raw_fd()])?;
    Ok(OwnedFd::from(ours))
}

//! The local platform: sandboxes as supervised agent processes on this machine.
//!
//! By default each sandbox's agent, and so every process of the sandbox, runs in namespaces of
//! its own (see [`crate::isolation`]); a profile with `isolation: none` runs it as the
//! operator, with the operator's access.

use std::fs;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use km_core::atomic_file::ensure_private_dir;
use km_core::id::SandboxId;
use km_core::paths::KmPaths;
use km_core::platform::{
    Boundary, ExecOutput, HealthCheck, Liveness, Platform, PlatformError, ProvisionRequest,
    StreamSession,
};
use km_core::profile::Runtime;
use km_core::record::SandboxRecord;

use crate::agent::AgentConfig;
use crate::client::AgentClient;
use crate::isolation::{
    self, INSIDE_HOME, INSIDE_PATH, INSIDE_USER, IsolationConfig, IsolationError, Launch,
};
use crate::layout::SandboxLayout;
use crate::process_tree;
use crate::protocol::{Reply, recv_reply};
use crate::runtime::{Isolation, LocalRuntime, Network};
use crate::sshd::SshdTools;

/// Unix socket paths longer than this do not fit `sockaddr_un` on every OS.
const MAX_SOCKET_PATH: usize = 104;
/// How long an agent may take to boot a sandbox.
const BOOT_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs sandboxes as local agent processes.
#[derive(Debug, Clone)]
pub struct LocalPlatform {
    paths: KmPaths,
    km_exe: PathBuf,
    /// OpenSSH's server tools, or why they were not found: only booting a sandbox needs them.
    tools: Result<SshdTools, String>,
    path_var: String,
    user: String,
    /// bubblewrap, or why it was not found: only isolated sandboxes need it.
    bwrap: Result<PathBuf, IsolationError>,
}

impl LocalPlatform {
    /// A platform that starts agents with `km_exe`, serves ssh with `tools` and isolates
    /// sandboxes with `bwrap`.
    pub fn new(
        paths: KmPaths,
        km_exe: PathBuf,
        tools: Result<SshdTools, String>,
        path_var: String,
        user: String,
        bwrap: Result<PathBuf, IsolationError>,
    ) -> Self {
        Self {
            paths,
            km_exe,
            tools,
            path_var,
            user,
            bwrap,
        }
    }

    /// The agent settings written at creation.
    fn agent_config(&self, id: &SandboxId) -> Option<AgentConfig> {
        serde_json::from_slice(&fs::read(self.layout(id).agent_config()).ok()?).ok()
    }

    /// bubblewrap, checked to work here with `config`'s namespaces.
    fn usable_bwrap(&self, config: IsolationConfig) -> Result<PathBuf, PlatformError> {
        let unsupported = |e: &IsolationError| PlatformError::Unsupported {
            what: e.to_string(),
            fixes: e.fixes(),
        };
        let bwrap = self.bwrap.as_ref().map_err(unsupported)?.clone();
        isolation::probe(&bwrap, config.network).map_err(|e| unsupported(&e))?;
        Ok(bwrap)
    }

    /// How a sandbox with `runtime` is isolated; refused when its settings contradict.
    fn isolation_for(runtime: &Runtime) -> Result<Option<IsolationConfig>, PlatformError> {
        let runtime = LocalRuntime::of(runtime)?;
        match (runtime.isolation, runtime.network) {
            (Isolation::Namespaces, network) => Ok(Some(IsolationConfig { network })),
            (Isolation::None, Network::Host) => Ok(None),
            (Isolation::None, Network::None) => Err(PlatformError::Unsupported {
                what: "`network: none` needs the sandbox's own namespaces, and the profile says `isolation: none`".into(),
                fixes: vec!["remove `isolation: none` from the profile, or `network: none`".into()],
            }),
        }
    }

    /// The command that starts the agent: km itself, or bubblewrap starting km inside the
    /// sandbox's namespaces (then `true`).
    fn agent_command(&self, id: &SandboxId) -> Result<(Command, bool), PlatformError> {
        let layout = self.layout(id);
        let config = self
            .agent_config(id)
            .ok_or_else(|| PlatformError::Boot(format!(
                "cannot read {}; the sandbox directory is damaged: remove it with `km destroy --force {id}`",
                layout.agent_config().display()
            )))?;
        let Some(isolation) = config.isolation else {
            let mut command = Command::new(&self.km_exe);
            command
                .arg("__agent")
                .arg(id.as_str())
                .arg("--dir")
                .arg(layout.root());
            return Ok((command, false));
        };
        let bwrap = self.usable_bwrap(isolation)?;
        let io = |e: std::io::Error| {
            PlatformError::Boot(format!("cannot write {}: {e}", layout.outside().display()))
        };
        ensure_private_dir(&layout.outside(), 0o700).map_err(io)?;
        fs::write(layout.outside().join("passwd"), isolation::passwd()).map_err(io)?;
        fs::write(layout.outside().join("group"), isolation::group()).map_err(io)?;
        let mut hidden = isolation::hidden_in(Path::new("/etc"));
        // As root the sandbox user is root outside, so what only root may read in /opt (where
        // software with its own secrets is often installed) is hidden too; for anyone else
        // the kernel already keeps it from them.
        if nix::unistd::geteuid().is_root() {
            hidden.extend(isolation::hidden_in(Path::new("/opt")));
        }
        let resolver = match isolation.network {
            Network::Host => isolation::resolver_outside_etc(Path::new("/etc/resolv.conf")),
            Network::None => None,
        };
        let launch = Launch {
            layout: &layout,
            id: id.as_str(),
            km_exe: &self.km_exe,
            tools: &config.tools,
            config: isolation,
            hidden: &hidden,
            resolver,
        };
        let mut command = Command::new(bwrap);
        command
            .args(isolation::bwrap_args(&launch))
            // The operator's environment (cloud credentials, tokens) stays outside.
            .env_clear()
            .env("PATH", INSIDE_PATH);
        Ok((command, true))
    }

    fn layout(&self, id: &SandboxId) -> SandboxLayout {
        SandboxLayout::new(self.paths.sandbox_dir(id))
    }

    fn client(&self, id: &SandboxId) -> AgentClient {
        AgentClient::new(self.layout(id).agent_socket())
    }

    fn spawn_agent(&self, id: &SandboxId) -> Result<(), PlatformError> {
        if !cfg!(target_os = "linux") {
            // Supervision and teardown rely on Linux's /proc and child subreapers.
            return Err(PlatformError::Boot(format!(
                "local sandboxes run on Linux only, and this km was built for {}; run km on a Linux machine (the AWS platform, for other systems, is not in this build)",
                std::env::consts::OS
            )));
        }
        let layout = self.layout(id);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(layout.agent_log())
            .map_err(|e| {
                PlatformError::Boot(format!("cannot open {}: {e}", layout.agent_log().display()))
            })?;
        let _ = fs::remove_file(layout.agent_socket());
        let (mut command, isolated) = self.agent_command(id)?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        detach_from_terminal(&mut command);
        let mut child = command.spawn().map_err(|e| {
            PlatformError::Boot(format!(
                "cannot start the sandbox agent {}: {e}",
                self.km_exe.display()
            ))
        })?;
        let client = self.client(id);
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Ok(reply) = client.status() {
                if isolated {
                    self.record_isolated_agent(id, child.id() as i32)?;
                }
                // Reap it in the background so a long-lived km leaves no zombie.
                thread::spawn(move || child.wait());
                return match reply {
                    Reply::Status {
                        booted: true,
                        sshd_ok: true,
                        ..
                    } => Ok(()),
                    Reply::Status {
                        boot_error: Some(error),
                        ..
                    } => Err(PlatformError::Boot(error)),
                    // The sandbox directory may be rolled back, so say why here, not where.
                    Reply::Status { sshd_error, .. } => Err(PlatformError::Boot(format!(
                        "sshd rejected the sandbox's configuration (`sshd -t`): {}",
                        sshd_error.as_deref().unwrap_or("no reason given")
                    ))),
                    other => Err(PlatformError::Boot(format!(
                        "unexpected agent reply {other:?}"
                    ))),
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = fs::read_to_string(layout.agent_log()).unwrap_or_default();
                return Err(PlatformError::Boot(format!(
                    "the sandbox agent exited ({status}) before it was ready: {}",
                    log.lines().last().unwrap_or("no output")
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(PlatformError::Boot(format!(
                    "the sandbox agent did not become ready within {}s; see {}",
                    BOOT_TIMEOUT.as_secs(),
                    layout.agent_log().display()
                )));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Records the PID, as this machine sees it, of the agent that `launcher` (bubblewrap)
    /// started inside the sandbox's namespaces: the agent cannot know it itself.
    fn record_isolated_agent(&self, id: &SandboxId, launcher: i32) -> Result<(), PlatformError> {
        let layout = self.layout(id);
        let agent = process_tree::descendants(launcher)
            .into_iter()
            .find(|&pid| process_tree::is_agent_of(pid, layout.root()))
            .ok_or_else(|| {
                PlatformError::Boot(format!(
                    "the sandbox agent answers, but no process below bubblewrap ({launcher}) is it"
                ))
            })?;
        fs::write(layout.agent_pid(), agent.to_string()).map_err(|e| {
            PlatformError::Boot(format!(
                "cannot write {}: {e}",
                layout.agent_pid().display()
            ))
        })
    }

    /// The agent's PID, if the recorded one still belongs to this sandbox's agent.
    fn live_agent(&self, layout: &SandboxLayout) -> Option<i32> {
        read_pid(&layout.agent_pid()).filter(|&pid| {
            process_tree::is_alive(pid) && process_tree::is_agent_of(pid, layout.root())
        })
    }

    /// Kills every process of the sandbox; fails, naming them, if any survive.
    fn kill_everything(&self, id: &SandboxId) -> Result<(), PlatformError> {
        let layout = self.layout(id);
        if let Some(pid) = self.live_agent(&layout) {
            let mut doomed = process_tree::descendants(pid);
            doomed.push(pid);
            process_tree::kill_all(&doomed);
        }
        // Whatever escaped (after an agent crash, say) still names the sandbox directory.
        for _ in 0..3 {
            let stray = process_tree::referencing(layout.root());
            if stray.is_empty() {
                break;
            }
            process_tree::kill_all(&stray);
            thread::sleep(Duration::from_millis(20));
        }
        let survivors = process_tree::referencing(layout.root());
        if !survivors.is_empty() {
            return Err(PlatformError::Channel(format!(
                "processes {survivors:?} of sandbox {id} are still running after SIGKILL; check them with `ps -o pid,user,args -p {}`",
                survivors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
        // Leftovers are harmless: nothing listens on the socket, and a stale PID is checked
        // against the agent's command line before it is ever signalled.
        let _ = fs::remove_file(layout.agent_socket());
        let _ = fs::remove_file(layout.agent_pid());
        Ok(())
    }
}

/// Starts the agent in a session of its own: the operator's Ctrl-C never reaches the sandbox,
/// and a command that `km shell` runs on the operator's terminal reads it without being
/// stopped by job control (the terminal is not the sandbox's controlling terminal).
#[allow(unsafe_code)]
fn detach_from_terminal(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and calls only setsid(2),
    // which is async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn channel(e: std::io::Error) -> PlatformError {
    PlatformError::Channel(e.to_string())
}

/// An agent error, with a silent agent told apart: nothing will come of waiting for it.
fn agent_error(id: &SandboxId) -> impl Fn(std::io::Error) -> PlatformError + '_ {
    move |e| {
        if e.kind() == std::io::ErrorKind::TimedOut {
            PlatformError::Unresponsive {
                id: id.clone(),
                detail: e.to_string(),
            }
        } else {
            channel(e)
        }
    }
}

struct LocalStream {
    control: UnixStream,
}

impl StreamSession for LocalStream {
    fn wait(self: Box<Self>) -> Result<Option<i32>, PlatformError> {
        match recv_reply(&self.control) {
            Ok(Reply::StreamEnded { exit_code }) => Ok(Some(exit_code)),
            // The agent went away with the sandbox; sshd's end closed the stream already.
            _ => Ok(None),
        }
    }
}

impl Platform for LocalPlatform {
    fn name(&self) -> &'static str {
        "local"
    }

    fn preflight(&self, runtime: &Runtime) -> Result<(), PlatformError> {
        match Self::isolation_for(runtime)? {
            Some(config) => self.usable_bwrap(config).map(drop),
            None => Ok(()),
        }
    }

    fn provision(&self, request: &ProvisionRequest) -> Result<serde_json::Value, PlatformError> {
        let (id, userdata) = (&request.id, &request.userdata);
        let tools = self.tools.clone().map_err(PlatformError::Boot)?;
        let isolation = Self::isolation_for(&request.runtime)?;
        if let Some(config) = isolation {
            // Checked again: a manager's machine may differ from where preflight ran.
            self.usable_bwrap(config)?;
        }
        let layout = self.layout(id);
        let socket_len = layout.agent_socket().as_os_str().len();
        if socket_len >= MAX_SOCKET_PATH {
            return Err(PlatformError::Boot(format!(
                "the sandbox's socket path would be {socket_len} bytes, over the {MAX_SOCKET_PATH}-byte limit for Unix sockets; use a shorter $HOME"
            )));
        }
        if !crate::sshd::fits_openssh_config(layout.root()) {
            return Err(PlatformError::Boot(format!(
                "the sandbox directory {:?} contains a double quote, a control character or non-UTF-8 bytes, which an sshd config cannot hold; use a plainer $HOME",
                layout.root()
            )));
        }
        let io = |e: std::io::Error| {
            PlatformError::Boot(format!("cannot lay out {}: {e}", layout.root().display()))
        };
        ensure_private_dir(&self.paths.sandboxes_dir(), 0o700).map_err(io)?;
        fs::create_dir(layout.root()).map_err(io)?;
        ensure_private_dir(layout.root(), 0o700).map_err(io)?;
        for dir in ["etc/ssh", "run", "log", "home"] {
            ensure_private_dir(&layout.root().join(dir), 0o700).map_err(io)?;
        }
        fs::write(layout.userdata(), userdata).map_err(io)?;
        let config = match isolation {
            Some(isolation) => AgentConfig {
                id: id.to_string(),
                tools,
                path: INSIDE_PATH.into(),
                home: Some(INSIDE_HOME.into()),
                isolation: Some(isolation),
            },
            None => AgentConfig {
                id: id.to_string(),
                tools,
                path: self.path_var.clone(),
                home: None,
                isolation: None,
            },
        };
        let json =
            serde_json::to_vec_pretty(&config).map_err(|e| PlatformError::Boot(e.to_string()))?;
        fs::write(layout.agent_config(), json).map_err(io)?;
        self.spawn_agent(id)?;
        Ok(serde_json::json!({
            "dir": layout.root(),
            "isolation": if isolation.is_some() { Isolation::Namespaces } else { Isolation::None },
            "network": isolation.map_or(Network::Host, |config| config.network),
        }))
    }

    fn resume(&self, record: &SandboxRecord) -> Result<(), PlatformError> {
        if self.client(&record.id).is_listening() {
            return Ok(());
        }
        self.kill_everything(&record.id)?;
        self.spawn_agent(&record.id)
    }

    fn stop(&self, record: &SandboxRecord) -> Result<(), PlatformError> {
        let layout = self.layout(&record.id);
        let pid = self.live_agent(&layout);
        // A stopped or crashed agent does not answer; what is left is killed below.
        let _ = self.client(&record.id).shutdown();
        if let Some(pid) = pid {
            let deadline = Instant::now() + Duration::from_secs(3);
            while process_tree::is_alive(pid) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
        }
        self.kill_everything(&record.id)
    }

    fn destroy(&self, record: &SandboxRecord) -> Result<(), PlatformError> {
        self.stop(record)?;
        let dir = self.layout(&record.id).root().to_path_buf();
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(PlatformError::Channel(format!(
                "cannot remove {}: {e}",
                dir.display()
            ))),
        }
    }

    fn states(&self, records: &[&SandboxRecord]) -> Result<Vec<Liveness>, PlatformError> {
        Ok(records
            .iter()
            .map(|record| {
                if self.client(&record.id).is_listening() {
                    Liveness::Running
                } else if self.layout(&record.id).root().is_dir() {
                    Liveness::Stopped
                } else {
                    Liveness::Gone
                }
            })
            .collect())
    }

    fn exec(
        &self,
        record: &SandboxRecord,
        script: &str,
        timeout: Duration,
    ) -> Result<ExecOutput, PlatformError> {
        let client = self.client(&record.id);
        if !client.is_listening() {
            return Err(PlatformError::NotRunning(record.id.clone()));
        }
        match client
            .exec(script, timeout)
            .map_err(agent_error(&record.id))?
        {
            Reply::Exec {
                exit_code,
                stdout,
                stderr,
                timed_out,
            } => Ok(ExecOutput {
                exit_code,
                stdout,
                stderr,
                timed_out,
            }),
            Reply::Error { message } => Err(PlatformError::Channel(message)),
            other => Err(PlatformError::Channel(format!(
                "unexpected agent reply {other:?}"
            ))),
        }
    }

    fn run_with_stdio(
        &self,
        record: &SandboxRecord,
        script: &str,
        stdio: [RawFd; 3],
    ) -> Result<i32, PlatformError> {
        let client = self.client(&record.id);
        if !client.is_listening() {
            return Err(PlatformError::NotRunning(record.id.clone()));
        }
        client.run(script, stdio).map_err(agent_error(&record.id))
    }

    fn ready_stream(&self, record: &SandboxRecord) -> Result<OwnedFd, PlatformError> {
        let client = self.client(&record.id);
        if !client.is_listening() {
            return Err(PlatformError::NotRunning(record.id.clone()));
        }
        // An agent started by an older km does not know `connect`: hand it a socket instead.
        match client.connect() {
            Ok(fd) => Ok(fd),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(agent_error(&record.id)(e)),
            Err(_) => km_core::platform::stream_over_socket_pair(self, record),
        }
    }

    fn open_stream(
        &self,
        record: &SandboxRecord,
        fds: &[RawFd],
    ) -> Result<Box<dyn StreamSession>, PlatformError> {
        let client = self.client(&record.id);
        match client.stream(fds) {
            Ok(control) => Ok(Box::new(LocalStream { control })),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Err(PlatformError::NotRunning(record.id.clone()))
            }
            Err(e) => Err(agent_error(&record.id)(e)),
        }
    }

    fn sshd_check(&self) -> String {
        "\"$KM_SSHD\" -t -f \"$KM_ROOT/etc/sshd_config\"".into()
    }

    fn sessions_root(&self, _record: &SandboxRecord) -> String {
        // The agent spawns every sshd of the sandbox and is their subreaper: sessions of other
        // sandboxes, which run as the same user, are never below it. An agent started by an
        // older km does not name itself, but wrote its PID where it sees it.
        "\"${KM_AGENT_PID:-$(cat \"$KM_ROOT/run/agent.pid\")}\"".into()
    }

    fn host_key_path(&self, _record: &SandboxRecord) -> String {
        // The agent names the sandbox directory as the sandbox sees it.
        "\"$KM_ROOT/etc/ssh/ssh_host_ed25519_key.pub\"".into()
    }

    fn workspace_path(&self, record: &SandboxRecord) -> String {
        match self.boundary(record) {
            Boundary::None => self.layout(&record.id).workspace().display().to_string(),
            _ => format!("{INSIDE_HOME}/workspace"),
        }
    }

    fn logs_hint(&self, record: &SandboxRecord) -> String {
        let log = self.layout(&record.id).root().join("log");
        format!(
            "its logs are in {} (agent.log, boot.log, sshd.log)",
            log.display()
        )
    }

    fn doctor(&self) -> Vec<HealthCheck> {
        let outcome = match self.usable_bwrap(IsolationConfig {
            network: Network::None,
        }) {
            Ok(bwrap) => Ok(format!(
                "{} makes sandboxes' namespaces here (network too)",
                bwrap.display()
            )),
            Err(PlatformError::Unsupported { what, fixes }) => Err(format!(
                "{what}; {} (needed only for isolated local sandboxes)",
                fixes.join("; ")
            )),
            Err(other) => Err(other.to_string()),
        };
        vec![HealthCheck {
            name: "isolation",
            outcome,
        }]
    }

    fn boundary(&self, record: &SandboxRecord) -> Boundary {
        // From the record, so that a teammate's km and a stopped sandbox answer alike; a
        // sandbox made before isolation existed has no such field and ran unisolated.
        match (placed(record, "isolation"), placed(record, "network")) {
            (Some("namespaces"), Some("none")) => Boundary::NamespacesOffline,
            (Some("namespaces"), _) => Boundary::Namespaces,
            _ => Boundary::None,
        }
    }

    fn login_user(&self, record: &SandboxRecord) -> String {
        match self.boundary(record) {
            Boundary::None => self.user.clone(),
            _ => INSIDE_USER.into(),
        }
    }

    fn streams_outlive_the_caller(&self) -> bool {
        // The agent's sshd owns the passed descriptor; km's process is not in the data path.
        true
    }
}

/// A text field of the placement `provision` recorded for `record`.
fn placed<'r>(record: &'r SandboxRecord, field: &str) -> Option<&'r str> {
    record.resources.platform.get(field)?.as_str()
}

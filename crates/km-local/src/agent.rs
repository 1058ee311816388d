//! The sandbox agent: one detached process per running sandbox.
//!
//! It runs first boot (the userdata) once, keeps the sandbox's sshd config valid, and serves
//! the agent channel on `<sandbox>/run/agent.sock`: `exec` runs a script, `stream` hands the
//! caller's connection to a fresh `sshd -i`, `status` reports, `shutdown` stops everything.
//! It is a child subreaper, so every process the sandbox starts stays below it and dies with it.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{Pid, geteuid};

use crate::layout::SandboxLayout;
use crate::process_tree;
use crate::protocol::{
    Envelope, MAX_REQUEST_BYTES, PROTOCOL_VERSION, Reply, Request, recv_frame, send_frame,
};
use crate::sshd::{LOGIN_GRACE, SESSION_WRAPPER, SshdTools, render_sshd_config, session_wrapper};

/// Exec output beyond this many bytes per stream is cut.
const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// At most this many ssh sessions younger than sshd's login grace time run at once per
/// sandbox. Every unauthenticated connection is among them (sshd drops those at the end of the
/// grace time), so a flood of idle connections to the tunnel port costs a bounded number of
/// sshd processes, as OpenSSH's own `MaxStartups` does for a listening sshd.
pub const MAX_STARTING_SESSIONS: usize = 32;

/// What the agent needs to know, written by `km create` into `<sandbox>/agent.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AgentConfig {
    /// The sandbox ID.
    pub id: String,
    /// OpenSSH server tools.
    pub tools: SshdTools,
    /// `PATH` for scripts run in the sandbox.
    pub path: String,
    /// The sandbox user's home as the agent sees it, when not `<dir>/home` (isolated sandboxes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<std::path::PathBuf>,
    /// How the sandbox is isolated; absent for `isolation: none` and sandboxes made before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<crate::isolation::IsolationConfig>,
}

/// How a supervised command ended.
struct Ending {
    /// Its exit code, or 128 + the signal that killed it.
    exit_code: i32,
    /// Whether the timeout stopped it.
    timed_out: bool,
}

struct Agent {
    layout: SandboxLayout,
    config: AgentConfig,
    booted: bool,
    boot_error: Option<String>,
    sshd_ok: bool,
    sshd_error: Option<String>,
    /// Held while a probe or key-install script runs.
    exec_turn: Mutex<()>,
    /// Start times of live ssh sessions, by session number, until they outlive the grace time.
    starting_sessions: Mutex<Vec<(u64, std::time::Instant)>>,
    next_session: std::sync::atomic::AtomicU64,
    /// Children whose exit status a thread is waiting for; the reaper leaves them alone.
    managed: Mutex<HashSet<i32>>,
    stopping: AtomicBool,
    /// An sshd already started for the next `connect`, while it is fresh.
    spare: Mutex<Option<Spare>>,
}

/// A running `sshd -i` on one end of a socket pair, waiting to be handed out.
struct Spare {
    /// The other end: what the next `connect` hands to ssh.
    ours: OwnedFd,
    pid: u32,
    born: Instant,
}

/// How old a spare sshd may be when handed out: the client must keep most of its login grace
/// time, which sshd counts from its own start.
const SPARE_MAX_AGE: Duration = Duration::from_secs(5);

/// Runs the agent for the sandbox in `sandbox_dir` until it is told to stop.
pub fn run_agent(sandbox_dir: &Path) -> io::Result<()> {
    let config: AgentConfig =
        serde_json::from_slice(&fs::read(SandboxLayout::new(sandbox_dir).agent_config())?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let layout = SandboxLayout::new(sandbox_dir).with_home(config.home.clone());
    // Signals are taken by one thread with sigwait, so block them before any thread starts.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGHUP);
    signals.thread_block().map_err(io::Error::from)?;
    // Without it, orphans reparent to init; teardown still finds them by the sandbox path
    // they name, so a failure here weakens nothing that km relies on.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_child_subreaper(true);
    // Inside namespaces this PID means nothing outside; the launcher records the real one.
    if config.isolation.is_none() {
        fs::write(layout.agent_pid(), std::process::id().to_string())?;
    }

    let mut agent = Agent {
        layout,
        config,
        booted: false,
        boot_error: None,
        sshd_ok: false,
        sshd_error: None,
        exec_turn: Mutex::new(()),
        starting_sessions: Mutex::new(Vec::new()),
        next_session: std::sync::atomic::AtomicU64::new(0),
        managed: Mutex::new(HashSet::new()),
        stopping: AtomicBool::new(false),
        spare: Mutex::new(None),
    };
    agent.first_boot();
    match agent.prepare_sshd() {
        Ok(()) => agent.sshd_ok = true,
        Err(why) => agent.sshd_error = Some(why),
    }
    let agent = Arc::new(agent);

    let socket = agent.layout.agent_socket();
    let _ = fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o600))?;

    let for_signals = Arc::clone(&agent);
    thread::spawn(move || {
        let _ = signals.wait();
        for_signals.stop_and_exit();
    });
    let for_reaper = Arc::clone(&agent);
    thread::spawn(move || for_reaper.reap_orphans());

    for connection in listener.incoming() {
        let Ok(connection) = connection else { continue };
        let agent = Arc::clone(&agent);
        thread::spawn(move || agent.serve(connection));
    }
    Ok(())
}

impl Agent {
    fn first_boot(&mut self) {
        if self.layout.boot_done().exists() {
            self.booted = true;
            return;
        }
        let log = fs::File::create(self.layout.boot_log());
        let mut command = Command::new("/bin/sh");
        command
            .arg(self.layout.userdata())
            .env_clear()
            .env("PATH", &self.config.path)
            .env("KM_ROOT", self.layout.root())
            .env("KM_SANDBOX_HOME", self.layout.home())
            .env("HOME", self.layout.home())
            .stdin(Stdio::null());
        if let Ok(log) = log {
            if let Ok(copy) = log.try_clone() {
                command.stdout(copy);
            }
            command.stderr(log);
        }
        match command.status() {
            Ok(status) if status.success() => match fs::write(self.layout.boot_done(), b"") {
                Ok(()) => self.booted = true,
                // Unmarked, a resume would run first boot again and reinstall the key of
                // creation time over a rotated one; so this boot counts as failed.
                Err(e) => {
                    self.boot_error = Some(format!(
                        "cannot record that first boot finished ({}): {e}",
                        self.layout.boot_done().display()
                    ));
                }
            },
            Ok(status) => {
                let tail = fs::read_to_string(self.layout.boot_log()).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                self.boot_error = Some(format!(
                    "userdata exited with {status}: {}",
                    tail.join(" | ")
                ));
            }
            Err(e) => self.boot_error = Some(format!("cannot run userdata: {e}")),
        }
    }

    fn prepare_sshd(&self) -> Result<(), String> {
        if geteuid().is_root() {
            // A root sshd insists on its privilege-separation directory.
            let _ = fs::create_dir_all("/run/sshd");
            let _ = fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755));
        }
        let wrapper = session_wrapper(self.layout.root());
        fs::write(&wrapper, SESSION_WRAPPER)
            .and_then(|()| fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o700)))
            .map_err(|e| format!("cannot write {}: {e}", wrapper.display()))?;
        let config =
            render_sshd_config(self.layout.root(), &self.layout.home(), &self.config.tools);
        fs::write(self.layout.sshd_config(), config)
            .map_err(|e| format!("cannot write {}: {e}", self.layout.sshd_config().display()))?;
        if !self.booted {
            return Err("first boot did not complete".into());
        }
        self.sshd_check()
    }

    fn sshd_check(&self) -> Result<(), String> {
        let output = Command::new(&self.config.tools.sshd)
            .arg("-t")
            .arg("-f")
            .arg(self.layout.sshd_config())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.config.tools.sshd.display()))?;
        if output.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&output.stderr);
        Err(said.trim().lines().take(3).collect::<Vec<_>>().join(" | "))
    }

    fn serve(self: &Arc<Self>, connection: UnixStream) {
        let reply = |reply: &Reply| {
            let _ = send_frame(&connection, reply, &[]);
        };
        let own_uid = geteuid().as_raw();
        match peer_uid(&connection) {
            Some(uid) if uid == own_uid => {}
            _ => {
                return refuse(
                    &connection,
                    "permission denied: only the sandbox's owner may use its agent".into(),
                );
            }
        }
        let frame = match recv_frame(&connection, MAX_REQUEST_BYTES) {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(e) => return refuse(&connection, format!("unreadable request: {e}")),
        };
        let Some(body) = frame.body else {
            return refuse(
                &connection,
                format!("request larger than {MAX_REQUEST_BYTES} bytes"),
            );
        };
        let envelope: Envelope = match serde_json::from_slice(&body) {
            Ok(envelope) => envelope,
            Err(e) => return refuse(&connection, format!("malformed request: {e}")),
        };
        if envelope.v != PROTOCOL_VERSION {
            reply(&Reply::Error {
                message: format!(
                    "protocol version {} is not supported (this agent speaks {PROTOCOL_VERSION}); run `km stop` and `km resume` to restart it",
                    envelope.v
                ),
            });
            return;
        }
        match envelope.request {
            Request::Status => reply(&Reply::Status {
                id: self.config.id.clone(),
                pid: std::process::id(),
                booted: self.booted,
                boot_error: self.boot_error.clone(),
                sshd_ok: self.sshd_ok,
                sshd_error: self.sshd_error.clone(),
            }),
            Request::Exec { script, timeout_ms } => {
                reply(&self.exec(&connection, &script, timeout_ms));
            }
            Request::Run { script } => self.run_attached(&connection, &script, frame.fds),
            Request::Stream { port } => self.stream(&connection, port, frame.fds),
            Request::Connect { port } => self.connect(&connection, port),
            Request::Shutdown => {
                reply(&Reply::ShuttingDown);
                self.stop_and_exit();
            }
        }
    }

    fn spawn_managed(&self, command: &mut Command) -> io::Result<Child> {
        let mut managed = self.managed.lock().unwrap_or_else(|e| e.into_inner());
        let child = command.spawn()?;
        managed.insert(child.id() as i32);
        Ok(child)
    }

    fn unmanage(&self, pid: u32) {
        self.managed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(pid as i32));
    }

    /// `/bin/sh -c script` with the sandbox's environment.
    fn shell(&self, script: &str) -> Command {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(script)
            .env_clear()
            .env("PATH", &self.config.path)
            .env("HOME", self.layout.home())
            .env("KM_ROOT", self.layout.root())
            .env("KM_AGENT_PID", std::process::id().to_string())
            .env("KM_SSHD", &self.config.tools.sshd);
        command
    }

    /// Runs a bounded-capture script for km's own probes and key installs. These scripts run
    /// one at a time per sandbox, so a script that starts after another (a repair after a
    /// killed rekey, say) sees everything the earlier one did, or was killed before doing.
    fn exec(&self, connection: &UnixStream, script: &str, timeout_ms: u64) -> Reply {
        if let Some(error) = &self.boot_error {
            return Reply::Error {
                message: format!("the sandbox did not boot: {error}"),
            };
        }
        let _one_at_a_time = self.exec_turn.lock().unwrap_or_else(|e| e.into_inner());
        let mut command = self.shell(script);
        command
            .current_dir(self.layout.workspace())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match self.spawn_managed(&mut command) {
            Ok(child) => child,
            Err(e) => {
                return Reply::Error {
                    message: format!("cannot start /bin/sh: {e}"),
                };
            }
        };
        let stdout = child.stdout.take().map(capture);
        let stderr = child.stderr.take().map(capture);
        let ending = self.supervise(child, connection, Some(Duration::from_millis(timeout_ms)));
        let collect = |handle: Option<thread::JoinHandle<String>>| {
            handle.and_then(|h| h.join().ok()).unwrap_or_default()
        };
        Reply::Exec {
            exit_code: ending.exit_code,
            stdout: collect(stdout),
            stderr: collect(stderr),
            timed_out: ending.timed_out,
        }
    }

    /// Waits for a command, killing its whole tree if the caller's connection closes first
    /// (as sshd does when a client goes away) or `timeout` passes.
    fn supervise(
        &self,
        mut child: Child,
        connection: &UnixStream,
        timeout: Option<Duration>,
    ) -> Ending {
        enum Event {
            Exited(Option<std::process::ExitStatus>),
            CallerGone,
        }
        let pid = child.id();
        let (events, event) = mpsc::channel();
        let exited = events.clone();
        thread::spawn(move || {
            let _ = exited.send(Event::Exited(child.wait().ok()));
        });
        let watch = connection.try_clone();
        if let Ok(watch) = &watch {
            let watch = watch.try_clone();
            thread::spawn(move || {
                // The caller sends nothing more; end of stream means it is gone.
                if let Ok(watch) = watch {
                    let mut byte = [0u8; 1];
                    let _ = (&watch).read(&mut byte);
                }
                let _ = events.send(Event::CallerGone);
            });
        }
        let first = match timeout {
            Some(limit) => event.recv_timeout(limit).ok(),
            None => event.recv().ok(),
        };
        let mut timed_out = false;
        let status = match first {
            Some(Event::Exited(status)) => status,
            other => {
                timed_out = other.is_none() && timeout.is_some();
                let mut doomed = process_tree::descendants(pid as i32);
                doomed.push(pid as i32);
                process_tree::kill_all(&doomed);
                loop {
                    match event.recv() {
                        Ok(Event::Exited(status)) => break status,
                        Ok(Event::CallerGone) => continue,
                        Err(_) => break None,
                    }
                }
            }
        };
        // Wakes the watcher, which is still reading the caller's side.
        if let Ok(watch) = watch {
            let _ = watch.shutdown(std::net::Shutdown::Read);
        }
        self.unmanage(pid);
        let exit_code = status.map_or(-1, |status| {
            use std::os::unix::process::ExitStatusExt;
            status
                .code()
                .or_else(|| status.signal().map(|signal| 128 + signal))
                .unwrap_or(-1)
        });
        Ending {
            exit_code,
            timed_out,
        }
    }

    fn run_attached(&self, connection: &UnixStream, script: &str, fds: Vec<OwnedFd>) {
        let reply = |reply: &Reply| {
            let _ = send_frame(connection, reply, &[]);
        };
        if let Some(error) = &self.boot_error {
            return reply(&Reply::Error {
                message: format!("the sandbox did not boot: {error}"),
            });
        }
        let Ok([stdin, stdout, stderr]) = <[OwnedFd; 3]>::try_from(fds) else {
            return reply(&Reply::Error {
                message: "a run request carries exactly three descriptors: stdin, stdout, stderr"
                    .into(),
            });
        };
        let mut command = self.shell(script);
        command
            .current_dir(self.layout.home())
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        let spawned = self.spawn_managed(&mut command);
        // The command is now the only holder of the caller's descriptors.
        drop(command);
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                return reply(&Reply::Error {
                    message: format!("cannot start /bin/sh: {e}"),
                });
            }
        };
        reply(&Reply::RunStarted);
        let ending = self.supervise(child, connection, None);
        reply(&Reply::RunEnded {
            exit_code: ending.exit_code,
        });
    }

    /// Why this sandbox cannot serve an ssh stream to `port` now, if it cannot.
    fn refuse_stream(&self, port: u16) -> Option<Reply> {
        if port != 22 {
            return Some(Reply::Error {
                message: format!("port {port} is not served; the agent streams to sshd on 22"),
            });
        }
        if !self.sshd_ok {
            return Some(Reply::Error {
                message: "sshd is not available in this sandbox".into(),
            });
        }
        None
    }

    /// Starts `sshd -i` on `input` and `output`, counted as a starting session.
    fn start_sshd(&self, input: OwnedFd, output: OwnedFd) -> Result<(Child, u64), Reply> {
        let Some(session) = self.admit_session() else {
            return Err(Reply::Error {
                message: format!(
                    "{MAX_STARTING_SESSIONS} connections are already logging in to this sandbox; this one was closed (idle ones are dropped after {}s)",
                    LOGIN_GRACE.as_secs()
                ),
            });
        };
        let mut command = Command::new(&self.config.tools.sshd);
        command
            .arg("-i")
            .arg("-f")
            .arg(self.layout.sshd_config())
            .arg("-E")
            .arg(self.layout.sshd_log())
            .env_clear()
            .env("PATH", &self.config.path)
            .stdin(Stdio::from(input))
            .stdout(Stdio::from(output))
            .stderr(Stdio::null());
        // `command` owns the only copies of the passed descriptors; dropping it after spawn
        // leaves sshd as their sole holder, so the connection closes exactly when sshd exits.
        let spawned = self.spawn_managed(&mut command);
        drop(command);
        spawned.map(|child| (child, session)).map_err(|e| {
            self.end_session(session);
            Reply::Error {
                message: format!("cannot start sshd: {e}"),
            }
        })
    }

    fn stream(&self, connection: &UnixStream, port: u16, mut fds: Vec<OwnedFd>) {
        let reply = |reply: &Reply| {
            let _ = send_frame(connection, reply, &[]);
        };
        if let Some(refusal) = self.refuse_stream(port) {
            return reply(&refusal);
        }
        if fds.is_empty() || fds.len() > 2 {
            reply(&Reply::Error {
                message: "a stream request carries one socket, or stdin and stdout".into(),
            });
            return;
        }
        let output = if fds.len() == 2 {
            fds.pop()
        } else {
            fds[0].try_clone().ok()
        };
        let (Some(input), Some(output)) = (fds.pop(), output) else {
            reply(&Reply::Error {
                message: "cannot duplicate the passed descriptor".into(),
            });
            return;
        };
        match self.start_sshd(input, output) {
            Ok((mut child, session)) => {
                reply(&Reply::StreamStarted);
                let code = child.wait().ok().and_then(|s| s.code()).unwrap_or(-1);
                self.unmanage(child.id());
                self.end_session(session);
                reply(&Reply::StreamEnded { exit_code: code });
            }
            Err(refusal) => reply(&refusal),
        }
    }

    /// Hands the caller a connection to an sshd that is already running: the spare one when
    /// it is fresh, else a new one; then starts the next spare, since connections come in
    /// bursts (VS Code opens several at once). A spare nobody takes dies at the end of its
    /// login grace time and is not replaced, so an idle sandbox runs no sshd at all.
    fn connect(self: &Arc<Self>, connection: &UnixStream, port: u16) {
        let reply = |reply: &Reply, fds: &[RawFd]| {
            let _ = send_frame(connection, reply, fds);
        };
        if let Some(refusal) = self.refuse_stream(port) {
            return reply(&refusal, &[]);
        }
        // A spare too close to its login deadline is dropped; closing its socket ends it.
        let spare = self
            .spare
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .filter(|spare| spare.born.elapsed() < SPARE_MAX_AGE);
        let spare = match spare {
            Some(spare) => spare,
            None => match self.spawn_spare() {
                Ok(spare) => spare,
                Err(refusal) => return reply(&refusal, &[]),
            },
        };
        reply(&Reply::Connected, &[spare.ours.as_raw_fd()]);
        drop(spare);
        let agent = Arc::clone(self);
        thread::spawn(move || {
            if let Ok(next) = agent.spawn_spare() {
                let replaced = agent
                    .spare
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .replace(next);
                drop(replaced);
            }
        });
    }

    /// Starts an sshd on one end of a new socket pair and keeps the other end.
    fn spawn_spare(self: &Arc<Self>) -> Result<Spare, Reply> {
        let broken = |e: io::Error| Reply::Error {
            message: format!("cannot make a socket pair for sshd: {e}"),
        };
        let (ours, theirs) = UnixStream::pair().map_err(broken)?;
        let theirs = OwnedFd::from(theirs);
        let output = theirs.try_clone().map_err(broken)?;
        let (mut child, session) = self.start_sshd(theirs, output)?;
        let pid = child.id();
        let agent = Arc::clone(self);
        thread::spawn(move || {
            let _ = child.wait();
            agent.unmanage(pid);
            agent.end_session(session);
            let mut spare = agent.spare.lock().unwrap_or_else(|e| e.into_inner());
            if spare.as_ref().is_some_and(|s| s.pid == pid) {
                *spare = None;
            }
        });
        Ok(Spare {
            ours: OwnedFd::from(ours),
            pid,
            born: Instant::now(),
        })
    }

    /// Counts a new ssh session in, unless [`MAX_STARTING_SESSIONS`] are still within their
    /// login grace time.
    fn admit_session(&self) -> Option<u64> {
        let mut starting = self
            .starting_sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        starting.retain(|(_, started)| started.elapsed() < LOGIN_GRACE);
        if starting.len() >= MAX_STARTING_SESSIONS {
            return None;
        }
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        starting.push((session, std::time::Instant::now()));
        Some(session)
    }

    fn end_session(&self, session: u64) {
        self.starting_sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(number, _)| *number != session);
    }

    /// Reaps orphans that the subreaper role hands us, leaving managed children to their waiters.
    fn reap_orphans(&self) {
        let own = std::process::id() as i32;
        loop {
            thread::sleep(Duration::from_secs(2));
            let managed = self.managed.lock().unwrap_or_else(|e| e.into_inner());
            for pid in process_tree::children(own) {
                if !managed.contains(&pid) && process_tree::is_zombie(pid) {
                    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
                }
            }
        }
    }

    fn stop_and_exit(&self) -> ! {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            let _ = fs::remove_file(self.layout.agent_socket());
            let own = std::process::id() as i32;
            let records_own_pid = self.config.isolation.is_none();
            // Kill repeatedly: a dying shell can fork once more before it goes.
            for _ in 0..3 {
                process_tree::kill_all(&process_tree::descendants(own));
                thread::sleep(Duration::from_millis(20));
            }
            if records_own_pid {
                let _ = fs::remove_file(self.layout.agent_pid());
            }
        }
        std::process::exit(0);
    }
}

/// The user ID of the process at the other end of `connection`, as the kernel reports it.
#[cfg(target_os = "linux")]
fn peer_uid(connection: &UnixStream) -> Option<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    getsockopt(connection, PeerCredentials)
        .ok()
        .map(|peer| peer.uid())
}

/// The user ID of the process at the other end of `connection`, as the kernel reports it.
#[cfg(not(target_os = "linux"))]
fn peer_uid(connection: &UnixStream) -> Option<u32> {
    nix::unistd::getpeereid(connection)
        .ok()
        .map(|(uid, _)| uid.as_raw())
}

/// Replies with an error, then drains what the client still sends: closing with unread bytes
/// would reset the connection and lose the reply.
fn refuse(connection: &UnixStream, message: String) {
    let _ = send_frame(connection, &Reply::Error { message }, &[]);
    let _ = connection.shutdown(std::net::Shutdown::Write);
    let _ = connection.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 8192];
    let mut drained = 0;
    while drained < MAX_REQUEST_BYTES * 4 {
        match (&*connection).read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

fn capture(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            if bytes.len() < MAX_OUTPUT_BYTES {
                bytes.extend_from_slice(&chunk[..n.min(MAX_OUTPUT_BYTES - bytes.len())]);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

//! A temporary HOME, the `km` binary, and helpers to drive real ssh against sandboxes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const KM: &str = env!("CARGO_BIN_EXE_km");

pub(crate) fn repo_profile(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../profiles")
        .join(format!("{name}.yaml"))
}

/// Fails the test, loudly, when it cannot do `what` for lack of root: a part that needs root
/// never passes by not running. CI runs as root.
pub(crate) fn require_root(what: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "{what} needs root; run the tests as root (CI does), e.g. sudo -E scripts/test"
    );
}

/// Processes whose command line names `path` (a HOME, a sandbox's sshd_config, …).
pub(crate) fn processes_naming(path: &Path) -> Vec<i32> {
    let needle = path.as_os_str().as_encoded_bytes().to_vec();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// Polls `condition` every 20 ms until it holds; panics with `what` after `limit`.
pub(crate) fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One isolated operator: its own HOME, never the real one. The HOME's name has a space in
/// it, so every test also proves that km quotes the paths it writes into OpenSSH's configs
/// and command lines.
pub(crate) struct TestEnv {
    pub(crate) home: tempfile::TempDir,
    created: Vec<String>,
}

impl TestEnv {
    pub(crate) fn new() -> Self {
        let env = Self {
            home: tempfile::Builder::new()
                .prefix("km home ")
                .tempdir()
                .unwrap(),
            created: Vec::new(),
        };
        env.ok(&["init"]);
        env
    }

    pub(crate) fn home(&self) -> &Path {
        self.home.path()
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(KM);
        command
            .args(args)
            .env_clear()
            .env("HOME", self.home())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null());
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "km {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs km, which must fail with exit status `code` (the table in docs/vscode.md).
    pub(crate) fn fails_with(&self, code: i32, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(
            output.status.code(),
            Some(code),
            "km {args:?} should fail with {code}: {output:?}"
        );
        String::from_utf8(output.stderr).unwrap()
    }

    pub(crate) fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "km {args:?} should fail: {output:?}"
        );
        String::from_utf8(output.stderr).unwrap()
    }

    pub(crate) fn create(&mut self, profile: &str, alias: Option<&str>) -> String {
        let path = repo_profile(profile);
        let mut args = vec!["create", path.to_str().unwrap()];
        if let Some(alias) = alias {
            args.extend(["--alias", alias]);
        }
        let id = self.ok(&args).trim().to_owned();
        self.created.push(id.clone());
        id
    }

    /// Registers a sandbox made some other way, so that dropping the env destroys it.
    pub(crate) fn track(&mut self, id: &str) {
        self.created.push(id.to_owned());
    }

    /// Destroys the sandbox if it still exists (a test may have destroyed it another way).
    pub(crate) fn destroy_if_listed(&mut self, id: &str) {
        if self.list_json().iter().any(|s| s["id"] == id) {
            self.destroy(id);
        }
        self.created.retain(|c| c != id);
    }

    pub(crate) fn destroy(&mut self, id: &str) {
        self.ok(&["destroy", id, "--yes", "--force"]);
        self.created.retain(|c| c != id);
    }

    pub(crate) fn list_json(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["list", "--json"])).unwrap()
    }

    pub(crate) fn status_of(&self, id: &str) -> String {
        self.list_json().iter().find(|s| s["id"] == id).unwrap()["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(crate) fn key(&self, id: &str) -> PathBuf {
        self.home().join(".km/keys").join(id)
    }

    /// Who ssh logs in to local sandbox `id` as: the sandbox's own user when it is isolated,
    /// else the operator.
    pub(crate) fn login_user(&self, id: &str) -> String {
        let config = self.home().join(format!(".km/sandboxes/{id}/agent.json"));
        match std::fs::read_to_string(config) {
            Ok(text) if !text.contains("\"isolation\"") => {
                std::env::var("USER").unwrap_or_else(|_| {
                    nix::unistd::User::from_uid(nix::unistd::geteuid())
                        .unwrap()
                        .unwrap()
                        .name
                })
            }
            _ => SANDBOX_USER.into(),
        }
    }

    /// `ssh` through `km proxy`, pinned host key, the given key, as the sandbox user.
    pub(crate) fn ssh_via_proxy(&self, id: &str, key: &Path) -> Command {
        let mut command = Command::new("ssh");
        command
            .env("HOME", self.home())
            .args(ssh_via_proxy_args(
                self.home(),
                Path::new(KM),
                id,
                key,
                &self.login_user(id),
            ))
            .stdin(Stdio::null());
        command
    }

    /// `ssh` using the managed `~/.ssh/config` (ssh reads the passwd home, so name it with -F).
    pub(crate) fn ssh_config(&self, host: &str) -> Command {
        let mut command = Command::new("ssh");
        command
            // A ProxyCommand entry runs km, which must find this test's ~/.km.
            .env("HOME", self.home())
            .arg("-F")
            .arg(self.home().join(".ssh/config"))
            .args(["-o", "BatchMode=yes", "-T"])
            .arg(host)
            .stdin(Stdio::null());
        command
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for id in self.created.clone() {
            let _ = self.run(&["destroy", &id, "--yes", "--force"]);
        }
    }
}

pub(crate) fn succeeds(command: &mut Command) -> bool {
    command
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

pub(crate) fn stdout_of(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A loopback port free at the moment it is picked; see [`with_free_port`] for handing it on.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `attempt` with a loopback port free a moment ago, and again with another when it was
/// taken in between: picking a port and handing it to another process (ssh's `-D` and `-L`
/// take no port 0) cannot be made atomic, so a lost race is tried again, never ignored.
/// `attempt` returns `None` when its process could not bind the port; it runs ssh with
/// `ExitOnForwardFailure=yes` so that such a bind fails the process instead of warning.
pub(crate) fn with_free_port<T>(mut attempt: impl FnMut(u16) -> Option<T>) -> (u16, T) {
    for _ in 0..5 {
        let port = free_port();
        if let Some(done) = attempt(port) {
            return (port, done);
        }
    }
    panic!("five free ports were each taken before ssh could listen on them");
}

/// VS Code's launch shape: `ssh … -D <port> bash` (from `ssh`, which names the host), with
/// `script` on its stdin, on a free port.
pub(crate) fn launch_like_vscode(mut ssh: impl FnMut() -> Command, script: &[u8]) -> Output {
    with_free_port(|socks| {
        let mut child = ssh()
            .args(["-o", "ExitOnForwardFailure=yes"])
            .args(["-D", &format!("127.0.0.1:{socks}"), "bash"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A lost port ends ssh before it reads its stdin.
        let _ = std::io::Write::write_all(&mut child.stdin.take().unwrap(), script);
        let output = child.wait_with_output().unwrap();
        (!lost_the_port(&output.stderr)).then_some(output)
    })
    .1
}

/// Whether ssh's stderr says it could not listen on a forwarded port.
fn lost_the_port(stderr: &[u8]) -> bool {
    let said = String::from_utf8_lossy(stderr);
    said.contains("forwarding failed") || said.contains("Could not request local forwarding")
}

/// Starts `ssh … -N <flag> <spec(port)>` (a `-D` or `-L` forward, from `ssh`, which names the
/// host) in the background on a free port, and waits until it listens.
pub(crate) fn listening_forward(
    mut ssh: impl FnMut() -> Command,
    flag: &str,
    spec: impl Fn(u16) -> String,
) -> (u16, Child) {
    with_free_port(|port| {
        let mut child = ssh()
            .args(["-o", "ExitOnForwardFailure=yes", "-N", flag, &spec(port)])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(child);
            }
            // Exited: it could not listen there (another process took the port).
            if child.try_wait().unwrap().is_some() {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "ssh did not listen on {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// A `km vscode start` running in the background, stopped (by PID) when dropped.
pub(crate) struct Tunnel {
    pub(crate) child: Child,
    pub(crate) port: u16,
    /// What it printed up to the line that named its port, and the rest of its stderr.
    said: String,
    stderr: Option<std::io::BufReader<std::process::ChildStderr>>,
}

impl Tunnel {
    pub(crate) fn start(env: &TestEnv, sandbox: &str) -> Self {
        Self::start_with(env, sandbox, |_| {})
    }

    /// Starts the tunnel with `adjust` applied to its command (an environment of its own).
    /// It binds a port the system picks (`--local-port 0`), so no other test can take it
    /// between a check and the bind; the port is read from what km prints.
    pub(crate) fn start_with(
        env: &TestEnv,
        sandbox: &str,
        adjust: impl FnOnce(&mut Command),
    ) -> Self {
        let mut command = env.command(&["vscode", "start", sandbox, "--local-port", "0"]);
        adjust(&mut command);
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut said = String::new();
        let port = loop {
            let mut line = String::new();
            let read = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
            said.push_str(&line);
            assert_ne!(read, 0, "the tunnel ended before it was ready: {said}");
            if let Some(rest) = line.split("Forwarding localhost:").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        Self {
            child,
            port,
            said,
            stderr: Some(stderr),
        }
    }

    /// Waits for the tunnel to end by itself; returns its exit code and what it printed.
    pub(crate) fn ended(&mut self, limit: Duration) -> (Option<i32>, String) {
        let mut ended = None;
        wait_until("the tunnel to end", limit, || {
            ended = self.child.try_wait().unwrap();
            ended.is_some()
        });
        let mut said = std::mem::take(&mut self.said);
        if let Some(mut rest) = self.stderr.take() {
            std::io::Read::read_to_string(&mut rest, &mut said).unwrap();
        }
        (ended.and_then(|status| status.code()), said)
    }

    pub(crate) fn interrupt(mut self) -> Output {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let mut child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        let status = child.wait().unwrap();
        let mut stderr = std::mem::take(&mut self.said).into_bytes();
        if let Some(mut rest) = self.stderr.take() {
            std::io::Read::read_to_end(&mut rest, &mut stderr).unwrap();
        }
        Output {
            status,
            stdout: Vec::new(),
            stderr,
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The PID of a local sandbox's agent.
pub(crate) fn agent_pid(env: &TestEnv, id: &str) -> i32 {
    std::fs::read_to_string(env.home().join(format!(".km/sandboxes/{id}/run/agent.pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// ssh's arguments for a login to sandbox `id` as `user` through `km proxy` (`km` the binary,
/// `home` the operator's HOME), with `key` and the host key km pinned; the host alias last.
pub(crate) fn ssh_via_proxy_args(
    home: &Path,
    km: &Path,
    id: &str,
    key: &Path,
    user: &str,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "-F",
        "none",
        "-T",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-i",
    ]
    .map(String::from)
    .to_vec();
    args.push(key.display().to_string());
    args.extend([
        "-o".into(),
        format!(
            "UserKnownHostsFile=\"{}\"",
            home.join(".km/known_hosts").display()
        ),
        "-o".into(),
        format!("HostKeyAlias=km-{id}"),
        "-l".into(),
        user.into(),
        "-o".into(),
        // Quoted: ssh runs it through a shell, and a test's km may sit in a path with spaces.
        format!("ProxyCommand='{}' proxy {id}", km.display()),
        format!("km-{id}"),
    ]);
    args
}

/// The detail of the check named `name` in a `km vscode status --json` report.
pub(crate) fn check_detail<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    &report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report}"))["detail"]
}

/// The user a local sandbox's ssh logs in as: its own, inside its namespaces.
pub(crate) const SANDBOX_USER: &str = "sandbox";

/// The pid namespace of a running local sandbox: every process of the sandbox is in it, and
/// none of this machine's others.
pub(crate) fn pid_namespace(env: &TestEnv, id: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{}/ns/pid", agent_pid(env, id))).unwrap()
}

/// Processes running in pid namespace `namespace`, with their command lines, as this machine
/// sees them (PIDs inside the sandbox differ). A zombie runs nothing and is left out: one that
/// has exited waits only for its parent outside to collect its status.
pub(crate) fn processes_in(namespace: &Path) -> Vec<(i32, String)> {
    let zombie = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rfind(')')
                .is_some_and(|end| stat[end + 1..].trim_start().starts_with('Z'))
        })
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|ns| ns == namespace)
        })
        .filter(|&pid| !zombie(pid))
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")))
        })
        .collect()
}

/// The PID that process `pid` (as this machine sees it) has inside its own pid namespace.
pub(crate) fn pid_inside(pid: i32) -> i32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))
        .and_then(|pids| pids.split_whitespace().last()?.parse().ok())
        .unwrap()
}

/// A separate process that takes hold of something (a lock, a database) and keeps it until
/// dropped; it prints `held` once it holds it, and is stopped by its PID.
pub(crate) struct HeldLock {
    holder: Child,
}

impl HeldLock {
    /// An exclusive `flock` on a file, as another km would hold it.
    pub(crate) fn take(path: &Path) -> Self {
        let mut command = Command::new("python3");
        command
            .args([
                "-c",
                "import fcntl, sys\nf = open(sys.argv[1], 'a')\nfcntl.flock(f, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.read()",
            ])
            .arg(path);
        Self::start(command)
    }

    /// Runs `command`, which must print `held` once it holds what it holds, and read stdin
    /// until it closes.
    pub(crate) fn start(mut command: Command) -> Self {
        let mut holder = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line, "held\n", "the holder did not start");
        Self { holder }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Sends SIGINT to a child by its PID, as Ctrl-C in its terminal would.
pub(crate) fn interrupt(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
}

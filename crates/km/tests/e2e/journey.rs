//! The VS Code workflow as one journey, written once and run against every platform's harness:
//! create, a command, the `vscode start` tunnel with real ssh, scp, VS Code's launch shape and
//! parallel connections, `vscode status`, a rekey that an open session survives, stop (the
//! tunnel ends, logins are refused), resume, proxy mode, destroy. Both platforms log in as
//! `sandbox` with its home at `/home/sandbox`, so the same assertions hold on each; what only
//! one platform has goes through the harness.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::support::{TestEnv, Tunnel, launch_like_vscode, stdout_of, succeeds};

/// What the journey needs from a platform.
pub(crate) trait Harness {
    /// The operator's side: HOME, keys, ssh config.
    fn env(&self) -> &TestEnv;
    /// What a command needs besides HOME to reach the platform (the simulator's endpoints).
    fn apply(&self, command: &mut Command);
    /// A new sandbox from the platform's repository profile, with `alias`; returns its ID.
    fn create(&mut self, alias: &str) -> String;
    /// What `km vscode status` says isolates the platform's sandboxes.
    fn boundary(&self) -> &'static str;
    /// What ssh reports when it logs in to a stopped sandbox.
    fn stopped_login_says(&self, id: &str) -> String;
    /// Whether proxy mode hands ssh a descriptor (`ProxyUseFdpass`).
    fn fdpass(&self) -> bool;
    /// Checks only this platform makes, on the running sandbox.
    fn platform_checks(&self, _id: &str) {}
    /// Checks only this platform makes after a resume.
    fn after_resume(&self, _id: &str) {}
    /// Checks that what only this platform had of the sandbox is gone after `destroy`.
    fn assert_gone(&self, id: &str);
}

fn km(h: &impl Harness, args: &[&str]) -> Command {
    let mut command = h.env().command(args);
    h.apply(&mut command);
    command
}

fn run(h: &impl Harness, args: &[&str]) -> Output {
    km(h, args).output().unwrap()
}

fn ok(h: &impl Harness, args: &[&str]) -> String {
    let output = run(h, args);
    assert!(
        output.status.success(),
        "km {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn list(h: &impl Harness) -> Vec<serde_json::Value> {
    serde_json::from_str(&ok(h, &["list", "--json"])).unwrap()
}

/// `ssh` with the managed `~/.ssh/config`.
fn ssh(h: &impl Harness, host: &str) -> Command {
    let mut command = h.env().ssh_config(host);
    h.apply(&mut command);
    command
}

/// `ssh` through `km proxy` with `key`.
fn ssh_with_key(h: &impl Harness, id: &str, key: &Path) -> Command {
    let mut command = h.env().ssh_via_proxy(id, key);
    h.apply(&mut command);
    command
}

fn scp(h: &impl Harness, from: &str, to: &str) -> Command {
    let mut command = Command::new("scp");
    h.apply(&mut command);
    command
        .env("HOME", h.env().home())
        .arg("-F")
        .arg(h.env().home().join(".ssh/config"))
        .args(["-q", "-o", "BatchMode=yes", from, to]);
    command
}

/// The whole VS Code workflow on one sandbox of `h`'s platform.
pub(crate) fn vscode_workflow(h: &mut impl Harness) {
    let id = h.create("journey");
    let host = format!("km-{id}");
    let home = h.env().home().to_path_buf();
    let listed = list(h);
    assert_eq!(listed[0]["alias"], "journey");
    assert_eq!(listed[0]["status"], "running");
    let pins = std::fs::read_to_string(home.join(".km/known_hosts")).unwrap();
    assert!(pins.contains(&host), "the host key was read and pinned");

    // A command: its output and exit code come back; it starts in the sandbox home.
    let output = run(
        h,
        &[
            "shell",
            "journey",
            "--",
            "sh",
            "-c",
            "echo in-sandbox; pwd; exit 3",
        ],
    );
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    // The simulator runs an instance's commands below a directory of its own.
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.starts_with("in-sandbox\n") && said.ends_with("/home/sandbox\n"),
        "{said}"
    );
    assert_eq!(ok(h, &["shell", "1", "--", "echo", "a b"]), "a b\n");

    let mut tunnel = Tunnel::start_with(h.env(), "journey", |command| h.apply(command));
    let said = stdout_of(ssh(h, &host).arg("echo in; echo \"$USER\"; pwd"));
    assert!(
        said.starts_with("in\nsandbox\n") && said.ends_with("/home/sandbox\n"),
        "{said}"
    );
    h.platform_checks(&id);

    // scp up and back down, through the tunnel.
    let up = home.join("up.bin");
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&up, &payload).unwrap();
    let remote = format!("{host}:up.bin");
    assert!(
        succeeds(&mut scp(h, up.to_str().unwrap(), &remote)),
        "scp up"
    );
    let down = home.join("down.bin");
    assert!(
        succeeds(&mut scp(h, &remote, down.to_str().unwrap())),
        "scp down"
    );
    assert_eq!(std::fs::read(&down).unwrap(), payload);

    // VS Code's launch shape: a dynamic forward and a script for bash on stdin.
    let launched = launch_like_vscode(
        || ssh(h, &host),
        b"echo \"vscode-server on $(uname -s)\"\nexit 0\n",
    );
    assert!(launched.status.success(), "{launched:?}");
    assert!(String::from_utf8_lossy(&launched.stdout).contains("vscode-server on Linux"));

    // Eight connections at once, each its own session.
    let parallel: Vec<Child> = (0..8)
        .map(|n| {
            ssh(h, &host)
                .arg(format!("sleep 1; echo conn-{n}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (n, child) in parallel.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "connection {n}: {output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            format!("conn-{n}\n")
        );
    }

    let status = run(h, &["vscode", "status", "journey", "--json"]);
    assert!(status.status.success(), "{status:?}");
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checks"].as_array().unwrap().len(), 8, "{report}");
    assert_eq!(
        crate::support::check_detail(&report, "isolation"),
        h.boundary()
    );

    // Rekey: an open session survives, the old key is refused, the new one works. The session
    // waits for a line sent only after the rekey, so it proves it outlived the rekey however
    // long that takes.
    let old_key = home.join("old-key");
    std::fs::copy(h.env().key(&id), &old_key).unwrap();
    let mut open = ssh(h, &host)
        .arg("echo in; read line; echo survived-$line")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut session = BufReader::new(open.stdout.take().unwrap());
    let mut first = String::new();
    session.read_line(&mut first).unwrap();
    assert_eq!(first, "in\n", "the session is open before the rekey");
    let rekey = run(h, &["vscode", "rekey", "journey", "--yes"]);
    let said = String::from_utf8_lossy(&rekey.stderr);
    assert!(rekey.status.success(), "{said}");
    let mut at = 0;
    for marker in [
        "✓ Sandbox",
        "✓ Pre-flight check passed",
        "✓ New keypair generated (SHA256:",
        "✓ Pushed to sandbox",
        "✓ Local key",
        "atomically",
        "Rekey complete",
    ] {
        at += said[at..]
            .find(marker)
            .unwrap_or_else(|| panic!("{marker} missing or out of order in {said}"));
    }
    let mut line = open.stdin.take().unwrap();
    writeln!(line, "rekeyed").unwrap();
    drop(line);
    let mut rest = String::new();
    session.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "survived-rekeyed\n");
    assert!(open.wait().unwrap().success());
    assert!(
        !succeeds(ssh_with_key(h, &id, &old_key).arg("true")),
        "the old key is refused"
    );
    let key = h.env().key(&id);
    assert!(
        succeeds(ssh_with_key(h, &id, &key).arg("true")),
        "the new key works"
    );
    assert!(!home.join(format!(".km/keys/{id}.new")).exists());

    // Stop: the tunnel says so and ends; a login is refused, saying why.
    ok(h, &["stop", "journey"]);
    let (code, said) = tunnel.ended(Duration::from_secs(30));
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains(&format!("sandbox {id} was stopped")),
        "{said}"
    );
    assert_eq!(list(h)[0]["status"], "stopped");
    let refused = ssh_with_key(h, &id, &key).arg("true").output().unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains(&h.stopped_login_says(&id)), "{said}");

    ok(h, &["resume", &id]);
    assert_eq!(list(h)[0]["status"], "running");
    assert!(
        succeeds(ssh_with_key(h, &id, &key).arg("true")),
        "a login works again after resume"
    );
    h.after_resume(&id);

    // Proxy mode: no tunnel to keep.
    ok(h, &["vscode", "start", "journey", "--proxy"]);
    let config = home.join(".ssh/config");
    let entry = std::fs::read_to_string(&config).unwrap();
    if h.fdpass() {
        assert!(
            entry.contains(&format!("proxy --fdpass {id}")) && entry.contains("ProxyUseFdpass yes"),
            "{entry}"
        );
    } else {
        // The stdio form: the platform's stream needs a live process (an SSM session).
        assert!(
            entry.contains(&format!("proxy {id}")) && !entry.contains("ProxyUseFdpass"),
            "{entry}"
        );
    }
    assert_eq!(stdout_of(ssh(h, &host).arg("echo proxied")), "proxied\n");

    ok(h, &["destroy", "journey", "--yes"]);
    assert!(list(h).is_empty());
    assert!(!key.exists() && !home.join(format!(".km/keys/{id}.pub")).exists());
    let config_text = std::fs::read_to_string(&config).unwrap_or_default();
    assert!(!config_text.contains(&host), "{config_text}");
    let pins = std::fs::read_to_string(home.join(".km/known_hosts")).unwrap_or_default();
    assert!(!pins.contains(&host));
    h.assert_gone(&id);
}

/// The local platform: sandboxes as isolated agent processes on this machine.
struct Local {
    env: TestEnv,
    first_boot: Option<String>,
}

impl Local {
    fn boot_log(&self, id: &str) -> std::path::PathBuf {
        self.env
            .home()
            .join(format!(".km/sandboxes/{id}/log/boot.log"))
    }
}

impl Harness for Local {
    fn env(&self) -> &TestEnv {
        &self.env
    }

    fn apply(&self, _command: &mut Command) {}

    fn create(&mut self, alias: &str) -> String {
        let id = self.env.create("default", Some(alias));
        self.first_boot = Some(std::fs::read_to_string(self.boot_log(&id)).unwrap());
        id
    }

    fn boundary(&self) -> &'static str {
        "namespaces of its own on this machine"
    }

    fn stopped_login_says(&self, id: &str) -> String {
        format!("sandbox {id} is not running")
    }

    fn fdpass(&self) -> bool {
        true
    }

    fn platform_checks(&self, id: &str) {
        // The home is at the same path for every isolated sandbox, whatever the operator's.
        assert_eq!(
            self.env
                .ok(&["shell", id, "--", "sh", "-c", "pwd; echo $HOME"]),
            "/home/sandbox\n/home/sandbox\n"
        );
    }

    fn after_resume(&self, id: &str) {
        assert_eq!(
            Some(std::fs::read_to_string(self.boot_log(id)).unwrap()),
            self.first_boot,
            "first boot is not repeated"
        );
    }

    fn assert_gone(&self, id: &str) {
        assert!(!self.env.home().join(".km/sandboxes").join(id).exists());
    }
}

#[test]
fn the_vscode_workflow_on_a_local_sandbox() {
    vscode_workflow(&mut Local {
        env: TestEnv::new(),
        first_boot: None,
    });
}

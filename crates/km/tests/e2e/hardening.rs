//! Hostile and unlucky input: odd files around km, stale state, floods and bad profiles. Each
//! test reproduces one defect the hardening audit found, with real processes and real OpenSSH.

use std::io::Read;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{
    TestEnv, Tunnel, agent_pid, processes_naming, repo_profile, succeeds, wait_until,
};

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn write_profile(env: &TestEnv, name: &str, text: &str) -> String {
    let path = env.home().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Kills, when dropped, every process whose command line names the path.
struct StopProcessesNaming(std::path::PathBuf);

impl Drop for StopProcessesNaming {
    fn drop(&mut self) {
        for pid in processes_naming(&self.0) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn backdate(path: &std::path::Path) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

#[test]
fn known_hosts_bytes_survive_and_destroy_creates_no_ssh_config() {
    let mut env = TestEnv::new();
    let known_hosts = env.home().join(".km/known_hosts");
    let foreign: &[u8] = b"# caf\xe9 \xff\r\nhost.example ssh-ed25519 AAAAforeign\n";
    std::fs::write(&known_hosts, foreign).unwrap();
    let id = env.create("default", None);
    let pinned = std::fs::read(&known_hosts).unwrap();
    assert!(pinned.starts_with(foreign), "other lines keep their bytes");
    assert!(!env.home().join(".ssh").exists());
    env.destroy(&id);
    assert_eq!(std::fs::read(&known_hosts).unwrap(), foreign);
    assert!(
        !env.home().join(".ssh").exists(),
        "destroy has nothing to write to ~/.ssh/config, so neither it nor ~/.ssh appears"
    );
}

#[test]
fn a_config_km_would_damage_by_rewriting_is_refused_and_left_alone() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    let ssh_dir = env.home().join(".ssh");
    std::fs::create_dir(&ssh_dir).unwrap();
    let config = ssh_dir.join("config");
    let text = "Host example\n  User me\n";
    let start = |env: &TestEnv| env.fails(&["vscode", "start", &id, "--local-port", "0"]);

    std::fs::write(&config, text).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o444)).unwrap();
    let stderr = start(&env);
    assert!(stderr.contains("read-only"), "{stderr}");
    assert!(
        stderr.contains("hint: make it writable: chmod u+w"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
    assert_eq!(std::fs::metadata(&config).unwrap().mode() & 0o777, 0o444);

    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let shared = env.home().join("dotfiles-config");
    std::fs::hard_link(&config, &shared).unwrap();
    let stderr = start(&env);
    assert!(stderr.contains("2 hard links"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&shared).unwrap(), text);
    assert_eq!(std::fs::metadata(&config).unwrap().nlink(), 2);
    std::fs::remove_file(&shared).unwrap();

    crate::support::require_root("a config owned by another user");
    std::os::unix::fs::chown(&config, Some(65534), None).unwrap();
    let stderr = start(&env);
    assert!(stderr.contains("owned by uid 65534"), "{stderr}");
    assert_eq!(std::fs::metadata(&config).unwrap().uid(), 65534);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
    env.destroy(&id);
}

#[test]
fn temp_files_of_killed_writers_are_cleaned_by_the_next_write() {
    let mut env = TestEnv::new();
    let stale_key = env.home().join(".km/keys/.km-tmp-killed");
    let stale_pin = env.home().join(".km/.km-tmp-killed");
    let ssh_dir = env.home().join(".ssh");
    std::fs::create_dir(&ssh_dir).unwrap();
    let stale_config = ssh_dir.join(".km-tmp-killed");
    for path in [&stale_key, &stale_pin, &stale_config] {
        std::fs::write(path, b"half written").unwrap();
        backdate(path);
    }
    let id = env.create("default", None);
    assert!(!stale_key.exists(), "the next key write removed it");
    assert!(!stale_pin.exists(), "the next known_hosts write removed it");
    let tunnel = Tunnel::start(&env, &id);
    assert!(
        !stale_config.exists(),
        "the next ssh config write removed it"
    );
    drop(tunnel);
    env.destroy(&id);
}

#[test]
fn a_stale_agent_pid_never_gets_an_unrelated_process_killed() {
    let mut env = TestEnv::new();
    let id = env.create("headless", None);
    let agent = agent_pid(&env, &id);
    kill(Pid::from_raw(agent), Signal::SIGKILL).unwrap();
    wait_until("the agent to die", Duration::from_secs(5), || {
        env.status_of(&id) == "stopped"
    });
    let mut bystander = Command::new("sleep").arg("600").spawn().unwrap();
    std::fs::write(
        env.home().join(format!(".km/sandboxes/{id}/run/agent.pid")),
        bystander.id().to_string(),
    )
    .unwrap();
    env.ok(&["stop", &id]);
    env.destroy(&id);
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the process that reused the PID is alive"
    );
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

#[test]
fn frames_with_too_many_descriptors_do_not_leak_them_in_the_agent() {
    use km_local::protocol::{Envelope, PROTOCOL_VERSION, Request, send_frame};
    let mut env = TestEnv::new();
    let id = env.create("headless", None);
    let agent = agent_pid(&env, &id);
    let socket = env
        .home()
        .join(format!(".km/sandboxes/{id}/run/agent.sock"));
    let spare: Vec<std::fs::File> = (0..5)
        .map(|_| std::fs::File::open("/dev/null").unwrap())
        .collect();
    let fds: Vec<i32> = spare.iter().map(AsRawFd::as_raw_fd).collect();
    let before = open_fds(agent);
    for _ in 0..50 {
        let stream = UnixStream::connect(&socket).unwrap();
        let envelope = Envelope {
            v: PROTOCOL_VERSION,
            request: Request::Status,
        };
        send_frame(&stream, &envelope, &fds).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = Vec::new();
        (&stream).read_to_end(&mut reply).unwrap();
        assert!(
            String::from_utf8_lossy(&reply).contains("at most"),
            "refused with a reason"
        );
    }
    wait_until(
        "the agent's descriptors to return to where they were",
        Duration::from_secs(5),
        || open_fds(agent) <= before,
    );
    assert_eq!(env.ok(&["shell", &id, "--", "echo", "ok"]), "ok\n");
    env.destroy(&id);
}

#[test]
fn a_flood_of_idle_connections_costs_a_bounded_number_of_sshd_processes() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    let tunnel = Tunnel::start(&env, &id);
    let flood: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(("127.0.0.1", tunnel.port)).unwrap())
        .collect();
    let mut served = 0;
    for connection in &flood {
        connection
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut banner = [0u8; 4];
        match (&*connection).read(&mut banner) {
            Ok(4) if &banner == b"SSH-" => served += 1,
            Ok(0) => {}
            other => panic!("neither a banner nor a close: {other:?}"),
        }
    }
    let cap = km_local::agent::MAX_STARTING_SESSIONS;
    // The tunnel's readiness probe may still hold a slot for a moment.
    assert!(
        served <= cap && served + 2 >= cap,
        "{served} of 60 served; the cap is {cap} and the rest are closed"
    );
    let namespace = crate::support::pid_namespace(&env, &id);
    let sshd_for_sandbox = || {
        crate::support::processes_in(&namespace)
            .iter()
            .filter(|(_, cmdline)| cmdline.contains("sshd"))
            .count()
    };
    assert!(sshd_for_sandbox() <= 2 * km_local::agent::MAX_STARTING_SESSIONS);
    drop(flood);
    wait_until(
        "the idle sessions to end once their clients leave",
        Duration::from_secs(10),
        || sshd_for_sandbox() == 0,
    );
    assert!(succeeds(env.ssh_config(&format!("km-{id}")).arg("true")));
    drop(tunnel);
    env.destroy(&id);
}

#[test]
fn profiles_that_are_not_small_regular_files_or_have_odd_names_are_refused() {
    let env = TestEnv::new();
    let fifo = env.home().join("fifo.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for path in [fifo.to_str().unwrap(), "/dev/zero"] {
        let mut child = env
            .command(&["validate", path])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ended = None;
        wait_until("validate to answer", Duration::from_secs(10), || {
            ended = child.try_wait().unwrap();
            ended.is_some()
        });
        assert_eq!(ended.unwrap().code(), Some(1));
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(stderr.contains("not a regular file"), "{stderr}");
    }
    let evil = write_profile(
        &env,
        "evil.yaml",
        "metadata:\n  name: \"x\\e[2J\\nsb-00000001 running forged\"\n",
    );
    let stderr = env.fails(&["create", &evil]);
    assert!(stderr.contains("metadata.name"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "no raw escape reaches the terminal"
    );
    assert!(env.list_json().is_empty());
    let stderr = env.fails(&[
        "create",
        repo_profile("default").to_str().unwrap(),
        "--alias",
        "sb-0123abcd",
    ]);
    assert!(stderr.contains("shaped like a sandbox ID"), "{stderr}");
    assert!(env.list_json().is_empty());
}

#[test]
fn closed_pipes_missing_home_and_flags_that_do_nothing_yet() {
    let env = TestEnv::new();
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let output = env
        .command(&["validate", repo_profile("default").to_str().unwrap()])
        .stdout(Stdio::from(writer))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");

    let output = env.command(&["list"]).env_remove("HOME").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HOME is not set"), "{stderr}");
    assert!(!std::path::Path::new("/.km/state.db").exists() || stderr.contains("HOME"));

    let other = TestEnv::new();
    let store = other.home().join(".km/state.db");
    std::fs::remove_file(&store).unwrap();
    std::fs::create_dir(&store).unwrap();
    let stderr = other.fails(&["list"]);
    assert!(
        stderr.contains(&format!("cannot open km's state store {}", store.display())),
        "an I/O error names its file: {stderr}"
    );

    // --remote never succeeds having done nothing: without a management component it fails
    // loudly, naming the command that installs one.
    let stderr = env.fails(&[
        "create",
        repo_profile("default").to_str().unwrap(),
        "--remote",
    ]);
    assert!(
        stderr.contains("no management component is installed")
            && stderr.contains("km init --sidecars"),
        "{stderr}"
    );
    let stderr = env.fails_with(3, &["destroy", "anything", "--remote", "--yes"]);
    assert!(stderr.contains("anything"), "{stderr}");
    assert!(env.list_json().is_empty());
}

#[test]
fn a_changed_host_key_is_not_blamed_on_the_client_key() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    let known_hosts = env.home().join(".km/known_hosts");
    let impostor = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(env.home().join("impostor"))
        .status()
        .unwrap();
    assert!(impostor.success());
    let impostor = std::fs::read_to_string(env.home().join("impostor.pub")).unwrap();
    let material: Vec<&str> = impostor.split_whitespace().take(2).collect();
    std::fs::write(&known_hosts, format!("km-{id} {}\n", material.join(" "))).unwrap();
    let stderr = env.fails(&["vscode", "status", &id]);
    assert!(stderr.contains("host key"), "{stderr}");
    assert!(
        !stderr.contains("hint: km vscode rekey"),
        "rekey does not touch the pin, so it is not the advice: {stderr}"
    );
    env.destroy(&id);
}

#[test]
fn doctor_fixes_orphans_keeps_live_keys_and_refuses_to_fix_blind() {
    let mut env = TestEnv::new();
    let live = env.create("default", None);
    let orphan = env.create("default", None);
    let tunnel = Tunnel::start(&env, &orphan);
    drop(tunnel);
    // Its record goes below, so destroy cannot reach it: stop its processes whatever happens.
    let _orphan_processes = StopProcessesNaming(env.home().join(format!(".km/sandboxes/{orphan}")));
    // The orphan's record disappears behind km's back (another machine, a lost store row…).
    std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; db = sqlite3.connect('{}'); db.execute(\"DELETE FROM sandboxes WHERE id = '{orphan}'\"); db.commit()",
            env.home().join(".km/state.db").display()
        ))
        .status()
        .unwrap();
    env.ok(&["stop", &live]);
    env.ok(&["resume", &live]);
    let stale = env.home().join(".km/keys/.km-tmp-stale");
    std::fs::write(&stale, b"x").unwrap();
    backdate(&stale);

    let output = env.run(&["doctor"]);
    assert_eq!(output.status.code(), Some(1));
    let found = String::from_utf8_lossy(&output.stdout);
    assert!(found.contains("orphan keys"), "{found}");
    assert!(found.contains("orphan ssh config entry"), "{found}");
    assert!(found.contains("orphan host key pin"), "{found}");
    assert!(found.contains("temp files"), "{found}");

    // A store that cannot be read: --fix changes nothing.
    let store = env.home().join(".km/state.db");
    let hidden = env.home().join("state.db.away");
    std::fs::rename(&store, &hidden).unwrap();
    std::fs::create_dir(&store).unwrap();
    let keys_before: Vec<_> = std::fs::read_dir(env.home().join(".km/keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let stderr = env.fails(&["doctor", "--fix"]);
    assert!(
        stderr.contains("stopped before changing anything"),
        "{stderr}"
    );
    let keys_after: Vec<_> = std::fs::read_dir(env.home().join(".km/keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(keys_before, keys_after, "nothing was deleted");
    std::fs::remove_dir(&store).unwrap();
    std::fs::rename(&hidden, &store).unwrap();

    let output = env.run(&["doctor", "--fix"]);
    let fixed = String::from_utf8_lossy(&output.stdout);
    let still_wrong: Vec<&str> = fixed.lines().filter(|l| l.starts_with('✗')).collect();
    assert!(
        still_wrong.len() == 1 && still_wrong[0].contains("orphan sandbox directory"),
        "only the orphan's directory, which needs a hand, is left: {fixed}"
    );
    assert!(!env.key(&orphan).exists(), "the orphan's key went");
    assert!(env.key(&live).exists(), "the live sandbox's key stayed");
    assert!(succeeds(
        env.ssh_via_proxy(&live, &env.key(&live)).arg("true")
    ));
    assert!(!stale.exists());
    let config = std::fs::read_to_string(env.home().join(".ssh/config")).unwrap_or_default();
    assert!(!config.contains(&orphan), "{config}");
    // The orphan's agent still runs (its record was lost): stop it and remove its directory.
    let orphan_dir = env.home().join(format!(".km/sandboxes/{orphan}"));
    for pid in processes_naming(&orphan_dir) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    std::fs::remove_dir_all(&orphan_dir).unwrap();
    env.ok(&["doctor"]);
    env.destroy(&live);
}

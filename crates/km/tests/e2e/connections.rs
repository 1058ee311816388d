//! Connections that must not hang or be refused: a silent agent is reported, the first login
//! after a cut-short rekey waits for its settlement, and a tunnel port serves only its operator.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{HeldLock, TestEnv, Tunnel, agent_pid, succeeds, wait_until};

fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
}

#[test]
fn km_proxy_names_a_silent_agent_instead_of_waiting_forever() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    let agent = agent_pid(&env, &id);
    signal(agent, nix::sys::signal::Signal::SIGSTOP);
    let mut proxy = env
        .command(&["proxy", &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ended = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while ended.is_none() && std::time::Instant::now() < deadline {
        ended = proxy.try_wait().unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(agent, nix::sys::signal::Signal::SIGCONT);
    if ended.is_none() {
        let _ = proxy.kill();
        let _ = proxy.wait();
        panic!("km proxy still waits on an agent that never answers");
    }
    let output = proxy.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(4),
        "exit status 4: not running; {stderr}"
    );
    assert!(
        stderr.contains(&format!("sandbox {id} does not answer"))
            && stderr.contains(&format!("km resume {id}"))
            && stderr.contains("km doctor"),
        "{stderr}"
    );
    env.destroy(&id);
}

/// A rotation cut short after the sandbox got the new key: the pending pair is on disk and
/// the sandbox accepts only the new key, as a `kill -9` of `km vscode rekey` leaves it.
fn leave_a_cut_short_rotation(env: &TestEnv, id: &str) {
    let keys = env.home().join(".km/keys");
    let pending = keys.join(format!("{id}.new"));
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("km-{id}"))
        .arg("-f")
        .arg(&pending)
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::rename(
        keys.join(format!("{id}.new.pub")),
        keys.join(format!("{id}.pub.new")),
    )
    .unwrap();
    let public = std::fs::read_to_string(keys.join(format!("{id}.pub.new"))).unwrap();
    std::fs::write(
        env.home()
            .join(format!(".km/sandboxes/{id}/home/.ssh/authorized_keys")),
        public,
    )
    .unwrap();
}

#[test]
fn the_first_login_after_a_cut_short_rekey_waits_for_the_repair_and_gets_in() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    env.ok(&["vscode", "start", &id, "--proxy"]);
    leave_a_cut_short_rotation(&env, &id);
    // Another km (the killed rekey's own verification login, say) is repairing it right now.
    let repairing = HeldLock::take(&env.home().join(format!(".km/keys/{id}.rekey.lock")));
    let mut login = env
        .ssh_config(&format!("km-{id}"))
        .arg("echo in")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The login waits for the repair instead of offering the key that is about to be replaced.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        login.try_wait().unwrap().is_none(),
        "the login did not wait for the repair"
    );
    drop(repairing);
    let output = login.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "in\n");
    assert!(!env.home().join(format!(".km/keys/{id}.new")).exists());
    env.destroy(&id);
}

#[test]
fn a_tunnel_port_closes_other_users_connections_and_keeps_serving_its_operator() {
    crate::support::require_root("connecting as another local user (uid 65534)");
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    let tunnel = Tunnel::start(&env, &id);
    let port = tunnel.port.to_string();
    // Another local user connects and holds the connection open.
    let mut other = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/bin/bash", "-c"])
        .arg(
            "exec 3<>\"/dev/tcp/127.0.0.1/$1\" || exit 9\necho connected\n\
             IFS= read -r -t 20 -n 1 c <&3; rc=$?\n\
             if [ $rc -eq 0 ]; then echo served; elif [ $rc -gt 128 ]; then echo timeout; else echo closed; fi",
        )
        .arg("other-user")
        .arg(&port)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    let mut lines = BufReader::new(other.stdout.take().unwrap());
    lines.read_line(&mut said).unwrap();
    assert_eq!(said, "connected\n");
    said.clear();
    lines.read_line(&mut said).unwrap();
    let _ = other.kill();
    let _ = other.wait();
    assert_eq!(said, "closed\n", "another user's connection reached sshd");
    assert!(succeeds(env.ssh_config(&format!("km-{id}")).arg("true")));
    drop(tunnel);
    wait_until("the tunnel to stop", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err()
    });
    env.destroy(&id);
}

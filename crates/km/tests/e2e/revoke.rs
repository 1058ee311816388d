//! `km vscode revoke` against hostile `authorized_keys` lines and sessions that try to outlive
//! it: it removes exactly the lines of the key it read, nothing it cannot read, and ends the
//! key's sessions on this sandbox only, all of them.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Stdio};
use std::time::Duration;

use crate::support::{TestEnv, wait_until};

fn authorized_keys(env: &TestEnv, id: &str) -> PathBuf {
    env.home()
        .join(format!(".km/sandboxes/{id}/home/.ssh/authorized_keys"))
}

fn public_line(env: &TestEnv, id: &str) -> String {
    std::fs::read_to_string(env.home().join(format!(".km/keys/{id}.pub")))
        .unwrap()
        .trim()
        .to_owned()
}

fn keys_json(env: &TestEnv, id: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(&env.ok(&["vscode", "keys", id, "--json"])).unwrap()
}

fn fingerprint_of(env: &TestEnv, id: &str) -> String {
    keys_json(env, id)
        .into_iter()
        .find(|k| k["this_machine"] == true)
        .unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An open ssh session running `command`, which prints `in` once it runs; returns the client
/// and the rest of the session's output.
fn open_session(env: &TestEnv, id: &str, command: &str) -> (Child, BufReader<ChildStdout>) {
    let mut child = env
        .ssh_via_proxy(id, &env.key(id))
        .arg(command)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("in") {
        line.clear();
        assert_ne!(
            out.read_line(&mut line).unwrap(),
            0,
            "the session never ran"
        );
    }
    (child, out)
}

fn still_open(session: &mut Child) -> bool {
    session.try_wait().unwrap().is_none()
}

fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).map_or(true, |status| {
        status.lines().any(|l| l.starts_with("State:\tZ"))
    })
}

fn kill(session: &mut Child) {
    let _ = session.kill();
    let _ = session.wait();
}

#[test]
fn revoke_never_removes_what_it_cannot_read_nor_touches_other_sandboxes_sessions() {
    let mut alice = TestEnv::new();
    let mut bob = TestEnv::new();
    let a = alice.create("default", None);
    let b = bob.create("default", None);
    let (mut on_a, _) = open_session(&alice, &a, "echo in; sleep 60");
    let (mut on_b, _) = open_session(&bob, &b, "echo in; sleep 60");

    // Lines km cannot read, and Bob's key (with options) on Alice's sandbox too.
    let file = authorized_keys(&alice, &a);
    let bobs = public_line(&bob, &b);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("from=\"127.0.0.1\" ssh-ed25519 AAAA x\n# ssh-ed25519 AAAA commented out\n");
    text.push_str(&format!("from=\"127.0.0.1\",no-pty {bobs}\n"));
    std::fs::write(&file, &text).unwrap();

    let listed = keys_json(&alice, &a);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(
        listed.iter().any(|k| k["fingerprint"] == "unreadable"),
        "{listed:?}"
    );

    let said = alice.fails(&["vscode", "revoke", &a, "unreadable", "--yes"]);
    assert!(
        said.contains("removes nothing") && said.contains(&format!("km shell {a}")),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "nothing changed"
    );
    assert!(
        still_open(&mut on_a) && still_open(&mut on_b),
        "no session ended"
    );

    // Bob's key on Alice's sandbox: that line goes, Bob's session on his own sandbox stays.
    let bobs_print = fingerprint_of(&bob, &b);
    let said = String::from_utf8(
        alice
            .run(&["vscode", "revoke", &a, &bobs_print, "--yes"])
            .stderr,
    )
    .unwrap();
    assert!(
        said.contains("✓ Revoked") && said.contains("none survived"),
        "{said}"
    );
    let expected = text.replace(&format!("from=\"127.0.0.1\",no-pty {bobs}\n"), "");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), expected);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        still_open(&mut on_b),
        "Bob's session on his own sandbox survives"
    );
    assert!(still_open(&mut on_a), "Alice's session used another key");

    kill(&mut on_a);
    kill(&mut on_b);
    alice.destroy(&a);
    bob.destroy(&b);
}

#[test]
fn a_key_on_two_lines_is_one_key_and_its_whole_session_ends() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    // A process that drops $SSH_USER_AUTH and leaves the session's process group, and one
    // started in a new session: both belong to the session and must end with it.
    let (mut session, _output) = open_session(
        &env,
        &id,
        "env -u SSH_USER_AUTH sleep 300 & setsid sleep 301 & echo in; sleep 60; echo never-revoked",
    );
    let file = authorized_keys(&env, &id);
    let mine = public_line(&env, &id);
    let body = mine
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&format!("no-pty {body} the same key again\n"));
    std::fs::write(&file, &text).unwrap();
    wait_until(
        "sleep 300, sleep 301 and sleep 60 run",
        Duration::from_secs(5),
        || find_sleepers(&env, &id).len() == 3,
    );
    let pids = find_sleepers(&env, &id);

    let listed = keys_json(&env, &id);
    assert_eq!(listed.len(), 1, "one key, on two lines: {listed:?}");
    assert_eq!(listed[0]["lines"], 2);
    let print = listed[0]["fingerprint"].as_str().unwrap().to_owned();
    let said =
        String::from_utf8(env.run(&["vscode", "revoke", &id, &print, "--yes"]).stderr).unwrap();
    assert!(
        said.contains("removed 2 line(s)") && said.contains("none survived"),
        "{said}"
    );
    assert!(!std::fs::read_to_string(&file).unwrap().contains(&body));
    wait_until(
        "every process of the session ends",
        Duration::from_secs(5),
        || pids.iter().all(|&pid| gone(pid)),
    );
    wait_until(
        "the client sees the session end",
        Duration::from_secs(5),
        || !still_open(&mut session),
    );
    env.destroy(&id);
}

/// The `sleep` processes below this sandbox's agent.
fn find_sleepers(env: &TestEnv, id: &str) -> Vec<i32> {
    let agent: i32 =
        std::fs::read_to_string(env.home().join(format!(".km/sandboxes/{id}/run/agent.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    let parent_of = |pid: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat[stat.rfind(')')? + 2..]
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
        .filter(|&pid| {
            let mut at = pid;
            for _ in 0..64 {
                match parent_of(at) {
                    Some(p) if p == agent => return true,
                    Some(p) if p > 1 => at = p,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

#[test]
fn processes_left_by_ended_sessions_are_named_never_called_ended() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    // A session starts a process that outlives it; once the session ends, sshd removes its
    // auth file, so nothing can tell which key started the process any more.
    let started = env
        .ssh_via_proxy(&id, &env.key(&id))
        .arg("setsid sleep 302 </dev/null >/dev/null 2>&1 & echo in")
        .output()
        .unwrap();
    assert!(started.status.success(), "{started:?}");
    wait_until("the leftover runs", Duration::from_secs(5), || {
        find_sleepers(&env, &id).len() == 1
    });
    let leftover = find_sleepers(&env, &id)[0];
    // The report names the process as the sandbox sees it, so its `kill` hint works there.
    let inside = crate::support::pid_inside(leftover);
    let print = fingerprint_of(&env, &id);
    let said =
        String::from_utf8(env.run(&["vscode", "revoke", &id, &print, "--yes"]).stderr).unwrap();
    assert!(
        said.contains("outlived earlier sessions")
            && said.contains(&format!("km shell {id} -- kill {inside}")),
        "{said}"
    );
    assert!(
        !gone(leftover),
        "km never kills what it cannot tie to the key"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(leftover),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    env.destroy(&id);
}

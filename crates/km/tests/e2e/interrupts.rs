//! km stopped at many points, by Ctrl-C, SIGTERM, SIGHUP and `kill -9`: after one more km
//! command, nothing is half-done.
//!
//! The kill points are spread over the length of one measured run, so they land in every step
//! of the command without any hook inside km.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{TestEnv, processes_naming, repo_profile, succeeds};

const SIGNALS: [Signal; 4] = [
    Signal::SIGKILL,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
];

fn interrupt_after(mut child: Child, delay: Duration, signal: Signal) -> std::process::Output {
    std::thread::sleep(delay);
    let _ = kill(Pid::from_raw(child.id() as i32), signal);
    let stdout = child.stdout.take();
    let output = child.wait_with_output().unwrap();
    drop(stdout);
    output
}

#[test]
fn an_interrupted_create_is_rolled_back_or_listed_as_failed_never_running() {
    let mut env = TestEnv::new();
    let profile = repo_profile("default");
    let create = |env: &TestEnv| {
        env.command(&["create", profile.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let started = Instant::now();
    let measured = create(&env).wait_with_output().unwrap();
    let length = started.elapsed();
    assert!(measured.status.success(), "{measured:?}");
    env.ok(&[
        "destroy",
        String::from_utf8_lossy(&measured.stdout).trim(),
        "--yes",
    ]);

    for point in 0..24u32 {
        let signal = SIGNALS[point as usize % SIGNALS.len()];
        let output = interrupt_after(create(&env), length * point / 20, signal);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let listed = env.list_json();
        // Registered first, so a failing assert below still destroys them.
        for sandbox in &listed {
            env.track(sandbox["id"].as_str().unwrap());
        }
        if output.status.success() {
            // It finished before the signal: a normal, running sandbox.
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0]["status"], "running", "{listed:?}");
        } else if signal == Signal::SIGKILL {
            for sandbox in &listed {
                let id = sandbox["id"].as_str().unwrap();
                match sandbox["status"].as_str() {
                    Some("failed") => {}
                    // Killed after its very last step: then it must be complete and usable.
                    Some("running") => {
                        env.ok(&["vscode", "status", id]);
                    }
                    other => panic!("point {point}: unexpected status {other:?}: {listed:?}"),
                }
            }
        } else {
            assert!(
                listed.is_empty(),
                "point {point} {signal}: an interrupted create rolls back: {listed:?} {stderr}"
            );
            if output.status.code() == Some(130) {
                assert!(stderr.contains("nothing of sandbox"), "{stderr}");
            }
        }
        for sandbox in &listed {
            env.ok(&[
                "destroy",
                sandbox["id"].as_str().unwrap(),
                "--yes",
                "--force",
            ]);
        }
        assert!(env.list_json().is_empty());
        assert_eq!(
            std::fs::read_dir(env.home().join(".km/sandboxes"))
                .unwrap()
                .count(),
            0,
            "point {point} {signal}: no sandbox directory is left"
        );
        let keys: Vec<_> = std::fs::read_dir(env.home().join(".km/keys"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|name| !name.to_string_lossy().starts_with(".km-tmp-"))
            .collect();
        assert!(
            keys.is_empty(),
            "point {point} {signal}: keys left: {keys:?}"
        );
        assert!(
            processes_naming(env.home()).is_empty(),
            "point {point} {signal}: processes left"
        );
    }
}

#[test]
fn an_interrupted_rekey_never_locks_the_operator_out() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    let rekey = || {
        env.command(&["vscode", "rekey", &id, "--yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let started = Instant::now();
    let measured = rekey().wait_with_output().unwrap();
    let length = started.elapsed();
    assert!(measured.status.success(), "{measured:?}");

    let keys = env.home().join(".km/keys");
    let points = 28u32;
    for point in 0..points {
        // Mostly kill -9, which nothing can hold back; the others are held back by km.
        let signal = if point % 2 == 0 {
            Signal::SIGKILL
        } else {
            SIGNALS[1 + (point as usize / 2) % 3]
        };
        let output = interrupt_after(rekey(), length * point / (points - 4), signal);
        if signal != Signal::SIGKILL && output.status.code() == Some(130) {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("Rekey complete"), "{stderr}");
        }
        // One more km command, then the key the Host entry names must work.
        let status = env.run(&["vscode", "status", &id]);
        assert!(
            status.status.success(),
            "point {point} {signal}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        assert!(
            succeeds(env.ssh_via_proxy(&id, &env.key(&id)).arg("true")),
            "point {point} {signal}: the key at {} is refused",
            env.key(&id).display()
        );
        let leftovers: Vec<_> = std::fs::read_dir(&keys)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".new"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "point {point} {signal}: {leftovers:?}"
        );
    }
    env.destroy(&id);
}

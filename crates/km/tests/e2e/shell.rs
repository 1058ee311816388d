//! `km shell <sb> -- CMD` behaves like `ssh host cmd`: byte-exact streams in both directions,
//! output as it is produced, the exit code passed through, and Ctrl-C ends the remote command.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{TestEnv, wait_until};

fn sha256_of(path: &std::path::Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()[..64].to_owned()
}

#[test]
fn a_hundred_megabytes_of_binary_round_trip_byte_exactly() {
    let mut env = TestEnv::new();
    let id = env.create("headless", None);
    let input = env.home().join("input.bin");
    let output = env.home().join("output.bin");
    let made = Command::new("head")
        .args(["-c", "100M", "/dev/urandom"])
        .stdout(std::fs::File::create(&input).unwrap())
        .status()
        .unwrap();
    assert!(made.success());
    let status = env
        .command(&["shell", &id, "--", "cat"])
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(std::fs::File::create(&output).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::metadata(&output).unwrap().len(), 100 * 1024 * 1024);
    assert_eq!(sha256_of(&output), sha256_of(&input));

    let raw = env
        .command(&["shell", &id, "--", "printf", "\\377\\376\\000x"])
        .output()
        .unwrap();
    assert_eq!(
        raw.stdout, b"\xff\xfe\x00x",
        "non-UTF-8 bytes are not replaced"
    );
    env.destroy(&id);
}

#[test]
fn stdin_passes_through_so_tar_can_copy_a_tree_in() {
    let mut env = TestEnv::new();
    let id = env.create("headless", Some("tarred"));
    let tree = env.home().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/file.txt"), "carried by tar\n").unwrap();
    let mut tar = Command::new("tar")
        .arg("c")
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = env
        .command(&["shell", "tarred", "--", "tar", "x", "-C", "workspace"])
        .stdin(tar.stdout.take().unwrap())
        .status()
        .unwrap();
    assert!(tar.wait().unwrap().success());
    assert!(status.success());
    assert_eq!(
        env.ok(&["shell", "tarred", "--", "cat", "workspace/sub/file.txt"]),
        "carried by tar\n"
    );
    let stderr = env
        .command(&[
            "shell",
            "tarred",
            "--",
            "sh",
            "-c",
            "echo oops >&2; exit 42",
        ])
        .output()
        .unwrap();
    assert_eq!(stderr.status.code(), Some(42));
    assert_eq!(stderr.stderr, b"oops\n", "stderr stays stderr");
    env.destroy(&id);
}

#[test]
fn output_streams_as_produced_and_ctrl_c_ends_the_remote_command() {
    let mut env = TestEnv::new();
    let id = env.create("headless", None);
    let namespace = crate::support::pid_namespace(&env, &id);
    let script = "echo first; exec sleep 600";
    let mut shell = env
        .command(&["shell", &id, "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(shell.stdout.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    assert_eq!(
        first, "first\n",
        "output arrives while the command still runs"
    );
    // The sandbox's PIDs are its own; this machine finds the command in its pid namespace.
    let mut remote = 0;
    wait_until(
        "the remote command to be found in the sandbox",
        Duration::from_secs(5),
        || {
            let found = crate::support::processes_in(&namespace)
                .into_iter()
                .find(|(_, cmdline)| cmdline.trim() == "sleep 600");
            remote = found.map_or(0, |(pid, _)| pid);
            remote != 0
        },
    );
    assert!(kill(Pid::from_raw(remote), None).is_ok());

    kill(Pid::from_raw(shell.id() as i32), Signal::SIGINT).unwrap();
    let status = shell.wait().unwrap();
    assert!(!status.success());
    wait_until(
        "the remote command to end after Ctrl-C",
        Duration::from_secs(5),
        || kill(Pid::from_raw(remote), None).is_err(),
    );
    env.destroy(&id);
}

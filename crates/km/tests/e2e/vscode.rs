//! `km vscode start | status | rekey` with the real ssh client through the tunnel.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use crate::support::{
    TestEnv, Tunnel, launch_like_vscode, listening_forward, stdout_of, succeeds, wait_until,
};

const USER_CONFIG: &str = "Host *\r\n  User nobody\r\n  Port 9\r\n  StrictHostKeyChecking no\r\n  IdentityFile ~/.ssh/other";

#[test]
fn start_serves_ssh_scp_sftp_forwarding_and_parallel_connections() {
    let mut env = TestEnv::new();
    let id = env.create("default", Some("code"));
    let ssh_dir = env.home().join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    // A symlinked, CRLF, no-final-newline, 0640 config with a greedy `Host *`.
    let real = env.home().join("dotfiles-ssh-config");
    std::fs::write(&real, USER_CONFIG).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink(&real, ssh_dir.join("config")).unwrap();

    let tunnel = Tunnel::start(&env, "code");
    let host = format!("km-{id}");
    let text = std::fs::read_to_string(&real).unwrap();
    assert!(text.ends_with(USER_CONFIG), "user bytes kept");
    assert!(
        std::fs::symlink_metadata(ssh_dir.join("config"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::metadata(&real).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert!(!text.replace("\r\n", "").contains('\n'), "CRLF stays CRLF");

    assert_eq!(
        stdout_of(env.ssh_config(&host).arg("echo in-sandbox")),
        "in-sandbox\n"
    );

    let local = env.home().join("upload.txt");
    std::fs::write(&local, "payload").unwrap();
    let config = ssh_dir.join("config");
    assert!(succeeds(
        std::process::Command::new("scp")
            .arg("-F")
            .arg(&config)
            .arg("-q")
            .arg(&local)
            .arg(format!("{host}:up.txt"))
    ));
    // `km shell` starts in the sandbox home, as ssh sessions do.
    assert_eq!(env.ok(&["shell", &id, "--", "cat", "up.txt"]), "payload");
    let mut sftp = std::process::Command::new("sftp")
        .arg("-F")
        .arg(&config)
        .args(["-b", "-"])
        .arg(&host)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    sftp.stdin.take().unwrap().write_all(b"ls\n").unwrap();
    let listing = sftp.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).contains("up.txt"));

    // VS Code's launch shape: -T -D <port> host bash, with the script on stdin.
    let out = launch_like_vscode(
        || env.ssh_config(&host),
        b"echo vscode-server-ready; echo $HOME\n",
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("vscode-server-ready\n"));

    // -L from the sandbox to a TCP service (here the tunnel itself, reached from inside).
    let (forwarded, mut forward) = listening_forward(
        || env.ssh_config(&host),
        "-L",
        |forwarded| format!("127.0.0.1:{forwarded}:127.0.0.1:{}", tunnel.port),
    );
    // The forwarded port leads back to the tunnel, so an ssh through it proves the path.
    let mut through = env.ssh_config(&host);
    through.args(["-p", &forwarded.to_string(), "echo forwarded"]);
    assert_eq!(stdout_of(&mut through), "forwarded\n");
    let _ = forward.kill();
    let _ = forward.wait();

    let parallel: Vec<_> = (0..8)
        .map(|i| {
            env.ssh_config(&host)
                .arg(format!("sleep 0.3; echo {i}"))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in parallel.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{i}\n"));
    }

    let stderr = env.fails(&[
        "vscode",
        "start",
        "code",
        "--local-port",
        &tunnel.port.to_string(),
    ]);
    assert!(
        stderr.contains(&format!(
            "local port {} is already in use — pick a different one with --local-port",
            tunnel.port
        )),
        "{stderr}"
    );

    let output = tunnel.interrupt();
    assert_eq!(output.status.code(), Some(0), "Ctrl-C exits 0: {output:?}");
    assert!(
        std::fs::read_to_string(&real).unwrap().contains(&host),
        "the entry stays"
    );

    env.destroy(&id);
    assert_eq!(
        std::fs::read_to_string(&real).unwrap(),
        USER_CONFIG,
        "destroy restores the user's file byte for byte"
    );
    assert!(
        !std::fs::read_to_string(env.home().join(".km/known_hosts"))
            .unwrap()
            .contains(&id)
    );
}

// The status report and a rekey that an open session survives are in the shared VS Code
// workflow test (journey.rs), run on every platform.

#[test]
fn status_notices_a_local_key_the_sandbox_does_not_take() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    env.ok(&["vscode", "status", &id]);
    // Another keypair takes the place of this machine's.
    let other = env.home().join("other-key");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::copy(&other, env.key(&id)).unwrap();
    std::fs::copy(
        other.with_extension("pub"),
        env.home().join(format!(".km/keys/{id}.pub")),
    )
    .unwrap();
    let stderr = env.fails(&["vscode", "status", &id]);
    assert!(
        stderr.contains(&format!("hint: km vscode rekey {id}")),
        "{stderr}"
    );
    env.destroy(&id);
}

#[test]
fn rekey_failures_and_gates_leave_the_old_key_working() {
    let mut env = TestEnv::new();
    // Scripts in an unisolated local sandbox get the PATH km create had; put an `awk` of our
    // own first. (An isolated sandbox never sees the operator's PATH, so the fault is injected
    // into one made with `isolation: none`.)
    let tools = env.home().join("sandbox-tools");
    std::fs::create_dir(&tools).unwrap();
    let awk = tools.join("awk");
    let real_awk = "#!/bin/sh\nexec awk \"$@\"\n";
    let real_path = std::env::var("PATH").unwrap();
    std::fs::write(
        &awk,
        real_awk.replace("exec awk", &format!("PATH='{real_path}' exec awk")),
    )
    .unwrap();
    std::fs::set_permissions(&awk, std::fs::Permissions::from_mode(0o755)).unwrap();
    let profile = env.home().join("unisolated.yaml");
    std::fs::write(
        &profile,
        "metadata:\n  name: unisolated\nspec:\n  runtime:\n    isolation: none\n",
    )
    .unwrap();
    let id = env
        .command(&["create", profile.to_str().unwrap()])
        .env("PATH", format!("{}:{real_path}", tools.display()))
        .output()
        .unwrap();
    assert!(id.status.success(), "{id:?}");
    let id = String::from_utf8(id.stdout).unwrap().trim().to_owned();
    env.track(&id);
    let key_bytes = std::fs::read(env.key(&id)).unwrap();
    let pending = env.home().join(format!(".km/keys/{id}.new"));

    // A login with the new key fails after a good push: sshd looks for keys elsewhere.
    let sshd_config = env
        .home()
        .join(format!(".km/sandboxes/{id}/etc/sshd_config"));
    let config = std::fs::read_to_string(&sshd_config).unwrap();
    let elsewhere = config.replace(
        "AuthorizedKeysFile ",
        "AuthorizedKeysFile /nonexistent\n#AuthorizedKeysFile ",
    );
    std::fs::write(&sshd_config, &elsewhere).unwrap();
    let stderr = env.fails(&["vscode", "rekey", &id, "--yes"]);
    assert!(stderr.contains("logging in to"), "{stderr}");
    assert!(stderr.contains("old key line was restored"), "{stderr}");
    assert!(stderr.contains("no .new files left"), "{stderr}");
    assert_eq!(std::fs::read(env.key(&id)).unwrap(), key_bytes);
    assert!(!pending.exists());
    std::fs::write(&sshd_config, &config).unwrap();
    assert!(
        succeeds(env.ssh_via_proxy(&id, &env.key(&id)).arg("true")),
        "old key still works"
    );

    // The push itself fails (the sandbox's awk is broken), and so does the restore, so km
    // keeps the new key until it can tell which one the sandbox takes.
    let working_awk = std::fs::read(&awk).unwrap();
    std::fs::write(&awk, "#!/bin/sh\necho 'awk: broken' >&2\nexit 2\n").unwrap();
    let stderr = env.fails(&["vscode", "rekey", &id, "--yes"]);
    assert!(stderr.contains("pushing the new key"), "{stderr}");
    assert!(stderr.contains("awk: broken"), "{stderr}");
    assert!(stderr.contains("could not be restored"), "{stderr}");
    assert_eq!(std::fs::read(env.key(&id)).unwrap(), key_bytes);
    std::fs::write(&awk, working_awk).unwrap();
    let output = env.run(&["vscode", "status", &id]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("Undid an interrupted rekey"), "{stderr}");
    assert!(
        !pending.exists(),
        "the next command settles the pending key"
    );
    assert_eq!(std::fs::read(env.key(&id)).unwrap(), key_bytes);

    env.ok(&["lock", &id]);
    let stderr = env.fails_with(6, &["vscode", "rekey", &id, "--yes"]);
    assert!(
        stderr.contains(&format!("hint: km unlock {id}, or pass --force")),
        "{stderr}"
    );
    env.ok(&["vscode", "rekey", &id, "--yes", "--force"]);
    env.ok(&["unlock", &id]);
    let stderr = env.fails(&["vscode", "rekey", &id]);
    assert!(
        stderr.contains(&format!("km vscode rekey {id} --yes")),
        "no terminal: asks for --yes: {stderr}"
    );

    env.ok(&["stop", &id]);
    // Stopped: exit status 4.
    let stderr = env.fails_with(4, &["vscode", "rekey", &id, "--yes"]);
    assert!(
        stderr.contains(&format!("hint: km resume {id}")),
        "{stderr}"
    );
    env.ok(&["resume", &id]);

    // Cross-laptop bootstrap: no local key at all.
    std::fs::remove_file(env.key(&id)).unwrap();
    std::fs::remove_file(env.home().join(format!(".km/keys/{id}.pub"))).unwrap();
    let stderr = env.fails(&["vscode", "start", &id, "--local-port", "0"]);
    assert!(
        stderr.contains(&format!("km vscode rekey {id}")),
        "{stderr}"
    );
    env.ok(&["vscode", "rekey", &id, "--yes"]);
    assert_eq!(
        std::fs::metadata(env.key(&id))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(succeeds(env.ssh_via_proxy(&id, &env.key(&id)).arg("true")));
    env.destroy(&id);
}

#[test]
fn disabled_sandboxes_get_a_hard_error_pointing_at_recreate() {
    let mut env = TestEnv::new();
    let id = env.create("headless", None);
    for args in [
        vec!["vscode", "start", id.as_str()],
        vec!["vscode", "status", id.as_str()],
        vec!["vscode", "rekey", id.as_str(), "--yes"],
    ] {
        let stderr = env.fails_with(6, &args);
        assert!(stderr.contains("without vscodeEnabled: true"), "{stderr}");
        assert!(
            stderr.contains(&format!("km destroy {id} --yes && km create")),
            "{stderr}"
        );
    }
    assert!(
        !env.home().join(format!(".km/keys/{id}")).exists(),
        "no key for a headless sandbox"
    );
    env.destroy(&id);
}

#[test]
fn malformed_markers_are_refused_and_the_file_is_untouched() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    let config = env.home().join(".ssh/config");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let broken =
        "Host a\n# BEGIN km vscode hosts (managed; do not edit between markers)\nHost km-x\n";
    std::fs::write(&config, broken).unwrap();
    let stderr = env.fails(&["vscode", "start", &id, "--local-port", "0"]);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), broken);
    std::fs::write(&config, "").unwrap();
    env.destroy(&id);
}

#[test]
fn the_tunnel_stops_with_a_clear_message_when_the_sandbox_is_stopped() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    let tunnel = Tunnel::start(&env, &id);
    env.ok(&["stop", &id]);
    let mut tunnel = tunnel;
    let (code, stderr) = tunnel.ended(std::time::Duration::from_secs(15));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("sandbox {id} was stopped")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("km resume {id}")), "{stderr}");
    env.destroy(&id);
}

#[test]
fn proxy_mode_serves_ssh_scp_socks_and_parallel_logins_with_no_km_left_running() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    let host = format!("km-{id}");
    let started = env.run(&["vscode", "start", &id, "--proxy"]);
    assert!(started.status.success(), "{started:?}");
    let config = std::fs::read_to_string(env.home().join(".ssh/config")).unwrap();
    assert!(config.contains("ProxyUseFdpass yes"), "{config}");
    assert!(config.contains(&format!("proxy --fdpass {id}")), "{config}");

    assert_eq!(
        stdout_of(env.ssh_config(&host).arg("echo proxied")),
        "proxied\n"
    );
    let local = env.home().join("up.txt");
    std::fs::write(&local, "through fdpass").unwrap();
    let scp = std::process::Command::new("scp")
        .env("HOME", env.home())
        .arg("-F")
        .arg(env.home().join(".ssh/config"))
        .args(["-q", "-o", "BatchMode=yes"])
        .arg(&local)
        .arg(format!("{host}:up.txt"))
        .status()
        .unwrap();
    assert!(scp.success());
    assert_eq!(
        env.ok(&["shell", &id, "--", "cat", "up.txt"]),
        "through fdpass"
    );

    // VS Code's pattern: a SOCKS proxy over one connection (-D), used by a client.
    let (socks, mut dynamic) = listening_forward(
        || env.ssh_config(&host),
        "-D",
        |socks| format!("127.0.0.1:{socks}"),
    );
    // Through the SOCKS proxy, reach the sandbox's own sshd over another ProxyCommand-free hop:
    // a SOCKS5 CONNECT to 127.0.0.1:<socks> itself proves the channel opens and carries bytes.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", socks)).unwrap();
    use std::io::{Read, Write};
    stream.write_all(&[5, 1, 0]).unwrap();
    let mut greeting = [0u8; 2];
    stream.read_exact(&mut greeting).unwrap();
    assert_eq!(greeting, [5, 0], "SOCKS5 without authentication");
    let mut connect = vec![5, 1, 0, 1, 127, 0, 0, 1];
    connect.extend_from_slice(&socks.to_be_bytes());
    stream.write_all(&connect).unwrap();
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 0, "the channel opened: {reply:?}");
    drop(stream);
    let _ = dynamic.kill();
    let _ = dynamic.wait();

    let parallel: Vec<_> = (0..8)
        .map(|i| {
            env.ssh_config(&host)
                .arg(format!("echo {i}"))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in parallel.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8(output.stdout).unwrap(), format!("{i}\n"));
    }
    let km_proxies = crate::support::processes_naming(std::path::Path::new("--fdpass"));
    assert!(
        km_proxies.is_empty(),
        "no km proxy stays alive: {km_proxies:?}"
    );

    let status = env.run(&["vscode", "status", &id]);
    assert!(status.status.success());
    assert!(String::from_utf8_lossy(&status.stdout).contains("proxy mode"));

    // A wrong pin is refused in proxy mode too.
    let known_hosts = env.home().join(".km/known_hosts");
    let pinned = std::fs::read_to_string(&known_hosts).unwrap();
    let mut fields: Vec<String> = pinned.split_whitespace().map(str::to_owned).collect();
    fields[2] = "AAAAC3NzaC1lZDI1NTE5AAAAIOk8Cj0eQ0PY0Pvr5LB1kxXpTkp4KOWDgyjRm1qKk1Fi".into();
    std::fs::write(&known_hosts, format!("{}\n", fields.join(" "))).unwrap();
    let refused = env.ssh_config(&host).arg("true").output().unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("HOST IDENTIFICATION HAS CHANGED")
            || String::from_utf8_lossy(&refused.stderr).contains("Host key verification failed"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    std::fs::write(&known_hosts, pinned).unwrap();
    env.destroy(&id);
}

#[test]
fn open_writes_a_proxy_entry_and_launches_the_editor_on_the_workspace() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    let bin = env.home().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let record = env.home().join("code-args.txt");
    let code = bin.join("code");
    std::fs::write(
        &code,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let output = env
        .command(&["vscode", "open", &id])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let args = std::fs::read_to_string(&record).unwrap();
    // The workspace as the sandbox sees it: its home is at a stable path inside.
    assert_eq!(
        args,
        format!("--folder-uri\nvscode-remote://ssh-remote+km-{id}/home/sandbox/workspace\n")
    );
    let config = std::fs::read_to_string(env.home().join(".ssh/config")).unwrap();
    assert!(
        config.contains("ProxyUseFdpass yes"),
        "no tunnel runs, so proxy mode"
    );
    assert!(succeeds(env.ssh_config(&format!("km-{id}")).arg("true")));

    // No editor on PATH: the URI is printed with how to open it.
    let output = env
        .command(&[
            "vscode",
            "open",
            &id,
            "--folder",
            "/tmp",
            "--editor",
            "no-such-editor",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("vscode-remote://ssh-remote+km-{id}/tmp\n")
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("Remote-SSH: Connect to Host"));
    env.destroy(&id);
}

#[test]
fn keys_lists_this_machines_key_and_revoke_ends_its_sessions_until_a_rekey() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    let keys: Vec<serde_json::Value> =
        serde_json::from_str(&env.ok(&["vscode", "keys", &id, "--json"])).unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["this_machine"], true);
    assert_eq!(keys[0]["kind"], "operator");
    let fingerprint = keys[0]["fingerprint"].as_str().unwrap().to_owned();
    assert!(env.ok(&["vscode", "keys", &id]).contains("← this machine"));

    let mut open = env
        .ssh_via_proxy(&id, &env.key(&id))
        .arg("echo in; sleep 30; echo never-revoked")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut session = std::io::BufReader::new(open.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut session, &mut first).unwrap();
    assert_eq!(first, "in\n");
    let refused = env.fails(&["vscode", "revoke", &id, &fingerprint]);
    assert!(refused.contains("without confirmation"), "{refused}");
    let stderr = String::from_utf8(
        env.run(&["vscode", "revoke", &id, &fingerprint, "--yes"])
            .stderr,
    )
    .unwrap();
    assert!(
        stderr.contains("✓ Revoked") && stderr.contains("km vscode rekey"),
        "{stderr}"
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut session, &mut rest).unwrap();
    assert!(!rest.contains("never-revoked"), "{rest}");
    assert!(!open.wait().unwrap().success());
    assert!(!succeeds(env.ssh_via_proxy(&id, &env.key(&id)).arg("true")));

    env.ok(&["vscode", "rekey", &id, "--yes"]);
    assert!(succeeds(env.ssh_via_proxy(&id, &env.key(&id)).arg("true")));
    env.destroy(&id);
}

/// The sshd processes a sandbox's agent started (sshd rewrites its command line once it runs,
/// so they are found by parent and name).
fn sshds_of_agent(env: &TestEnv, id: &str) -> usize {
    let agent =
        std::fs::read_to_string(env.home().join(format!(".km/sandboxes/{id}/run/agent.pid")))
            .unwrap_or_default()
            .trim()
            .to_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status.lines().any(|l| l == "Name:\tsshd")
                && status
                    .lines()
                    .any(|l| l.strip_prefix("PPid:").is_some_and(|p| p.trim() == agent))
        })
        .count()
}

#[test]
fn proxy_mode_keeps_one_sshd_ready_during_a_burst_and_none_once_idle() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    env.ok(&["vscode", "start", &id, "--proxy"]);
    let host = format!("km-{id}");
    assert_eq!(sshds_of_agent(&env, &id), 0, "an idle sandbox runs no sshd");
    for _ in 0..3 {
        assert!(succeeds(env.ssh_config(&host).arg("true")));
    }
    // After a login, the next connection's sshd is already running, and only that one.
    wait_until("one spare sshd", std::time::Duration::from_secs(5), || {
        sshds_of_agent(&env, &id) == 1
    });
    // Unused, it ends with its login grace time (20 s) and is not replaced.
    wait_until("no sshd at all", std::time::Duration::from_secs(30), || {
        sshds_of_agent(&env, &id) == 0
    });
    assert!(
        succeeds(env.ssh_config(&host).arg("true")),
        "a cold login still works"
    );
    env.destroy(&id);
}

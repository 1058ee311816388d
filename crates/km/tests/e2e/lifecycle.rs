//! Create → ssh → shell → stop → resume → destroy on the local platform, and its failure cases.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::support::{TestEnv, repo_profile, succeeds, wait_until};

// Create, commands, stop, resume (first boot not repeated) and destroy with real ssh are the
// shared VS Code workflow test (journey.rs), run on every platform.

#[test]
fn a_failed_create_leaves_nothing_behind() {
    let env = TestEnv::new();
    let profile = repo_profile("default");
    for sshd in ["/nonexistent/sshd", "/bin/false"] {
        let output = env
            .command(&["create", profile.to_str().unwrap()])
            .env("KM_SSHD", sshd)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("error:"), "{stderr}");
        assert!(
            stderr.contains("hint:") || stderr.contains("nothing of sandbox"),
            "{stderr}"
        );
        assert!(env.list_json().is_empty());
        assert_eq!(
            std::fs::read_dir(env.home().join(".km/keys"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(env.home().join(".km/sandboxes"))
                .unwrap()
                .count(),
            0
        );
    }
}

#[test]
fn a_killed_agent_shows_stopped_and_resume_recovers() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    let pid_file = env.home().join(format!(".km/sandboxes/{id}/run/agent.pid"));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until(
        "the dead agent to be listed as stopped",
        Duration::from_secs(5),
        || env.status_of(&id) == "stopped",
    );
    env.ok(&["resume", &id]);
    assert!(succeeds(env.ssh_via_proxy(&id, &env.key(&id)).arg("true")));
    env.destroy(&id);
}

#[test]
fn twenty_concurrent_creates_all_work() {
    let env = TestEnv::new();
    let profile = repo_profile("default");
    let children: Vec<_> = (0..20)
        .map(|i| {
            env.command(&[
                "create",
                profile.to_str().unwrap(),
                "--alias",
                &format!("c{i}"),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let ids: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        })
        .collect();
    let listed = env.list_json();
    let mut numbers: Vec<u64> = listed
        .iter()
        .map(|s| s["number"].as_u64().unwrap())
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 20, "distinct list numbers");
    for id in &ids {
        assert_eq!(env.run(&["shell", id, "--", "true"]).status.code(), Some(0));
    }
    for id in ids {
        env.ok(&["destroy", &id, "--yes"]);
    }
    env.ok(&["list"]);
    drop(env);
}

#[test]
fn a_duplicate_alias_is_refused_with_a_hint() {
    let mut env = TestEnv::new();
    let id = env.create("headless", Some("dup"));
    let profile = repo_profile("headless");
    let stderr = env.fails(&["create", profile.to_str().unwrap(), "--alias", "dup"]);
    assert!(stderr.contains("alias dup is already used"), "{stderr}");
    assert_eq!(env.list_json().len(), 1);
    let stderr = env.fails(&["create", profile.to_str().unwrap(), "--alias", "../x"]);
    assert!(stderr.contains("invalid alias"), "{stderr}");
    env.destroy(&id);
}

#[test]
fn garbage_on_the_agent_socket_gets_an_error_and_the_agent_keeps_serving() {
    let mut env = TestEnv::new();
    let id = env.create("headless", None);
    let socket = env
        .home()
        .join(format!(".km/sandboxes/{id}/run/agent.sock"));
    for garbage in [
        b"\x00\x00\x00\x05hello".to_vec(),
        b"\xff\xff\xff\xffxx".to_vec(),
    ] {
        let mut stream = UnixStream::connect(&socket).unwrap();
        stream.write_all(&garbage).unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).unwrap();
        let text = String::from_utf8_lossy(&reply);
        assert!(text.contains("\"reply\":\"error\""), "{text}");
    }
    assert_eq!(env.ok(&["shell", &id, "--", "echo", "still"]), "still\n");
    env.destroy(&id);
}

#[test]
fn locked_sandboxes_refuse_destroy_until_forced() {
    let mut env = TestEnv::new();
    let id = env.create("headless", None);
    env.ok(&["lock", &id]);
    // Exit 6: refused by a gate, told apart from other failures.
    let stderr = env.fails_with(6, &["destroy", &id, "--yes"]);
    assert!(
        stderr.contains(&format!("hint: km unlock {id}, or pass --force")),
        "{stderr}"
    );
    let stderr = env.fails_with(6, &["destroy", &id]);
    assert!(stderr.contains("locked"), "{stderr}");
    env.ok(&["unlock", &id]);
    let stderr = env.fails(&["destroy", &id]);
    assert!(
        stderr.contains(&format!("km destroy {id} --yes")),
        "no terminal: asks for --yes: {stderr}"
    );
    env.destroy(&id);
}

#[test]
fn validate_reports_every_error_with_its_place_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "metadata:\n  name: bad\nextends: [missing]\nspec:\n  cli:\n    vscodeEnabled: true\n",
    )
    .unwrap();
    let typo = dir.path().join("typo.yaml");
    std::fs::write(
        &typo,
        "metadata:\n  name: t\nspec:\n  runtime:\n    substrat: local\n",
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let run = |path: &std::path::Path| {
        std::process::Command::new(crate::support::KM)
            .arg("validate")
            .arg(path)
            .env_clear()
            .env("HOME", home.path())
            .output()
            .unwrap()
    };
    let out = run(&typo);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("typo.yaml:5:15: spec.runtime.substrat: unknown field `substrat`: a local sandbox's runtime takes substrate, isolation, network"),
        "{stderr}"
    );
    // Each substrate's provider reads its own fields; one of another provider's names it.
    let write = |name: &str, runtime: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!("metadata:\n  name: n\nspec:\n  runtime:\n{runtime}"),
        )
        .unwrap();
        path
    };
    let out = run(&write("ecs.yaml", "    substrate: ecs\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ecs.yaml:5:16: spec.runtime.substrate: unknown substrate \"ecs\"; km makes local, ec2 sandboxes"),
        "{stderr}"
    );
    let out = run(&write("half.yaml", "    region: eu-west-1\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = if cfg!(feature = "aws") {
        "half.yaml:5:13: spec.runtime.region: applies to ec2 sandboxes only, and this profile's substrate is local (set `substrate: ec2`, or remove the field)"
    } else {
        "half.yaml:5:13: spec.runtime.region: unknown field `region`"
    };
    assert!(stderr.contains(expected), "{stderr}");
    let out = run(&write("offline.yaml", "    network: offline\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("offline.yaml:5:14: spec.runtime.network: unknown variant `offline`, expected `host` or `none`"),
        "{stderr}"
    );
    if cfg!(feature = "aws") {
        let out = run(&write(
            "cloud.yaml",
            "    substrate: ec2\n    network: none\n",
        ));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cloud.yaml:6:14: spec.runtime.network: applies to local sandboxes only, and this profile's substrate is ec2"),
            "{stderr}"
        );
    }
    let out = run(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("parent profile \"missing\" not found"),
        "{stderr}"
    );
    assert!(
        !home.path().join(".km").exists(),
        "validate creates nothing under ~/.km"
    );
    let out = run(&repo_profile("headless"));
    assert!(out.status.success());
    let resolved = String::from_utf8_lossy(&out.stdout);
    assert!(resolved.contains("vscodeEnabled: false"), "{resolved}");
    // The local provider's defaults are part of the resolved profile.
    assert!(
        resolved.contains("substrate: local")
            && resolved.contains("isolation: namespaces")
            && resolved.contains("network: host"),
        "{resolved}"
    );
}

#[test]
fn usage_errors_exit_2_and_unknown_sandboxes_list_what_was_tried() {
    let env = TestEnv::new();
    assert_eq!(env.run(&["vscode", "start"]).status.code(), Some(2));
    // Port 0 picks a free port; one that does not exist is a usage error.
    assert_eq!(
        env.run(&["vscode", "start", "x", "--local-port", "70000"])
            .status
            .code(),
        Some(2)
    );
    // No such sandbox: exit status 3, so scripts tell it from other failures.
    let stderr = env.fails_with(3, &["stop", "nope"]);
    assert!(stderr.contains("tried as an alias"), "{stderr}");
    let stderr = env.fails_with(3, &["stop", "sb-0000ffff"]);
    assert!(stderr.contains("tried as a sandbox ID"), "{stderr}");
    let stderr = env.fails(&["stop", "a/b"]);
    assert!(stderr.contains("not a sandbox ID, alias"), "{stderr}");
}

#[test]
fn the_agent_refuses_a_connection_from_another_uid() {
    crate::support::require_root("acting as another user");
    use std::os::unix::fs::PermissionsExt;
    let mut env = TestEnv::new();
    let id = env.create("headless", None);
    let run_dir = env.home().join(format!(".km/sandboxes/{id}/run"));
    // Open the path (not the agent's check) so that only the agent's peer-uid check stands.
    let mut dir = run_dir.clone();
    while dir.starts_with(env.home()) {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        dir.pop();
    }
    let socket = run_dir.join("agent.sock");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = r#"my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!"; my $b = '{"v":1,"op":"status"}'; print $s pack("N", length $b) . $b; local $/; print scalar <$s>;"#;
    let output = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "perl",
            "-MIO::Socket::UNIX",
            "-e",
            script,
        ])
        .arg(&socket)
        .output()
        .unwrap();
    let reply = String::from_utf8_lossy(&output.stdout);
    assert!(
        reply.contains("permission denied"),
        "{reply} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        env.ok(&["shell", &id, "--", "echo", "owner-ok"]),
        "owner-ok\n"
    );
    env.destroy(&id);
}

#[test]
fn init_without_sshd_says_how_to_fix_it_and_creates_nothing() {
    let home = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(crate::support::KM)
        .arg("init")
        .env_clear()
        .env("HOME", home.path())
        .env("KM_SSHD", "/nonexistent/sshd")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sshd not found") && stderr.contains("hint: KM_SSHD"),
        "{stderr}"
    );
    assert!(!home.path().join(".km").exists());
}

#[test]
fn commands_that_do_not_boot_a_sandbox_do_not_need_sshd() {
    let mut env = TestEnv::new();
    let id = env.create("headless", Some("nosshd"));
    for args in [
        vec!["list"],
        vec!["lock", "nosshd"],
        vec!["unlock", "nosshd"],
        vec!["stop", "nosshd"],
        // The sandbox keeps the sshd it was created with.
        vec!["resume", "nosshd"],
        vec!["stop", "nosshd"],
    ] {
        let output = env
            .command(&args)
            .env("KM_SSHD", "/nonexistent/sshd")
            .output()
            .unwrap();
        assert!(output.status.success(), "km {args:?}: {output:?}");
    }
    let output = env
        .command(&["destroy", "nosshd", "--yes"])
        .env("KM_SSHD", "/nonexistent/sshd")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    env.track(&id);
    env.destroy_if_listed(&id);
}

/// Only a build without the AWS platform has these messages (`cargo test -p km`).
#[test]
#[cfg(not(feature = "aws"))]
fn a_build_without_aws_says_how_to_get_one() {
    let env = TestEnv::new();
    let stderr = env.fails(&["init", "--aws", "--region", "us-east-1"]);
    assert!(
        stderr.contains("hint: build one that has it: cargo build --release --features aws"),
        "{stderr}"
    );
    let stderr = env.fails(&["create", repo_profile("ec2").to_str().unwrap()]);
    assert!(stderr.contains("without the AWS platform"), "{stderr}");
    assert!(env.list_json().is_empty());
}

#[test]
fn damaged_settings_name_the_file_and_the_command_that_rewrites_them() {
    let env = TestEnv::new();
    let config = env.home().join(".km/config.json");
    let original = std::fs::read(&config).unwrap();
    std::fs::write(&config, r#"{"platform": "gcp"}"#).unwrap();
    let stderr = env.fails(&["list"]);
    assert!(
        stderr.contains("config.json chooses the platform \"gcp\", which this km does not know")
            && stderr.contains("hint: run `km init`"),
        "{stderr}"
    );
    std::fs::write(&config, r#"{"platform": "aws", "aws": {"region": 5}}"#).unwrap();
    let stderr = env.fails(&["list"]);
    if cfg!(feature = "aws") {
        // The provider reads its own section, and says which one is wrong.
        assert!(
            stderr.contains("the \"aws\" section of")
                && stderr.contains("config.json is not valid km settings")
                && stderr.contains("hint: run `km init --aws …` again to rewrite it"),
            "{stderr}"
        );
    } else {
        assert!(stderr.contains("without the AWS platform"), "{stderr}");
    }
    std::fs::write(&config, original).unwrap();
    assert!(env.list_json().is_empty(), "a rewritten file serves again");
}

#[test]
fn completions_come_from_the_command_line_and_the_sandbox_list_and_the_man_page_too() {
    let mut env = TestEnv::new();
    let id = env.create("default", Some("web-dev"));
    let bash = env.ok(&["completions", "bash"]);
    let checked = std::process::Command::new("bash")
        .args(["-n", "-c", &bash])
        .status()
        .unwrap();
    assert!(checked.success(), "bash accepts the script");
    // What bash offers at the cursor, through the script km printed, with this km as `km`.
    let complete = |words: &str| -> String {
        let script = format!(
            "km() {{ {KM:?} \"$@\"; }}\n{bash}\nCOMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n\
             COMP_TYPE=9 _clap_complete_km km \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            KM = crate::support::KM
        );
        let output = std::process::Command::new("bash")
            .args(["-c", &script])
            .env("HOME", env.home())
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    };
    assert!(
        complete("km vscode re")
            .lines()
            .any(|l| l.trim() == "rekey"),
        "{}",
        complete("km vscode re")
    );
    let sandboxes = complete("km vscode status ''");
    assert!(
        sandboxes.lines().any(|l| l.trim() == id)
            && sandboxes.lines().any(|l| l.trim() == "web-dev"),
        "{sandboxes}"
    );
    assert!(complete("km vscode start web-dev --lo").contains("--local-port"));
    for shell in ["zsh", "fish"] {
        assert!(
            env.ok(&["completions", shell]).contains("COMPLETE"),
            "{shell}"
        );
    }
    let page = env.ok(&["man"]);
    assert!(page.contains(".TH km 1"), "{page}");
    assert!(page.contains("vscode"));
    env.destroy(&id);
}

#[test]
fn a_lock_says_who_holds_it_and_since_when() {
    let mut env = TestEnv::new();
    let id = env.create("headless", None);
    env.ok(&["init", "--operator", "alice@laptop"]);
    env.ok(&["lock", &id]);
    let again = String::from_utf8(env.run(&["lock", &id]).stderr).unwrap();
    assert!(
        again.contains("already locked by alice@laptop since ") && !again.contains('✓'),
        "{again}"
    );
    let listed = env.list_json();
    assert_eq!(listed[0]["locked"], true);
    assert_eq!(listed[0]["locked_by"], "alice@laptop");
    assert!(listed[0]["locked_since"].as_str().unwrap().ends_with('Z'));
    let table = env.ok(&["list"]);
    assert!(table.contains("🔒 alice@laptop"), "{table}");
    let refused = env.fails_with(6, &["destroy", &id, "--yes"]);
    assert!(
        refused.contains("locked by alice@laptop since"),
        "{refused}"
    );
    let unlocked = String::from_utf8(env.run(&["unlock", &id]).stderr).unwrap();
    assert!(
        unlocked.contains("it was locked by alice@laptop"),
        "{unlocked}"
    );
    assert_eq!(env.list_json()[0]["locked_by"], serde_json::Value::Null);
    env.destroy(&id);
}

#[test]
fn only_kms_own_completion_protocol_triggers_completion() {
    let mut env = TestEnv::new();
    let id = env.create("headless", None);
    for value in ["1", "bash"] {
        let output = env
            .command(&["list"])
            .env("COMPLETE", value)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "COMPLETE={value}: {output:?}");
        assert!(
            stdout.contains(&id) && !stdout.contains("complete"),
            "COMPLETE={value} changed what km list does: {stdout}"
        );
    }
    let output = env
        .command(&["list"])
        .env("_KM_COMPLETE", "bash")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(&id),
        "{output:?}"
    );
    env.destroy(&id);
}

#[test]
fn a_tab_press_offers_nothing_at_once_while_the_store_is_locked() {
    let mut env = TestEnv::new();
    let id = env.create("headless", None);
    let complete = || {
        let mut command = env.command(&["--", "km", "vscode", "status", ""]);
        command
            .env("_KM_COMPLETE", "bash")
            .env("_CLAP_COMPLETE_INDEX", "3")
            .stdout(std::process::Stdio::piped());
        command
    };
    let offered = complete().output().unwrap();
    assert!(
        String::from_utf8_lossy(&offered.stdout).contains(&id),
        "an unlocked store offers the sandbox: {offered:?}"
    );
    // Another process holds the store exclusively (SQLite makes readers wait up to 10 s).
    let mut lock = std::process::Command::new("python3");
    lock.args([
        "-c",
        "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\nc.execute('PRAGMA locking_mode=EXCLUSIVE')\nc.execute('BEGIN EXCLUSIVE')\nc.execute('UPDATE sandboxes SET locked = locked')\nprint('held', flush=True)\nsys.stdin.read()",
    ])
    .arg(env.home().join(".km/state.db"));
    let holder = crate::support::HeldLock::start(lock);
    let mut completion = complete().spawn().unwrap();
    let mut finished = None;
    // Well under SQLite's 10 s busy wait, which is what a TAB press used to sit through.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while finished.is_none() && std::time::Instant::now() < deadline {
        finished = completion.try_wait().unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(holder);
    if finished.is_none() {
        let _ = completion.kill();
        let _ = completion.wait();
        panic!("completion waited for the locked store");
    }
    let offered = completion.wait_with_output().unwrap();
    assert!(
        !String::from_utf8_lossy(&offered.stdout).contains(&id),
        "{offered:?}"
    );
    env.destroy(&id);
}

#[test]
fn the_version_names_the_platforms_this_build_has() {
    let output = std::process::Command::new(crate::support::KM)
        .arg("--version")
        .output()
        .unwrap();
    let said = String::from_utf8(output.stdout).unwrap();
    let expected = if cfg!(feature = "aws") {
        "(platforms: local, aws)"
    } else {
        "(platforms: local; build with --features aws for EC2)"
    };
    assert!(said.contains(expected), "{said}");
}

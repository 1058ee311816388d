//! A local sandbox is a boundary: each escape below is tried for real from inside one, and the
//! same attempts are made from an `isolation: none` sandbox, where they succeed, so that every
//! attempt is shown able to succeed. Also: `network: none`, no survivors, the refusals, and a
//! sandbox made by an ordinary (non-root) operator.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{
    KM, TestEnv, pid_namespace, processes_in, repo_profile, require_root, succeeds, wait_until,
};

/// A profile file in the test's HOME that extends nothing.
fn profile(env: &TestEnv, name: &str, runtime: &str) -> String {
    let path = env.home().join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!("metadata:\n  name: {name}\nspec:\n  runtime:\n{runtime}"),
    )
    .unwrap();
    path.display().to_string()
}

/// Runs `script` in the sandbox with `km shell`, returning its output.
fn inside(env: &TestEnv, id: &str, script: &str) -> String {
    let output = env.run(&["shell", id, "--", "sh", "-c", script]);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// One attempt per line: `REACHED <name>` when the command succeeds, `refused <name>` when not.
fn attempts(list: &[(&str, String)]) -> String {
    let mut script = String::from(
        "try() { name=$1; shift; if \"$@\" >/dev/null 2>&1; then echo \"REACHED $name\"; else echo \"refused $name\"; fi; }\n",
    );
    for (name, command) in list {
        script.push_str(&format!("try {name} {command}\n"));
    }
    script
}

/// A file the test made outside its HOME, removed however the test ends.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display())
}

#[test]
fn nothing_of_the_operator_other_sandboxes_or_host_processes_is_reachable_from_inside() {
    let mut env = TestEnv::new();
    let ssh_config = env.home().join(".ssh/config");
    std::fs::create_dir_all(ssh_config.parent().unwrap()).unwrap();
    std::fs::write(&ssh_config, "Host secret\n").unwrap();
    // A file only root may read where software is installed: as root, the sandbox user is
    // root outside, so km hides such files in what it binds in, as they are when the sandbox
    // starts (so the file is made first). CI runs as root.
    let root_only = Path::new("/opt").join(format!("km-test-secret-{}", std::process::id()));
    let as_root = nix::unistd::geteuid().is_root();
    let _removed_at_the_end = RemovedOnDrop(root_only.clone());
    if as_root {
        std::fs::write(&root_only, "secret").unwrap();
        std::fs::set_permissions(
            &root_only,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    }
    let isolated = env.create("default", Some("inside"));
    let other = env.create("default", Some("neighbour"));
    let unisolated = profile(&env, "open", "    isolation: none\n");
    let open = env.ok(&["create", &unisolated]).trim().to_owned();
    env.track(&open);
    let mut host_process = Command::new("sleep").arg("300").spawn().unwrap();
    let host_pid = host_process.id();
    let escaped = env.home().join("escaped");
    let sandboxes = env.home().join(".km/sandboxes");
    let reachable_without_isolation = vec![
        (
            "operator-ssh-config",
            format!("cat {}", quoted(&ssh_config)),
        ),
        (
            "operator-km-keys",
            format!("cat {}", quoted(&env.key(&isolated))),
        ),
        (
            "other-sandbox-home",
            format!("ls {}", quoted(&sandboxes.join(&other).join("home"))),
        ),
        ("write-operator-home", format!("touch {}", quoted(&escaped))),
        ("see-host-process", format!("test -e /proc/{host_pid}")),
        ("signal-host-process", format!("kill -0 {host_pid}")),
        // Readable by root only: an isolated sandbox of a root operator is root outside.
        ("read-shadow", "cat /etc/shadow".into()),
        ("read-root-only-opt", format!("cat {}", quoted(&root_only))),
        (
            "own-capabilities",
            "awk '/^CapEff/ { exit ($2 == \"0000000000000000\") }' /proc/self/status".into(),
        ),
    ];
    let control = inside(&env, &open, &attempts(&reachable_without_isolation));
    for (name, _) in &reachable_without_isolation {
        if matches!(
            *name,
            "read-shadow" | "own-capabilities" | "read-root-only-opt"
        ) && !as_root
        {
            // Only root may; as an ordinary operator these fail without isolation too.
            continue;
        }
        assert!(
            control.contains(&format!("REACHED {name}")),
            "without isolation, {name} succeeds (else this test proves nothing): {control}"
        );
    }
    std::fs::remove_file(&escaped).unwrap();

    let mut escapes = reachable_without_isolation.clone();
    escapes.extend([
        ("write-usr", "touch /usr/km-escape".into()),
        ("write-etc", "touch /etc/km-escape".into()),
        ("write-root", "touch /km-escape".into()),
        (
            "other-sandbox-by-inside-path",
            "sh -c \"ls /home | grep -qvx sandbox\"".into(),
        ),
        ("root-home", "ls /root".into()),
        // A user namespace of its own grants nothing over the parent's files.
        (
            "nested-namespace-write",
            "unshare -r touch /usr/km-escape".into(),
        ),
    ]);
    let said = inside(&env, &isolated, &attempts(&escapes));
    assert_eq!(
        said.lines().count(),
        escapes.len(),
        "every attempt ran: {said}"
    );
    assert!(!said.contains("REACHED"), "{said}");
    assert!(!escaped.exists());
    assert!(!Path::new("/usr/km-escape").exists() && !Path::new("/km-escape").exists());
    // What it may do: write its home and its own /tmp, which this machine's /tmp does not see.
    let marker = format!("km-private-tmp-{isolated}");
    assert_eq!(
        inside(
            &env,
            &isolated,
            &format!("touch ~/mine /tmp/{marker} && echo wrote")
        ),
        "wrote\n"
    );
    assert!(!Path::new("/tmp").join(&marker).exists());
    assert!(sandboxes.join(&isolated).join("home/mine").exists());

    host_process.kill().unwrap();
    host_process.wait().unwrap();
    for id in [isolated, other, open] {
        env.destroy(&id);
    }
}

#[test]
fn network_none_reaches_no_service_of_this_machine_and_km_still_gets_in() {
    let mut env = TestEnv::new();
    let offline = profile(&env, "offline", "    network: none\n");
    let cut_off = env.ok(&["create", &offline]).trim().to_owned();
    env.track(&cut_off);
    let online = env.create("default", None);
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = service.local_addr().unwrap().port();
    let connect = format!("bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' && echo connected");
    assert_eq!(
        inside(&env, &online, &connect),
        "connected\n",
        "a host-network sandbox reaches the service (else this test proves nothing)"
    );
    assert_eq!(inside(&env, &cut_off, &connect), "");
    // Its own loopback works, and ssh (km's channel, not the network) does too.
    let loopback = "python3 -c \"import socket; s = socket.create_server(('127.0.0.1', 0)); socket.create_connection(s.getsockname()); print('loopback')\"";
    assert_eq!(inside(&env, &cut_off, loopback), "loopback\n");
    assert!(succeeds(
        env.ssh_via_proxy(&cut_off, &env.key(&cut_off)).arg("true")
    ));
    let listed = env.list_json();
    let isolation_of = |id: &str| {
        listed.iter().find(|s| s["id"] == id).unwrap()["isolation"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(isolation_of(&cut_off), "namespacesoffline");
    assert_eq!(isolation_of(&online), "namespaces");
    drop(service);
    env.destroy(&cut_off);
    env.destroy(&online);
}

#[test]
fn every_process_of_a_sandbox_ends_with_it_even_after_its_agent_is_killed() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    let daemon = "setsid sleep 4321 </dev/null >/dev/null 2>&1 & echo started";
    assert_eq!(inside(&env, &id, daemon), "started\n");
    let namespace = pid_namespace(&env, &id);
    assert!(
        processes_in(&namespace)
            .iter()
            .any(|(_, cmdline)| cmdline.contains("sleep 4321"))
    );
    let agent = crate::support::agent_pid(&env, &id);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until(
        "every process of the sandbox to end with its agent",
        Duration::from_secs(10),
        || processes_in(&namespace).is_empty(),
    );
    assert_eq!(env.status_of(&id), "stopped");
    env.ok(&["resume", &id]);
    assert_eq!(inside(&env, &id, daemon), "started\n");
    let namespace = pid_namespace(&env, &id);
    env.ok(&["stop", &id]);
    let left = processes_in(&namespace);
    assert!(
        left.is_empty(),
        "km stop returns once nothing of the sandbox runs: {left:?}"
    );
    env.destroy(&id);
}

#[test]
fn without_bubblewrap_or_user_namespaces_create_refuses_with_the_fix_and_makes_nothing() {
    let env = TestEnv::new();
    let default = repo_profile("default");
    let output = env
        .command(&["create", default.to_str().unwrap()])
        .env("KM_BWRAP", "/nonexistent/bwrap")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(6), "refused by a gate: {said}");
    assert!(said.contains("`bwrap` is not installed"), "{said}");
    assert!(
        said.contains("hint: install it: `sudo apt install bubblewrap`"),
        "{said}"
    );
    assert!(said.contains("`spec.runtime.isolation: none`"), "{said}");
    assert!(
        !said.contains("Keypair generated"),
        "refused before anything is made"
    );

    // A process whose user namespace may hold no more namespaces: the kernel refuses, for real.
    let output = Command::new("bwrap")
        .args([
            "--unshare-user",
            "--disable-userns",
            "--dev-bind",
            "/",
            "/",
            "--",
        ])
        .arg(KM)
        .args(["create", default.to_str().unwrap()])
        .env("HOME", env.home())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(6), "refused by a gate: {said}");
    assert!(
        said.contains("does not let an unprivileged process make a sandbox's namespaces"),
        "{said}"
    );
    assert!(
        said.contains("hint:") && said.contains("max_user_namespaces"),
        "{said}"
    );

    assert!(env.list_json().is_empty());
    let left = |dir: &str| {
        std::fs::read_dir(env.home().join(dir)).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with(".km-tmp-"))
                .count()
        })
    };
    assert_eq!(left(".km/keys") + left(".km/sandboxes"), 0);
    // The opt-out works where isolation cannot.
    let open = profile(&env, "open", "    isolation: none\n");
    let output = env
        .command(&["create", &open])
        .env("KM_BWRAP", "/nonexistent/bwrap")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        env.ok(&["list"]).contains("not isolated"),
        "km list says which sandboxes are not isolated"
    );
    env.ok(&["destroy", &id, "--yes"]);
    let offline_open = profile(&env, "both", "    isolation: none\n    network: none\n");
    let said = env.fails_with(6, &["create", &offline_open]);
    assert!(
        said.contains("`network: none` needs the sandbox's own namespaces"),
        "{said}"
    );
}

/// An ordinary user of this machine, made for the test (CI runs as root).
const OPERATOR: &str = "km-test-operator";

/// Runs `program` as [`OPERATOR`] with `home` as HOME.
fn as_operator(home: &Path, program: &str) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", OPERATOR, "--", "env"])
        .arg(format!("HOME={}", home.display()))
        .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .arg(program)
        .stdin(Stdio::null());
    command
}

#[test]
fn an_ordinary_user_gets_an_isolated_sandbox_too() {
    require_root("making an ordinary user to run km as");
    if !succeeds(Command::new("id").arg(OPERATOR)) {
        assert!(succeeds(
            Command::new("useradd").args(["--no-create-home", OPERATOR])
        ));
    }
    let user = nix::unistd::User::from_name(OPERATOR).unwrap().unwrap();
    let dir = tempfile::Builder::new()
        .prefix("km operator ")
        .tempdir()
        .unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    // km and the profile, where the operator can read them (the build tree may not be).
    let km: PathBuf = home.join("km");
    std::fs::copy(KM, &km).unwrap();
    let default = home.join("default.yaml");
    std::fs::copy(repo_profile("default"), &default).unwrap();
    nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).unwrap();
    for entry in [home.clone(), km.clone(), default.clone()] {
        nix::unistd::chown(&entry, Some(user.uid), Some(user.gid)).unwrap();
    }
    let km = km.display().to_string();
    let run = |args: &[&str]| {
        let output = as_operator(&home, &km).args(args).output().unwrap();
        assert!(output.status.success(), "km {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    run(&["init"]);
    let id = run(&["create", default.to_str().unwrap()])
        .trim()
        .to_owned();
    let outcome = std::panic::catch_unwind(|| {
        let look = format!(
            "id -un; echo $HOME; ls '{}' >/dev/null 2>&1 || echo no-operator-home",
            home.display()
        );
        let said = run(&["shell", &id, "--", "sh", "-c", &look]);
        assert_eq!(said, "sandbox\n/home/sandbox\nno-operator-home\n");
        let key = home.join(format!(".km/keys/{id}"));
        let escape = format!(
            "cat '{}' >/dev/null 2>&1 && echo REACHED || echo refused",
            key.display()
        );
        assert_eq!(run(&["shell", &id, "--", "sh", "-c", &escape]), "refused\n");
        // What the sandbox writes is the operator's outside, not root's.
        run(&["shell", &id, "--", "touch", "made-inside"]);
        let made = home.join(format!(".km/sandboxes/{id}/home/made-inside"));
        assert_eq!(std::fs::metadata(&made).unwrap().uid(), user.uid.as_raw());
        // Real ssh, as the operator, through km proxy.
        let login = as_operator(&home, "ssh")
            .args(crate::support::ssh_via_proxy_args(
                &home,
                Path::new(&km),
                &id,
                &key,
                "sandbox",
            ))
            .arg("echo logged-in")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&login.stdout),
            "logged-in\n",
            "{login:?}"
        );
    });
    run(&["destroy", &id, "--yes"]);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

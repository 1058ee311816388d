//! `km init --sidecars`, `km create --remote` and `km destroy --remote` through the local
//! platform's management component: a stale or missing manager is refused before anything is
//! made, the manager decodes requests strictly, and a current one creates sandboxes that work.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{HeldLock, TestEnv, interrupt, repo_profile, succeeds, wait_until};

fn platform_dir(env: &TestEnv) -> PathBuf {
    env.home().join(".km/platform")
}

/// Nothing of a sandbox was made: no record, no key file.
fn assert_nothing_made(env: &TestEnv) {
    assert!(env.list_json().is_empty(), "no record");
    let keys: Vec<_> = std::fs::read_dir(env.home().join(".km/keys"))
        .unwrap()
        .collect();
    assert!(keys.is_empty(), "no key: {keys:?}");
}

/// Runs the installed manager over its queue, as km would, and returns the outcome it wrote
/// for `request_id`.
fn serve_queue(env: &TestEnv, request_id: &str) -> serde_json::Value {
    let served = serve_must_finish(env);
    assert!(served.status.success(), "{served:?}");
    result_of(env, request_id)
}

fn create_remote(env: &TestEnv, extra: &[&str]) -> std::process::Output {
    let profile = repo_profile("default");
    let mut args = vec!["create", profile.to_str().unwrap(), "--remote"];
    args.extend(extra);
    env.run(&args)
}

#[test]
fn create_remote_refuses_a_missing_or_stale_manager_before_making_anything() {
    let env = TestEnv::new();
    let output = create_remote(&env, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no management component is installed")
            && stderr.contains("km init --sidecars"),
        "{stderr}"
    );
    assert_nothing_made(&env);

    let said = String::from_utf8(env.run(&["init", "--sidecars"]).stderr).unwrap();
    assert!(
        said.contains("knows") && said.contains("VSCodeSSHPubKey"),
        "{said}"
    );
    // A manifest that does not list the field, as an older manager's would.
    let manifest = platform_dir(&env).join("manifest.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    value["request_fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f != "VSCodeSSHPubKey");
    std::fs::write(&manifest, serde_json::to_vec(&value).unwrap()).unwrap();
    let output = create_remote(&env, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("(does not know VSCodeSSHPubKey) — run: km init --sidecars"),
        "{stderr}"
    );
    assert_nothing_made(&env);
    let queued: Vec<_> = std::fs::read_dir(platform_dir(&env).join("queue"))
        .unwrap()
        .collect();
    assert!(queued.is_empty(), "nothing was submitted");
}

#[test]
fn a_stale_manager_is_named_everywhere_and_a_field_it_does_not_know_fails_the_request() {
    let env = TestEnv::new();
    assert!(env.run(&["init", "--sidecars"]).status.success());
    // What an older km installed: a manifest without the field (the manifest is what km reads
    // of an installed manager; the request a manager decodes is checked below).
    let manifest = platform_dir(&env).join("manifest.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    value["request_fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f != "VSCodeSSHPubKey");
    value["build_id"] = serde_json::json!("sha256:0123456789abcdef");
    std::fs::write(&manifest, serde_json::to_vec(&value).unwrap()).unwrap();
    let said = String::from_utf8(env.run(&["init"]).stderr).unwrap();
    assert!(
        said.contains("does not know VSCodeSSHPubKey") && said.contains("km init --sidecars"),
        "{said}"
    );

    let doctor = env.run(&["doctor", "--json"]);
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&doctor.stdout).unwrap();
    let manager = findings
        .iter()
        .find(|f| f["check"] == "management component")
        .unwrap();
    assert_eq!(manager["ok"], false, "{manager}");
    assert!(
        manager["detail"]
            .as_str()
            .unwrap()
            .contains("does not know VSCodeSSHPubKey")
    );
    let output = create_remote(&env, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not know VSCodeSSHPubKey"), "{stderr}");
    assert_nothing_made(&env);

    // Handed a request that carries a field it does not know (as a newer km's would), the
    // manager refuses it, naming the field, and makes nothing.
    let queue = platform_dir(&env).join("queue");
    let request_id = "create-sb-0123abcd-1";
    std::fs::write(
        queue.join(format!("{request_id}.json")),
        serde_json::to_vec(&serde_json::json!({
            "request_id": request_id,
            "sandbox_id": "sb-0123abcd",
            "alias": null,
            "profile": "apiVersion: klankermaker.ai/v1alpha1\nkind: SandboxProfile\nmetadata:\n  name: x\n",
            "profile_path": "/x.yaml",
            "VSCodeSSHPubKey": null,
            "VSCodeExtensions": ["rust-lang.rust-analyzer"],
        }))
        .unwrap(),
    )
    .unwrap();
    let outcome = serve_queue(&env, request_id);
    assert_eq!(outcome["state"], "failed");
    assert!(
        outcome["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `VSCodeExtensions`"),
        "{outcome}"
    );
    assert!(env.list_json().is_empty());

    // `km init --sidecars` from this km brings it up to date.
    let said = String::from_utf8(env.run(&["init", "--sidecars"]).stderr).unwrap();
    assert!(
        said.contains("installed") && said.contains("VSCodeSSHPubKey"),
        "{said}"
    );
}

#[test]
fn a_current_manager_creates_working_sandboxes_and_remote_destroy_cleans_local_state() {
    let mut env = TestEnv::new();
    env.ok(&["init", "--sidecars"]);
    let again = String::from_utf8(env.run(&["init", "--sidecars"]).stderr).unwrap();
    assert!(again.contains("already"), "{again}");

    let output = create_remote(&env, &["--alias", "remote-poc"]);
    assert!(output.status.success(), "{output:?}");
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    env.track(&id);
    let listed = env.list_json();
    assert_eq!(listed[0]["alias"], "remote-poc");
    assert_eq!(listed[0]["status"], "running");
    let status = env.run(&["vscode", "status", "remote-poc", "--json"]);
    assert!(status.status.success(), "{status:?}");
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert!(succeeds(env.ssh_via_proxy(&id, &env.key(&id)).arg("true")));

    // A locked sandbox is refused before anything is submitted.
    env.ok(&["lock", "remote-poc"]);
    let stderr = env.fails_with(6, &["destroy", "remote-poc", "--remote", "--yes"]);
    assert!(stderr.contains("is locked"), "{stderr}");
    assert!(
        std::fs::read_dir(platform_dir(&env).join("queue"))
            .unwrap()
            .next()
            .is_none()
    );
    env.ok(&["unlock", "remote-poc"]);

    env.ok(&["destroy", "remote-poc", "--remote", "--yes"]);
    assert!(env.list_json().is_empty());
    assert!(!env.key(&id).exists());
    let config = std::fs::read_to_string(env.home().join(".ssh/config")).unwrap_or_default();
    assert!(!config.contains(&id), "{config}");
    let pins = std::fs::read_to_string(env.home().join(".km/known_hosts")).unwrap_or_default();
    assert!(!pins.contains(&id));
    assert!(!env.home().join(format!(".km/sandboxes/{id}")).exists());

    // --no-wait returns at once; km list shows it come up, and the first use pins it.
    let output = create_remote(&env, &["--no-wait"]);
    assert!(output.status.success(), "{output:?}");
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    env.track(&id);
    wait_until(
        "the queued create to finish",
        std::time::Duration::from_secs(30),
        || {
            env.list_json()
                .iter()
                .any(|s| s["id"] == id.as_str() && s["status"] == "running")
        },
    );
    env.ok(&["vscode", "start", &id, "--proxy"]);
    env.ok(&["vscode", "status", &id]);
    env.destroy(&id);
}

#[test]
fn the_manager_refuses_a_request_with_an_unknown_field_by_name() {
    let env = TestEnv::new();
    env.ok(&["init", "--sidecars"]);
    let request_id = "destroy-sb-0123abcd-7";
    std::fs::write(
        platform_dir(&env).join(format!("queue/{request_id}.json")),
        br#"{"request_id":"destroy-sb-0123abcd-7","sandbox_id":"sb-0123abcd","force":false,"ttl":30}"#,
    )
    .unwrap();
    let outcome = serve_queue(&env, request_id);
    assert_eq!(outcome["state"], "failed");
    assert!(
        outcome["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `ttl`"),
        "{outcome}"
    );
    assert!(
        std::fs::read_dir(platform_dir(&env).join("queue"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn a_request_that_cannot_be_queued_takes_its_keypair_back() {
    let env = TestEnv::new();
    env.ok(&["init", "--sidecars"]);
    // The queue is not a directory any more, so the request cannot be written.
    let queue = platform_dir(&env).join("queue");
    std::fs::remove_dir(&queue).unwrap();
    std::fs::write(&queue, b"not a directory").unwrap();
    let output = create_remote(&env, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nothing was submitted; the keypair made for"),
        "{stderr}"
    );
    assert_nothing_made(&env);
}

fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The requests queued in `dir`: `*.json` only, as the manager reads it (a request being
/// written is a `.km-tmp-*` file until it is renamed into place).
fn requests_in(dir: &Path) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|name| name.ends_with(".json"))
        .collect()
}

fn spawn_create_remote(env: &TestEnv, extra: &[&str]) -> std::process::Child {
    let profile = repo_profile("default");
    let mut args = vec!["create", profile.to_str().unwrap(), "--remote"];
    args.extend(extra);
    env.command(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for every manager process of this HOME to exit.
fn managers_gone(env: &TestEnv) {
    let manager = platform_dir(env).join("km-manager");
    wait_until(
        "the woken manager to exit",
        std::time::Duration::from_secs(30),
        || crate::support::processes_naming(&manager).is_empty(),
    );
}

#[test]
fn ctrl_c_before_any_manager_starts_withdraws_the_request_and_its_keypair() {
    let env = TestEnv::new();
    env.ok(&["init", "--sidecars"]);
    // Another manager is busy, so the one this create wakes waits at the lock.
    let busy = HeldLock::take(&platform_dir(&env).join("manager.lock"));
    let child = spawn_create_remote(&env, &[]);
    wait_until(
        "the request to be queued",
        std::time::Duration::from_secs(20),
        || requests_in(&platform_dir(&env).join("queue")).len() == 1,
    );
    interrupt(&child);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("withdrawn before it started") && stderr.contains("keypair"),
        "{stderr}"
    );
    assert!(names_in(&platform_dir(&env).join("queue")).is_empty());
    assert_nothing_made(&env);
    // The manager it woke finds nothing to do once the lock is free: no sandbox appears.
    drop(busy);
    managers_gone(&env);
    assert_nothing_made(&env);
}

#[test]
fn a_manager_that_exits_without_a_result_leaves_nothing_queued_and_says_so() {
    let env = TestEnv::new();
    env.ok(&["init", "--sidecars"]);
    // The manager cannot take its lock, so it exits at once without a result.
    let lock = platform_dir(&env).join("manager.lock");
    let _ = std::fs::remove_file(&lock);
    std::fs::create_dir(&lock).unwrap();
    let output = create_remote(&env, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the manager exited without performing the request")
            && stderr.contains("nothing of it will happen"),
        "{stderr}"
    );
    assert!(names_in(&platform_dir(&env).join("queue")).is_empty());
    assert_nothing_made(&env);
}

#[test]
fn ctrl_c_after_a_manager_claimed_the_request_says_it_goes_on_and_a_dead_claim_is_failed() {
    let env = TestEnv::new();
    env.ok(&["init", "--sidecars"]);
    let busy = HeldLock::take(&platform_dir(&env).join("manager.lock"));
    let child = spawn_create_remote(&env, &["--alias", "claimed"]);
    let queue = platform_dir(&env).join("queue");
    wait_until(
        "the request to be queued",
        std::time::Duration::from_secs(20),
        || requests_in(&queue).len() == 1,
    );
    // The busy manager claims it (the queue protocol: a rename into working/), then dies.
    let name = requests_in(&queue).remove(0);
    std::fs::rename(
        queue.join(&name),
        platform_dir(&env).join("working").join(&name),
    )
    .unwrap();
    interrupt(&child);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("had already started") && stderr.contains("km list"),
        "{stderr}"
    );
    // The next manager finds the dead claim and reports it failed instead of running it twice.
    drop(busy);
    managers_gone(&env);
    let request_id = name.trim_end_matches(".json");
    let outcome: serde_json::Value = serde_json::from_slice(
        &std::fs::read(platform_dir(&env).join(format!("results/{request_id}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(outcome["state"], "failed", "{outcome}");
    assert!(env.list_json().is_empty());
    assert!(names_in(&platform_dir(&env).join("working")).is_empty());
}

#[test]
fn doctor_fix_keeps_a_queued_creates_key_and_status_says_what_pins_the_host_key() {
    let mut env = TestEnv::new();
    env.ok(&["init", "--sidecars"]);
    let busy = HeldLock::take(&platform_dir(&env).join("manager.lock"));
    let output = create_remote(&env, &["--no-wait"]);
    assert!(output.status.success(), "{output:?}");
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    env.track(&id);
    assert!(env.key(&id).exists());
    let fixed = env.run(&["doctor", "--fix"]);
    assert!(
        env.key(&id).exists(),
        "doctor --fix removed a queued create's key: {}",
        String::from_utf8_lossy(&fixed.stdout)
    );
    drop(busy);
    wait_until(
        "the queued create to finish",
        std::time::Duration::from_secs(60),
        || {
            env.list_json()
                .iter()
                .any(|s| s["id"] == id.as_str() && s["status"] == "running")
        },
    );
    let stderr = env.fails(&["vscode", "status", &id]);
    let stdout = String::from_utf8(env.run(&["vscode", "status", &id]).stdout).unwrap();
    assert!(
        stdout.contains("not pinned on this machine yet")
            && stderr.contains(&format!("km vscode start {id}"))
            && !stderr.contains("recreate"),
        "{stdout}{stderr}"
    );
    env.ok(&["vscode", "start", &id, "--proxy"]);
    env.ok(&["vscode", "status", &id]);
    env.destroy(&id);
}

/// Runs one manager over the queue; it must finish, whatever the queue holds.
fn serve_must_finish(env: &TestEnv) -> std::process::Output {
    let mut child = Command::new(platform_dir(env).join("km-manager"))
        .args(["__manager", "serve"])
        .env_clear()
        .env("HOME", env.home())
        .env("PATH", std::env::var("PATH").unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the manager blocked on its queue");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn result_of(env: &TestEnv, request_id: &str) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(platform_dir(env).join(format!("results/{request_id}.json"))).unwrap(),
    )
    .unwrap()
}

#[test]
fn queue_entries_that_are_not_files_are_set_aside_and_never_block_the_manager() {
    let env = TestEnv::new();
    env.ok(&["init", "--sidecars"]);
    let queue = platform_dir(&env).join("queue");
    let made = Command::new("mkfifo")
        .arg(queue.join("create-sb-0123abcd-1.json"))
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::create_dir(queue.join("destroy-sb-0123abcd-2.json")).unwrap();
    std::fs::write(
        queue.join("destroy-sb-0123abcd-3.json"),
        br#"{"request_id":"destroy-sb-0123abcd-3","sandbox_id":"sb-0123abcd","force":false}"#,
    )
    .unwrap();
    let served = serve_must_finish(&env);
    assert!(served.status.success(), "{served:?}");
    let fifo = result_of(&env, "create-sb-0123abcd-1");
    assert!(fifo["error"].as_str().unwrap().contains("a FIFO"), "{fifo}");
    let dir = result_of(&env, "destroy-sb-0123abcd-2");
    assert!(
        dir["error"].as_str().unwrap().contains("a directory"),
        "{dir}"
    );
    let real = result_of(&env, "destroy-sb-0123abcd-3");
    assert!(
        real["error"]
            .as_str()
            .unwrap()
            .contains("no sandbox matches \"sb-0123abcd\""),
        "{real}"
    );
    assert!(names_in(&queue).is_empty());
    assert_eq!(names_in(&platform_dir(&env).join("rejected")).len(), 2);
}

#[test]
fn a_request_key_with_a_newline_is_refused_and_installs_nothing() {
    let env = TestEnv::new();
    env.ok(&["init", "--sidecars"]);
    let one = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGrMYzBeS4c0BkfRSRmcQgCVV7rEf/Dmj4CzNPRQLQnJ";
    let request_id = "create-sb-0123abcd-9";
    let profile = std::fs::read_to_string(repo_profile("default")).unwrap();
    std::fs::write(
        platform_dir(&env).join(format!("queue/{request_id}.json")),
        serde_json::to_vec(&serde_json::json!({
            "request_id": request_id,
            "sandbox_id": "sb-0123abcd",
            "alias": null,
            "profile": profile,
            "profile_path": "/x.yaml",
            "VSCodeSSHPubKey": format!("{one} km-sb-0123abcd:op\n{one} intruder"),
        }))
        .unwrap(),
    )
    .unwrap();
    let served = serve_must_finish(&env);
    assert!(served.status.success(), "{served:?}");
    let outcome = result_of(&env, request_id);
    assert_eq!(outcome["state"], "failed", "{outcome}");
    assert!(
        outcome["error"]
            .as_str()
            .unwrap()
            .contains("VSCodeSSHPubKey was refused"),
        "{outcome}"
    );
    assert!(env.list_json().is_empty());
    assert!(!env.home().join(".km/sandboxes/sb-0123abcd").exists());
}

/// Makes the installed manager another build: the same program with one byte more, and a
/// manifest naming that build (`describe`) or still naming the old one.
fn rebuild_manager(env: &TestEnv, describe: bool) {
    let manager = platform_dir(env).join("km-manager");
    let mut bytes = std::fs::read(&manager).unwrap();
    bytes.push(0);
    std::fs::write(&manager, &bytes).unwrap();
    if !describe {
        return;
    }
    let sum = String::from_utf8(
        Command::new("sha256sum")
            .arg(&manager)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let manifest = platform_dir(env).join("manifest.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    value["build_id"] = format!("sha256:{}", sum.split_whitespace().next().unwrap()).into();
    std::fs::write(&manifest, serde_json::to_vec(&value).unwrap()).unwrap();
}

#[test]
fn another_build_that_knows_every_field_is_used_with_a_warning_and_read_results_are_removed() {
    let mut env = TestEnv::new();
    env.ok(&["init", "--sidecars"]);
    rebuild_manager(&env, true);
    let output = create_remote(&env, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("another build than this"), "{stderr}");
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    env.track(&id);
    assert!(
        names_in(&platform_dir(&env).join("results")).is_empty(),
        "a result the CLI read is removed"
    );
    env.destroy(&id);
}

#[test]
fn doctor_names_a_replaced_manager_program_without_repeating_one_build() {
    let env = TestEnv::new();
    env.ok(&["init", "--sidecars"]);
    rebuild_manager(&env, false);
    let doctor = env.run(&["doctor", "--json"]);
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&doctor.stdout).unwrap();
    let manager = findings
        .iter()
        .find(|f| f["check"] == "management component")
        .unwrap();
    let detail = manager["detail"].as_str().unwrap();
    assert!(
        detail.contains("was replaced") && detail.contains("km init --sidecars"),
        "{detail}"
    );
    assert!(!detail.contains("not this km"), "{detail}");
}

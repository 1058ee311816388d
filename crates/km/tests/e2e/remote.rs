//! `km init --sidecars`, `km create --remote` and `km destroy --remote` through the local
//! platform's management component: a stale or missing manager is refused before anything is
//! made, the manager decodes requests strictly, and a current one creates sandboxes that work.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{TestEnv, repo_profile, succeeds, wait_until};

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
    let served = Command::new(platform_dir(env).join("km-manager"))
        .args(["__manager", "serve"])
        .env_clear()
        .env("HOME", env.home())
        .env("PATH", std::env::var("PATH").unwrap())
        .output()
        .unwrap();
    assert!(served.status.success(), "{served:?}");
    serde_json::from_slice(
        &std::fs::read(platform_dir(env).join(format!("results/{request_id}.json"))).unwrap(),
    )
    .unwrap()
}

fn create_remote(env: &TestEnv, extra: &[&str]) -> std::process::Output {
    let profile = repo_profile("default");
    let mut args = vec!["create", profile.to_str().unwrap(), "--remote"];
    args.extend(extra);
    env.run(&args)
}

/// A km built from this source with the manager as it was before requests carried
/// VSCodeSSHPubKey (the `manager-without-vscode-key` feature), in a target directory of its own.
fn older_km() -> PathBuf {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/older-manager");
    let built = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "km",
            "--features",
            "manager-without-vscode-key",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(built.success(), "building the older manager failed");
    target.join("debug/km")
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
fn an_older_manager_binary_is_refused_and_rejects_the_field_it_does_not_know() {
    let env = TestEnv::new();
    let older = older_km();
    // The older build installs itself, as `km init --sidecars` of an older km would.
    let installed = Command::new(&older)
        .args(["init", "--sidecars"])
        .env_clear()
        .env("HOME", env.home())
        .env("PATH", std::env::var("PATH").unwrap())
        .output()
        .unwrap();
    assert!(installed.status.success(), "{installed:?}");
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

    // Handed a request anyway, the older manager refuses it, naming the field, and makes nothing.
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
            "VSCodeSSHPubKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG1vcmU km-sb-0123abcd:op",
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
            .contains("unknown field `VSCodeSSHPubKey`"),
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
    let stderr = env.fails(&["destroy", "remote-poc", "--remote", "--yes"]);
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

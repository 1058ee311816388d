//! `km doctor` on healthy machines and around files that are not km's: no false alarms, no
//! chmod of what is not a key, and no "fixed" for what it left alone.

use std::os::unix::fs::PermissionsExt;

use crate::support::{HeldLock, TestEnv};

#[test]
fn doctor_passes_on_a_fresh_healthy_machine_with_a_proxy_entry() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    env.ok(&["vscode", "start", &id, "--proxy"]);
    let output = env.run(&["doctor"]);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8(output.stdout).unwrap();
    assert!(said.contains("resolves to km's values"), "{said}");
    env.destroy(&id);
}

#[test]
fn doctor_leaves_files_that_are_not_keys_alone_and_never_calls_nothing_a_fix() {
    let env = TestEnv::new();
    let keys = env.home().join(".km/keys");
    std::fs::create_dir_all(&keys).unwrap();
    let readme = keys.join("README.txt");
    std::fs::write(&readme, "notes\n").unwrap();
    std::fs::set_permissions(&readme, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A temp file whose writer is alive (it holds the file's lock).
    let temp = env.home().join(".km/.km-tmp-live");
    std::fs::write(&temp, b"being written").unwrap();
    let _writer = HeldLock::take(&temp);

    let output = env.run(&["doctor", "--fix"]);
    let said = String::from_utf8(output.stdout).unwrap();
    assert!(!said.contains("README.txt"), "{said}");
    assert_eq!(
        std::fs::metadata(&readme).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert!(temp.exists());
    assert!(!said.contains("removed 0"), "{said}");
    assert!(said.contains("left alone"), "{said}");
    assert!(output.status.success(), "{said}");
}

#[test]
fn a_fix_that_fails_says_why() {
    let env = TestEnv::new();
    let keys = env.home().join(".km/keys");
    std::fs::create_dir_all(&keys).unwrap();
    // An orphan key whose public half is a directory with something in it: it cannot be
    // removed as a file.
    std::fs::write(keys.join("sb-0123abcd"), "key").unwrap();
    std::fs::set_permissions(
        keys.join("sb-0123abcd"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::create_dir(keys.join("sb-0123abcd.pub")).unwrap();
    std::fs::write(keys.join("sb-0123abcd.pub/inside"), "x").unwrap();
    let output = env.run(&["doctor", "--fix"]);
    let said = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{said}");
    let line = said
        .lines()
        .find(|l| l.contains("orphan keys"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        line.starts_with('✗') && line.contains("--fix could not:"),
        "{line}"
    );
    let json = env.run(&["doctor", "--json"]);
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert!(findings.iter().any(|f| f["check"] == "orphan keys"));
}

#[test]
fn a_sandbox_its_platform_no_longer_has_is_named_with_the_command_that_forgets_it() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    env.ok(&["stop", &id]);
    // Removed behind km's back, as an instance can be terminated.
    std::fs::remove_dir_all(env.home().join(format!(".km/sandboxes/{id}"))).unwrap();
    let output = env.run(&["doctor"]);
    let said = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "{id} is recorded, but its local platform no longer has it; forget it with: km destroy {id} --yes --force"
        )),
        "{said}"
    );
    env.ok(&["destroy", &id, "--yes", "--force"]);
    assert!(env.run(&["doctor"]).status.success());
}

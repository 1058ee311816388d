//! Every rendered userdata variant, and every script km runs in a sandbox, is one that `sh -n`,
//! `bash -n` and shellcheck accept; the key scripts do what they say when `sh` runs them.

use std::process::Command;

use km_core::keys::KeyPair;
use km_core::remote_script::{
    install_key_script, parse_readback, parse_revoke, probe_script, revoke_key_script,
};
use km_core::userdata::{BootSteps, UserData};
use km_core::vscode_server;

fn variants() -> Vec<(String, String)> {
    let line = KeyPair::generate("km-sb-0123abcd")
        .unwrap()
        .public_line()
        .unwrap();
    let mut out = Vec::new();
    // EC2's own steps are checked the same way where they live (km-aws's `boot`).
    for enabled in [true, false] {
        let script = UserData {
            steps: BootSteps::default(),
            sandbox_id: "sb-0123abcd".parse().unwrap(),
            vscode_enabled: enabled,
            vscode_ssh_pub_key: enabled.then(|| line.clone()),
        }
        .render()
        .unwrap();
        out.push((format!("vscode {enabled}"), script));
    }
    out
}

fn accepts(program: &[&str], script: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("userdata.sh");
    std::fs::write(&path, script).unwrap();
    let output = Command::new(program[0])
        .args(&program[1..])
        .arg(&path)
        .output()
        .map_err(|e| {
            format!(
                "cannot run {}: {e} (install it: apt-get install shellcheck)",
                program[0]
            )
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[test]
fn every_variant_parses_and_passes_shellcheck() {
    for (name, script) in variants() {
        for program in [
            &["sh", "-n"][..],
            &["bash", "-n"][..],
            &["shellcheck", "--shell=sh", "--severity=style"][..],
        ] {
            if let Err(said) = accepts(program, &script) {
                panic!(
                    "{} rejects the {name} userdata:\n{said}\n{script}",
                    program[0]
                );
            }
        }
    }
}

fn remote_scripts() -> Vec<(String, String)> {
    vec![
        (
            "probe".into(),
            probe_script("systemctl is-active --quiet sshd", "'/etc/ssh/key.pub'"),
        ),
        (
            "install".into(),
            install_key_script(
                &["km-sb-0123abcd", "km-sb-0123abcd:a@b"],
                Some("ssh-ed25519 AAAA x"),
            ),
        ),
        (
            "install, remove only".into(),
            install_key_script(&["km-sb-0123abcd:a@b"], None),
        ),
        (
            "revoke".into(),
            revoke_key_script(
                &["from=\"1.2.3.4\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA it's".to_owned()],
                "AAAAC3NzaC1lZDI1NTE5AAAA",
                "\"$(cat \"$KM_ROOT/run/agent.pid\")\"",
            ),
        ),
        (
            "vscode server survey".into(),
            vscode_server::survey_script(&COMMIT.parse().unwrap()),
        ),
        (
            "vscode server placement".into(),
            vscode_server::place_script(&COMMIT.parse().unwrap(), vscode_server::Arch::X64),
        ),
    ]
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[test]
fn every_remote_script_parses_and_passes_shellcheck() {
    for (name, script) in remote_scripts() {
        let script = format!("#!/bin/sh\n{script}");
        for program in [
            &["sh", "-n"][..],
            &["bash", "-n"][..],
            &["shellcheck", "--shell=sh", "--severity=warning"][..],
        ] {
            if let Err(said) = accepts(program, &script) {
                panic!(
                    "{} rejects the {name} script:\n{said}\n{script}",
                    program[0]
                );
            }
        }
    }
}

fn run_in(home: &std::path::Path, script: &str) -> String {
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("HOME", home)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn installing_one_operators_key_keeps_everyone_elses_and_revoking_removes_only_that_key() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".ssh")).unwrap();
    let line = |comment: &str| KeyPair::generate(comment).unwrap().public_line().unwrap();
    let (alice, bob, legacy, foreign) = (
        line("km-sb-0123abcd:alice"),
        line("km-sb-0123abcd:bob"),
        line("km-sb-0123abcd"),
        line("someone@else"),
    );
    let keys = home.path().join(".ssh/authorized_keys");
    std::fs::write(&keys, format!("{alice}\n{bob}\n{legacy}\n{foreign}\n")).unwrap();

    // Alice rotates: her line and the unnamed legacy line she held go, Bob's and a foreign stay.
    let rotated = line("km-sb-0123abcd:alice");
    let out = run_in(
        home.path(),
        &install_key_script(&["km-sb-0123abcd:alice", "km-sb-0123abcd"], Some(&rotated)),
    );
    assert_eq!(parse_readback(&out).as_deref(), Some(rotated.as_str()));
    let now = std::fs::read_to_string(&keys).unwrap();
    assert_eq!(now, format!("{bob}\n{foreign}\n{rotated}\n"));

    // Revoking Bob's key removes his lines only, the one with options too, and reads back the rest.
    let with_options = format!("from=\"127.0.0.1\",no-pty {bob}");
    std::fs::write(
        &keys,
        format!("{bob}\n{foreign}\n{with_options}\n{rotated}\n"),
    )
    .unwrap();
    let blob = bob.split_whitespace().nth(1).unwrap();
    let out = run_in(
        home.path(),
        &revoke_key_script(&[bob.clone(), with_options], blob, "1"),
    );
    let report = parse_revoke(&out);
    assert_eq!(
        report.remaining,
        Some(vec![foreign.clone(), rotated.clone()])
    );
    assert!(report.survived.is_empty(), "{report:?}");
    assert_eq!(
        std::fs::read_to_string(&keys).unwrap(),
        format!("{foreign}\n{rotated}\n")
    );

    // Nothing named: nothing removed, even though `grep -f` of an empty pattern matches all.
    let out = run_in(home.path(), &revoke_key_script(&[], blob, "1"));
    assert_eq!(parse_revoke(&out).remaining, Some(vec![foreign, rotated]));
}

#[test]
fn every_variant_fits_in_ec2s_userdata_limit() {
    for (name, script) in variants() {
        assert!(script.len() < 16 * 1024, "{name}: {} bytes", script.len());
    }
}

#[test]
fn the_host_key_km_generates_is_readable_by_the_sandbox_user_who_pins_it() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let script = UserData {
        steps: BootSteps::default(),
        sandbox_id: "sb-0123abcd".parse().unwrap(),
        vscode_enabled: false,
        vscode_ssh_pub_key: None,
    }
    .render()
    .unwrap();
    let output = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("KM_ROOT", root.path())
        .env("KM_SANDBOX_HOME", &home)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let public = root.path().join("etc/ssh/ssh_host_ed25519_key.pub");
    let private = root.path().join("etc/ssh/ssh_host_ed25519_key");
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&public),
        0o644,
        "the probe reads it as the sandbox user"
    );
    assert_eq!(mode(&private), 0o600);
}

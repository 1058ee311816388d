//! Every rendered userdata variant is a script that `sh -n`, `bash -n` and shellcheck accept.

use std::process::Command;

use km_core::keys::KeyPair;
use km_core::userdata::{Target, UserData};

fn variants() -> Vec<(String, String)> {
    let line = KeyPair::generate("km-sb-0123abcd")
        .unwrap()
        .public_line()
        .unwrap();
    let mut out = Vec::new();
    for target in [Target::Local, Target::Ec2] {
        for enabled in [true, false] {
            let script = UserData {
                target,
                sandbox_id: "sb-0123abcd".parse().unwrap(),
                vscode_enabled: enabled,
                vscode_ssh_pub_key: enabled.then(|| line.clone()),
            }
            .render()
            .unwrap();
            out.push((format!("{target:?}, vscode {enabled}"), script));
        }
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

#[test]
fn every_variant_fits_in_ec2s_userdata_limit() {
    for (name, script) in variants() {
        assert!(script.len() < 16 * 1024, "{name}: {} bytes", script.len());
    }
}

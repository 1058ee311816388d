//! `km vscode server`: the VS Code server placed in a sandbox over km's channel, from a tarball
//! on this machine, in both layouts Remote-SSH looks in; wrong or broken tarballs place nothing.
//! The tarballs are stand-ins made here (no download): a `product.json` naming the commit and a
//! `bin/code-server` launcher, in a top directory named for the architecture, as VS Code's are.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::TestEnv;

const C: &str = "1111111111111111111111111111111111111111";
const D: &str = "2222222222222222222222222222222222222222";
const E: &str = "3333333333333333333333333333333333333333";

/// This machine's architecture in VS Code's words (a local sandbox runs on it).
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "x64",
    }
}

/// A stand-in server tarball for `arch` whose `product.json` names `commit`.
pub(crate) fn stand_in(dir: &Path, name: &str, arch: &str, commit: &str) -> PathBuf {
    let root = dir.join(format!("{name}-tree"));
    let top = root.join(format!("vscode-server-linux-{arch}"));
    std::fs::create_dir_all(top.join("bin")).unwrap();
    std::fs::write(
        top.join("product.json"),
        format!("{{\n  \"nameShort\": \"Code\",\n  \"commit\": \"{commit}\",\n  \"quality\": \"stable\"\n}}\n"),
    )
    .unwrap();
    let launcher = top.join("bin/code-server");
    std::fs::write(
        &launcher,
        format!("#!/bin/sh\necho \"stand-in server {commit}\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        &launcher,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let tarball = dir.join(format!("{name}.tar.gz"));
    let made = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&root)
        .arg(format!("vscode-server-linux-{arch}"))
        .status()
        .unwrap();
    assert!(made.success());
    tarball
}

fn in_sandbox(env: &TestEnv, id: &str, script: &str) -> String {
    env.ok(&["shell", id, "--", "sh", "-c", script])
}

#[test]
fn the_server_is_placed_in_both_layouts_once_and_bad_tarballs_place_nothing() {
    let mut env = TestEnv::new();
    let id = env.create("default", None);
    let home = env.home().to_path_buf();
    let server = |commit: &str, from: &Path| {
        env.run(&[
            "vscode",
            "server",
            &id,
            "--commit",
            commit,
            "--from",
            from.to_str().unwrap(),
        ])
    };

    let good = stand_in(&home, "good", arch(), C);
    let placed = server(C, &good);
    let said = String::from_utf8_lossy(&placed.stderr);
    assert!(placed.status.success(), "{said}");
    assert!(said.contains(&format!("placed in {id}")), "{said}");
    let seen = in_sandbox(
        &env,
        &id,
        &format!(
            "grep -h commit ~/.vscode-server/bin/{C}/product.json ~/.vscode-server/cli/servers/Stable-{C}/server/product.json; ~/.vscode-server/bin/{C}/bin/code-server"
        ),
    );
    assert_eq!(seen.matches(C).count(), 3, "{seen}");
    assert!(seen.contains(&format!("stand-in server {C}")), "{seen}");

    // Again: nothing to do.
    let again = server(C, &good);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        again.status.success() && said.contains("already in place"),
        "{said}"
    );

    // A second commit goes beside the first.
    let other = stand_in(&home, "other", arch(), D);
    assert!(server(D, &other).status.success());
    let listed = in_sandbox(&env, &id, "ls ~/.vscode-server/bin");
    assert!(listed.contains(C) && listed.contains(D), "{listed}");

    // Broken or wrong tarballs: refused, and nothing is left half placed.
    let corrupt = home.join("corrupt.tar.gz");
    std::fs::write(&corrupt, b"\x1f\x8b not really gzip").unwrap();
    let said = env.fails(&[
        "vscode",
        "server",
        &id,
        "--commit",
        E,
        "--from",
        corrupt.to_str().unwrap(),
    ]);
    assert!(
        said.contains("is not a readable .tar.gz") && said.contains("nothing was placed"),
        "{said}"
    );
    let mismatched = stand_in(&home, "mismatched", arch(), D);
    let said = env.fails(&[
        "vscode",
        "server",
        &id,
        "--commit",
        E,
        "--from",
        mismatched.to_str().unwrap(),
    ]);
    assert!(
        said.contains(&format!("is VS Code server {D}, not {E}")),
        "{said}"
    );
    let foreign = if arch() == "x64" { "arm64" } else { "x64" };
    let wrong_arch = stand_in(&home, "wrong-arch", foreign, E);
    let said = env.fails(&[
        "vscode",
        "server",
        &id,
        "--commit",
        E,
        "--from",
        wrong_arch.to_str().unwrap(),
    ]);
    assert!(
        said.contains(&format!(
            "is vscode-server-linux-{foreign}, not the linux-{} server",
            arch()
        )),
        "{said}"
    );
    // A tarball this machine cannot read is said to be so, not blamed on its contents.
    let said = env.fails(&[
        "vscode",
        "server",
        &id,
        "--commit",
        E,
        "--from",
        home.to_str().unwrap(),
    ]);
    assert!(
        said.contains("cannot read the server tarball") && said.contains("nothing was placed"),
        "{said}"
    );
    let left = in_sandbox(
        &env,
        &id,
        "ls -a ~/.vscode-server ~/.vscode-server/bin ~/.vscode-server/cli/servers",
    );
    assert!(!left.contains(".km-stage") && !left.contains(E), "{left}");

    // Without --from, km looks in its cache and says how to fill it.
    let said = env.fails(&["vscode", "server", &id, "--commit", E]);
    assert!(
        said.contains(".km/cache/vscode-server/vscode-server-linux-")
            && said.contains(&format!(
                "https://update.code.visualstudio.com/commit:{E}/server-linux-{}/stable",
                arch()
            )),
        "{said}"
    );
    let cache = home.join(".km/cache/vscode-server");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::copy(
        stand_in(&home, "cached", arch(), E),
        cache.join(format!("vscode-server-linux-{}-{E}.tar.gz", arch())),
    )
    .unwrap();

    // The commit comes from the editor when not given.
    let editor = home.join("code");
    std::fs::write(
        &editor,
        format!("#!/bin/sh\necho 1.99.0\necho {E}\necho x64\n"),
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let placed = env.run(&[
        "vscode",
        "server",
        &id,
        "--editor",
        editor.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&placed.stderr);
    assert!(
        placed.status.success() && said.contains(&format!("{} (linux-", &E[..12])),
        "{said}"
    );
    let listed = in_sandbox(&env, &id, "ls ~/.vscode-server/cli/servers");
    assert!(listed.contains(&format!("Stable-{E}")), "{listed}");

    // `km vscode open --place-server` places the editor's server, then opens the editor.
    const F: &str = "4444444444444444444444444444444444444444";
    std::fs::copy(
        stand_in(&home, "for-open", arch(), F),
        cache.join(format!("vscode-server-linux-{}-{F}.tar.gz", arch())),
    )
    .unwrap();
    let opened = home.join("opened");
    std::fs::write(
        &editor,
        format!(
            "#!/bin/sh
if [ \"$1\" = --version ]; then echo 1.99.1; echo {F}; exit 0; fi
echo \"$@\" > '{}'
",
            opened.display()
        ),
    )
    .unwrap();
    let run = env.run(&[
        "vscode",
        "open",
        &id,
        "--editor",
        editor.to_str().unwrap(),
        "--place-server",
    ]);
    let said = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{said}");
    let listed = in_sandbox(&env, &id, "ls ~/.vscode-server/bin");
    assert!(listed.contains(F), "{listed}");
    let args = std::fs::read_to_string(&opened).unwrap_or_else(|e| panic!("{e}: {said}"));
    assert!(
        args.contains(&format!("vscode-remote://ssh-remote+km-{id}")),
        "{args}"
    );
    env.destroy(&id);
}

#[test]
fn a_sandbox_without_network_gets_the_server_without_being_asked() {
    let mut env = TestEnv::new();
    let home = env.home().to_path_buf();
    let offline = home.join("offline.yaml");
    std::fs::write(
        &offline,
        "metadata:\n  name: offline\nspec:\n  runtime:\n    network: none\n",
    )
    .unwrap();
    let id = env
        .ok(&["create", offline.to_str().unwrap()])
        .trim()
        .to_owned();
    env.track(&id);
    let online = env.create("default", None);

    // No editor to match and nothing cached: start warns, names why, and still writes the entry.
    let started = env
        .command(&["vscode", "start", &id, "--proxy"])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&started.stderr);
    assert!(started.status.success(), "{said}");
    assert!(said.contains("has no network (`network: none`)"), "{said}");
    assert!(
        said.contains("warning: the VS Code server was not placed")
            && said.contains("code --version"),
        "{said}"
    );

    const G: &str = "5555555555555555555555555555555555555555";
    let cache = home.join(".km/cache/vscode-server");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::copy(
        stand_in(&home, "offline", arch(), G),
        cache.join(format!("vscode-server-linux-{}-{G}.tar.gz", arch())),
    )
    .unwrap();
    let editor = home.join("code");
    std::fs::write(
        &editor,
        format!("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 1.99.2; echo {G}; fi\n"),
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let open = |sandbox: &str| {
        let run = env.run(&[
            "vscode",
            "open",
            sandbox,
            "--editor",
            editor.to_str().unwrap(),
        ]);
        let said = String::from_utf8_lossy(&run.stderr).into_owned();
        assert!(run.status.success(), "{said}");
        said
    };
    let said = open(&id);
    assert!(said.contains("km places it"), "{said}");
    assert!(
        in_sandbox(&env, &id, "ls ~/.vscode-server/bin").contains(G),
        "placed without --place-server"
    );
    // A sandbox with a network downloads its own, as Remote-SSH does: km leaves it alone.
    let said = open(&online);
    assert!(!said.contains("km places it"), "{said}");
    assert_eq!(
        in_sandbox(&env, &online, "ls ~/.vscode-server 2>/dev/null | wc -l").trim(),
        "0"
    );
    env.destroy(&id);
    env.destroy(&online);
}

//! The block editor against the real OpenSSH client: `ssh -G` proves how configs resolve, and
//! 50 concurrent writer processes prove the locked write loses nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use km_core::atomic_file::edit_locked;
use km_core::ssh_config::{HostEntry, parse_entries, upsert};

const WRITER_ENV: &str = "KM_TEST_CONFIG_WRITER";

/// Each option's first value: OpenSSH offers identity files in that order, so km's key first.
fn resolve(config: &Path, host: &str) -> BTreeMap<String, String> {
    let output = Command::new("ssh")
        .args(["-T", "-G", "-F"])
        .arg(config)
        .arg(host)
        .output()
        .expect("ssh is installed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut options = BTreeMap::new();
    for (key, value) in String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' '))
    {
        options
            .entry(key.to_owned())
            .or_insert_with(|| value.to_owned());
    }
    options
}

fn km_entry(alias: &str) -> HostEntry {
    HostEntry::new(alias)
        .option("HostName", "127.0.0.1")
        .option("Port", "2299")
        .option("User", "sandbox")
        .path_option("IdentityFile", "/keys dir/km key")
        .unwrap()
        .option("IdentitiesOnly", "yes")
        .option("HostKeyAlias", alias)
        .path_option("UserKnownHostsFile", "/km/known_hosts")
        .unwrap()
        .option("StrictHostKeyChecking", "yes")
        .option("ProxyCommand", "none")
}

const GREEDY: &str = "User everyone\nHost *\n  User star\n  Port 9999\n  IdentityFile ~/.ssh/id_star\n  StrictHostKeyChecking no\n  ProxyCommand nc %h %p\nHost work\n  HostName work.example\nMatch host other\n  Port 7\n";

#[test]
fn km_hosts_win_over_greedy_user_options_and_other_hosts_resolve_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(&config, GREEDY).unwrap();
    let before: Vec<_> = ["work", "other", "anything"]
        .iter()
        .map(|h| resolve(&config, h))
        .collect();

    let text = upsert(GREEDY, &km_entry("km-sb-0123abcd")).unwrap();
    std::fs::write(&config, &text).unwrap();
    let km = resolve(&config, "km-sb-0123abcd");
    assert_eq!(km["hostname"], "127.0.0.1");
    assert_eq!(km["port"], "2299");
    assert_eq!(km["user"], "sandbox");
    assert_eq!(km["identityfile"], "/keys dir/km key");
    assert_eq!(km["stricthostkeychecking"], "true");
    assert_eq!(km["hostkeyalias"], "km-sb-0123abcd");
    assert_eq!(km["userknownhostsfile"], "/km/known_hosts");
    assert!(
        !km.contains_key("proxycommand"),
        "the user's ProxyCommand must not apply"
    );

    let after: Vec<_> = ["work", "other", "anything"]
        .iter()
        .map(|h| resolve(&config, h))
        .collect();
    assert_eq!(
        before, after,
        "every other host resolves exactly as before km wrote"
    );
}

#[test]
fn fifty_concurrent_writer_processes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let user = "# mine\nHost *\r\n  ServerAliveInterval 5";
    std::fs::write(&config, user).unwrap();
    let exe = std::env::current_exe().unwrap();
    let writers: Vec<_> = (0..50)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "concurrent_writer_child",
                    "--ignored",
                    "--nocapture",
                ])
                .env(WRITER_ENV, format!("{}|{i}", dir.path().display()))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut writer in writers {
        assert!(writer.wait().unwrap().success());
    }
    let text = std::fs::read_to_string(&config).unwrap();
    let entries = parse_entries(&text).unwrap();
    assert_eq!(entries.len(), 50, "every writer's entry survived");
    assert!(text.ends_with(user), "user content kept byte for byte");
}

/// One writer process of the test above, which runs it 50 times; never on its own.
#[test]
#[ignore = "a child process of fifty_concurrent_writer_processes_lose_nothing; run only by it"]
fn concurrent_writer_child() {
    let spec = std::env::var(WRITER_ENV)
        .expect("runs only as a child of the 50-writer test, which sets its directory");
    let (dir, index) = spec.split_once('|').unwrap();
    let dir = Path::new(dir);
    let alias = format!("km-sb-{:08x}", index.parse::<u32>().unwrap());
    edit_locked::<std::io::Error>(&dir.join("lock"), &dir.join("config"), 0o600, |current| {
        let text = String::from_utf8(current.unwrap_or_default().to_vec()).unwrap();
        Ok(Some(upsert(&text, &km_entry(&alias)).unwrap().into_bytes()))
    })
    .unwrap();
}

#[test]
fn keys_pass_the_real_ssh_keygen() {
    use km_core::keys::KeyPair;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("keys/sb-0123abcd");
    let public = dir.path().join("keys/sb-0123abcd.pub");
    std::fs::create_dir_all(private.parent().unwrap()).unwrap();
    std::fs::write(&private, "stale").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).unwrap();
    let pair = KeyPair::generate("km-sb-0123abcd").unwrap();
    pair.write(&private, &public).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&private),
        0o600,
        "a leftover 0644 file is replaced by a 0600 one"
    );
    assert_eq!(mode(&public), 0o644);
    assert_eq!(mode(private.parent().unwrap()), 0o700);
    let derived = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&private)
        .output()
        .unwrap();
    assert!(derived.status.success());
    let pub_text = std::fs::read_to_string(&public).unwrap();
    assert_eq!(
        String::from_utf8(derived.stdout).unwrap().trim(),
        pub_text.trim()
    );
    for path in [&private, &public] {
        let listed = Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(path)
            .output()
            .unwrap();
        let text = String::from_utf8(listed.stdout).unwrap();
        assert!(text.contains(&pair.fingerprint()), "{text}");
        assert!(text.contains("km-sb-0123abcd"));
    }
}

//! The namespaces a local sandbox runs in: bubblewrap's command line for its agent, the
//! sandbox's own passwd and group, what of this machine's system directories it may not read,
//! and whether this machine can make the namespaces at all (and the exact fix when it cannot).
//!
//! The agent itself runs inside, so every process of the sandbox (first boot, each `sshd -i`,
//! every command) shares one set of namespaces: a VS Code server started by one ssh session is
//! reachable from the next, and everything ends when the agent does (it is the pid namespace's
//! first process, so the kernel then kills the rest).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::runtime::Network;

use crate::layout::SandboxLayout;
use crate::sshd::SshdTools;

/// Where the sandbox directory's own parts (config, sockets, logs) are inside.
pub const INSIDE_ROOT: &str = "/run/km";
/// The sandbox user's name inside.
pub const INSIDE_USER: &str = "sandbox";
/// The sandbox user's home inside.
pub const INSIDE_HOME: &str = "/home/sandbox";
/// The sandbox user's uid and gid inside; outside, it is the operator's.
pub const INSIDE_UID: u32 = 1000;
/// Where km's own binary (the agent) is inside.
pub const INSIDE_KM: &str = "/run/km/bin/km";
/// `PATH` inside: the operator's may name directories the sandbox cannot see.
pub const INSIDE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The machine's directories a sandbox sees, read-only, when they exist.
const SYSTEM_DIRS: [&str; 9] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/etc",
];

/// How a sandbox is isolated, kept in its `agent.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IsolationConfig {
    /// Which network it sees.
    pub network: Network,
}

/// Something in `/etc` hidden from the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hidden {
    /// A file, seen as empty.
    File(PathBuf),
    /// A directory, seen as empty.
    Dir(PathBuf),
}

/// Everything needed to write bubblewrap's command line for one sandbox.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    /// The sandbox directory as the operator sees it.
    pub layout: &'a SandboxLayout,
    /// The sandbox's ID (its host name inside).
    pub id: &'a str,
    /// km's binary, run inside as the agent.
    pub km_exe: &'a Path,
    /// OpenSSH's server tools, bound in where they are when that is outside the system dirs.
    pub tools: &'a SshdTools,
    /// How it is isolated.
    pub config: IsolationConfig,
    /// What of the bound system directories it may not read.
    pub hidden: &'a [Hidden],
    /// Where `/etc/resolv.conf` really is, when it is a link into `/run` (systemd-resolved).
    pub resolver: Option<PathBuf>,
}

/// Why bubblewrap cannot isolate a sandbox here; [`IsolationError::fixes`] says what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IsolationError {
    /// No `bwrap`.
    #[error(
        "local sandboxes run in namespaces of their own through bubblewrap, and `bwrap` is not installed (looked in {looked})"
    )]
    Missing {
        /// Where km looked.
        looked: String,
    },
    /// `bwrap` is there, but the kernel refuses the namespaces.
    #[error(
        "this machine does not let an unprivileged process make a sandbox's namespaces; bwrap said: {said}"
    )]
    Refused {
        /// bubblewrap's own words.
        said: String,
        /// The setting to change.
        fix: String,
    },
}

impl IsolationError {
    /// What the operator can do, first the fix, last the opt-out.
    pub fn fixes(&self) -> Vec<String> {
        let first = match self {
            Self::Missing { .. } => "install it: `sudo apt install bubblewrap` (Debian, Ubuntu) or `sudo dnf install bubblewrap` (Fedora); or point KM_BWRAP at one".to_owned(),
            Self::Refused { fix, .. } => fix.clone(),
        };
        vec![
            first,
            "or give up the isolation for this sandbox: set `spec.runtime.isolation: none` in its profile (it then runs with your own access)".into(),
        ]
    }
}

/// Finds `bwrap`: `override_path` (from `KM_BWRAP`) if given, else `/usr/bin`, then `PATH`.
pub fn find_bwrap(
    override_path: Option<&Path>,
    path_var: Option<&str>,
) -> Result<PathBuf, IsolationError> {
    let candidates: Vec<PathBuf> = match override_path {
        Some(path) => vec![path.to_path_buf()],
        None => std::iter::once(PathBuf::from("/usr/bin/bwrap"))
            .chain(
                path_var
                    .unwrap_or_default()
                    .split(':')
                    .filter(|dir| !dir.is_empty())
                    .map(|dir| Path::new(dir).join("bwrap")),
            )
            .collect(),
    };
    candidates
        .iter()
        .find(|path| {
            path.is_absolute()
                && fs::metadata(path)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .cloned()
        .ok_or_else(|| IsolationError::Missing {
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Makes the namespaces a sandbox gets, once, and runs `true` in them: a kernel that refuses
/// is found before anything is laid out, with the setting that refuses named.
pub fn probe(bwrap: &Path, network: Network) -> Result<(), IsolationError> {
    let mut command = Command::new(bwrap);
    command.args([
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
    ]);
    if network == Network::None {
        command.arg("--unshare-net");
    }
    let output = command
        .args(["--ro-bind", "/", "/", "--", "/bin/true"])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| IsolationError::Refused {
            said: format!("cannot run {}: {e}", bwrap.display()),
            fix: "check that bwrap is a working executable".into(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr)
        .trim()
        .lines()
        .next()
        .unwrap_or("no reason given")
        .to_owned();
    Err(IsolationError::Refused {
        said,
        fix: namespace_fix(&|name| {
            fs::read_to_string(Path::new("/proc/sys").join(name))
                .ok()
                .map(|text| text.trim().to_owned())
        }),
    })
}

/// The sysctl that stops unprivileged user namespaces, read through `sysctl` (a path under
/// `/proc/sys`), as the command that lifts it.
pub fn namespace_fix(sysctl: &dyn Fn(&str) -> Option<String>) -> String {
    if sysctl("kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return "AppArmor restricts unprivileged user namespaces here; allow them: `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (or give bwrap an AppArmor profile that permits `userns`)".into();
    }
    if sysctl("kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return "the kernel turns unprivileged user namespaces off; turn them on: `sudo sysctl -w kernel.unprivileged_userns_clone=1`".into();
    }
    if sysctl("user/max_user_namespaces").as_deref() == Some("0") {
        return "the kernel allows no user namespaces; raise the limit: `sudo sysctl -w user.max_user_namespaces=15000`".into();
    }
    "user namespaces may be off in this kernel, used up, or blocked by a container runtime; check `sysctl user.max_user_namespaces` and, inside a container, its seccomp profile".into()
}

/// What of `dir` (bound into the sandbox) it may not read: whatever not every user of this
/// machine may read (a file without the "others may read" bit, a directory others cannot list
/// or enter). So `/etc/shadow`, sshd's host keys and TLS private keys stay hidden however km
/// runs, even as root, where the sandbox user is root outside.
pub fn hidden_in(dir: &Path) -> Vec<Hidden> {
    let mut hidden = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            hidden.push(Hidden::Dir(dir));
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let mode = meta.mode();
            if meta.is_dir() {
                if mode & 0o005 == 0o005 {
                    pending.push(path);
                } else {
                    hidden.push(Hidden::Dir(path));
                }
            } else if meta.is_file() && mode & 0o004 == 0 {
                hidden.push(Hidden::File(path));
            }
        }
    }
    hidden.sort_by(|a, b| hidden_path(a).cmp(hidden_path(b)));
    hidden
}

fn hidden_path(hidden: &Hidden) -> &Path {
    match hidden {
        Hidden::File(path) | Hidden::Dir(path) => path,
    }
}

/// Where `/etc/resolv.conf` leads when it is a link into `/run`, which the sandbox gets fresh.
pub fn resolver_outside_etc(resolv_conf: &Path) -> Option<PathBuf> {
    if !fs::symlink_metadata(resolv_conf).ok()?.is_symlink() {
        return None;
    }
    let target = fs::canonicalize(resolv_conf).ok()?;
    target.starts_with("/run").then_some(target)
}

/// The sandbox's `/etc/passwd`: its own user, and the two every program expects.
pub fn passwd() -> String {
    let shell = if Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    format!(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n{INSIDE_USER}:x:{INSIDE_UID}:{INSIDE_UID}:km sandbox:{INSIDE_HOME}:{shell}\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
}

/// The sandbox's `/etc/group`.
pub fn group() -> String {
    format!("root:x:0:\n{INSIDE_USER}:x:{INSIDE_UID}:\nnogroup:x:65534:\n")
}

/// bubblewrap's arguments, up to and including the agent's command line.
pub fn bwrap_args(launch: &Launch<'_>) -> Vec<OsString> {
    let mut args = Args::default();
    let uid = INSIDE_UID.to_string();
    args.push(["--unshare-user", "--uid", &uid, "--gid", &uid]);
    // The agent is the pid namespace's first process: when it ends, however it ends, the
    // kernel ends every other process of the sandbox.
    args.push([
        "--unshare-pid",
        "--as-pid-1",
        "--unshare-ipc",
        "--unshare-uts",
    ]);
    args.push(["--hostname", launch.id]);
    if launch.config.network == Network::None {
        args.push(["--unshare-net"]);
    }
    // No controlling terminal to push input into. Not `--die-with-parent`: the launcher's
    // parent is the `km create` that returns at once; the sandbox ends with its agent instead.
    args.push(["--new-session"]);
    for dir in SYSTEM_DIRS {
        let path = Path::new(dir);
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_symlink() => {
                if let Ok(target) = fs::read_link(path) {
                    args.push_paths("--symlink", &target, path);
                }
            }
            Ok(meta) if meta.is_dir() => args.push_paths("--ro-bind", path, path),
            _ => {}
        }
    }
    for hidden in launch.hidden {
        match hidden {
            Hidden::File(path) => args.push_paths("--ro-bind", Path::new("/dev/null"), path),
            Hidden::Dir(path) => args.push_paths("--tmpfs", path, Path::new("")),
        }
    }
    let outside = launch.layout.outside();
    args.push_paths(
        "--ro-bind",
        &outside.join("passwd"),
        Path::new("/etc/passwd"),
    );
    args.push_paths("--ro-bind", &outside.join("group"), Path::new("/etc/group"));
    args.push(["--proc", "/proc", "--dev", "/dev"]);
    args.push(["--perms", "1777", "--tmpfs", "/tmp"]);
    args.push(["--tmpfs", "/var", "--perms", "1777", "--dir", "/var/tmp"]);
    args.push(["--tmpfs", "/run", "--tmpfs", "/home"]);
    if let Some(resolver) = &launch.resolver {
        args.push_paths("--ro-bind", resolver, resolver);
    }
    let inside = Path::new(INSIDE_ROOT);
    args.push_paths("--bind", &launch.layout.home(), Path::new(INSIDE_HOME));
    for part in ["etc", "run", "log"] {
        args.push_paths(
            "--bind",
            &launch.layout.root().join(part),
            &inside.join(part),
        );
    }
    for file in ["userdata.sh", "agent.json"] {
        args.push_paths(
            "--ro-bind",
            &launch.layout.root().join(file),
            &inside.join(file),
        );
    }
    args.push_paths("--ro-bind", launch.km_exe, Path::new(INSIDE_KM));
    for tool in [&launch.tools.sshd, &launch.tools.sftp_server] {
        if !SYSTEM_DIRS
            .iter()
            .any(|dir| *dir != "/etc" && tool.starts_with(dir))
        {
            args.push_paths("--ro-bind", tool, tool);
        }
    }
    // The root itself is a fresh tmpfs: read-only, so the home, /tmp and /var/tmp are the
    // only places a sandbox writes.
    args.push(["--remount-ro", "/"]);
    args.push([
        "--chdir",
        INSIDE_HOME,
        "--",
        INSIDE_KM,
        "__agent",
        launch.id,
    ]);
    args.push(["--dir", INSIDE_ROOT]);
    args.0
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push<const N: usize>(&mut self, words: [&str; N]) {
        self.0.extend(words.iter().map(OsString::from));
    }

    /// An option with one or two paths; an empty second path is left out.
    fn push_paths(&mut self, option: &str, first: &Path, second: &Path) {
        self.0.push(option.into());
        self.0.push(first.into());
        if !second.as_os_str().is_empty() {
            self.0.push(second.into());
        }
    }
}

/// Whether `cmdline` (NUL-separated, from `/proc/<pid>/cmdline`) is the agent of sandbox `id`
/// started inside its namespaces (not the bubblewrap processes that started it, whose own
/// command lines end the same way).
pub fn is_isolated_agent(cmdline: &[u8], id: &str) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.first() == Some(&INSIDE_KM.as_bytes())
        && args
            .windows(2)
            .any(|pair| pair[0] == b"__agent" && pair[1] == id.as_bytes())
        && args
            .windows(2)
            .any(|pair| pair[0] == b"--dir" && pair[1] == INSIDE_ROOT.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> SshdTools {
        SshdTools {
            sshd: "/usr/sbin/sshd".into(),
            sftp_server: "/h/openssh/sftp-server".into(),
        }
    }

    fn words(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn has(args: &[String], window: &[&str]) -> bool {
        args.windows(window.len()).any(|w| w == window)
    }

    #[test]
    fn the_agent_runs_as_the_sandbox_user_with_only_its_own_directory_writable() {
        let layout = SandboxLayout::new("/h/.km/sandboxes/sb-1");
        let hidden = [
            Hidden::File("/etc/shadow".into()),
            Hidden::Dir("/etc/ssl/private".into()),
        ];
        let launch = Launch {
            layout: &layout,
            id: "sb-1",
            km_exe: Path::new("/h/bin/km"),
            tools: &tools(),
            config: IsolationConfig {
                network: Network::Host,
            },
            hidden: &hidden,
            resolver: Some("/run/systemd/resolve/stub-resolv.conf".into()),
        };
        let args = words(&bwrap_args(&launch));
        assert!(has(
            &args,
            &["--unshare-user", "--uid", "1000", "--gid", "1000"]
        ));
        assert!(has(&args, &["--hostname", "sb-1"]));
        assert!(!args.contains(&"--unshare-net".to_owned()));
        assert!(has(&args, &["--ro-bind", "/dev/null", "/etc/shadow"]));
        assert!(has(&args, &["--tmpfs", "/etc/ssl/private"]));
        assert!(has(
            &args,
            &[
                "--ro-bind",
                "/h/.km/sandboxes/sb-1/outside/passwd",
                "/etc/passwd"
            ]
        ));
        assert!(has(
            &args,
            &["--bind", "/h/.km/sandboxes/sb-1/home", "/home/sandbox"]
        ));
        assert!(has(
            &args,
            &["--bind", "/h/.km/sandboxes/sb-1/run", "/run/km/run"]
        ));
        assert!(has(
            &args,
            &[
                "--ro-bind",
                "/h/.km/sandboxes/sb-1/agent.json",
                "/run/km/agent.json"
            ]
        ));
        assert!(has(&args, &["--ro-bind", "/h/bin/km", "/run/km/bin/km"]));
        // An sftp-server outside the system directories is bound in; a system sshd is not.
        assert!(has(
            &args,
            &[
                "--ro-bind",
                "/h/openssh/sftp-server",
                "/h/openssh/sftp-server"
            ]
        ));
        assert!(!has(
            &args,
            &["--ro-bind", "/usr/sbin/sshd", "/usr/sbin/sshd"]
        ));
        let resolver = "/run/systemd/resolve/stub-resolv.conf";
        let run_tmpfs = args.iter().position(|a| a == "/run").unwrap();
        let resolver_bind = args.iter().position(|a| a == resolver).unwrap();
        assert!(
            run_tmpfs < resolver_bind,
            "the resolver is bound over the fresh /run"
        );
        // Nothing binds the operator's home or the sandbox directory itself.
        assert!(
            !args
                .iter()
                .any(|a| a == "/h" || a == "/h/.km/sandboxes/sb-1")
        );
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("/h/.km/sandboxes/sb-1/outside")
                    && !a.ends_with("passwd")
                    && !a.ends_with("group"))
        );
        let tail: Vec<&str> = args[args.len() - 5..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            ["/run/km/bin/km", "__agent", "sb-1", "--dir", "/run/km"]
        );
        let launcher = format!("/usr/bin/bwrap\0{}", args.join("\0"));
        assert!(!is_isolated_agent(launcher.as_bytes(), "sb-1"));
        let agent = tail.join("\0");
        assert!(is_isolated_agent(agent.as_bytes(), "sb-1"));
        assert!(!is_isolated_agent(agent.as_bytes(), "sb-2"));
    }

    #[test]
    fn network_none_unshares_the_network() {
        let layout = SandboxLayout::new("/h/sb-2");
        let launch = Launch {
            layout: &layout,
            id: "sb-2",
            km_exe: Path::new("/usr/bin/km"),
            tools: &tools(),
            config: IsolationConfig {
                network: Network::None,
            },
            hidden: &[],
            resolver: None,
        };
        assert!(words(&bwrap_args(&launch)).contains(&"--unshare-net".to_owned()));
    }

    #[test]
    fn what_others_may_not_read_in_etc_is_hidden_and_nothing_else() {
        let etc = tempfile::tempdir().unwrap();
        let file = |name: &str, mode: u32| {
            let path = etc.path().join(name);
            fs::write(&path, "x").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        };
        fs::create_dir_all(etc.path().join("ssl/private")).unwrap();
        fs::create_dir_all(etc.path().join("ssh")).unwrap();
        fs::set_permissions(
            etc.path().join("ssl/private"),
            fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        file("shadow", 0o640);
        file("passwd", 0o644);
        file("ssh/ssh_host_ed25519_key", 0o600);
        file("ssh/ssh_host_ed25519_key.pub", 0o644);
        std::os::unix::fs::symlink("/nowhere", etc.path().join("link")).unwrap();
        let hidden = hidden_in(etc.path());
        assert_eq!(
            hidden,
            vec![
                Hidden::File(etc.path().join("shadow")),
                Hidden::File(etc.path().join("ssh/ssh_host_ed25519_key")),
                Hidden::Dir(etc.path().join("ssl/private")),
            ]
        );
    }

    #[test]
    fn the_fix_names_the_setting_that_refuses() {
        let apparmor = |name: &str| {
            (name == "kernel/apparmor_restrict_unprivileged_userns").then(|| "1".to_owned())
        };
        assert!(
            namespace_fix(&apparmor).contains("kernel.apparmor_restrict_unprivileged_userns=0")
        );
        let debian = |name: &str| (name == "kernel/unprivileged_userns_clone").then(|| "0".into());
        assert!(namespace_fix(&debian).contains("kernel.unprivileged_userns_clone=1"));
        let none = |name: &str| (name == "user/max_user_namespaces").then(|| "0".into());
        assert!(namespace_fix(&none).contains("user.max_user_namespaces"));
        assert!(namespace_fix(&|_| None).contains("seccomp"));
    }

    #[test]
    fn the_sandbox_user_has_its_own_passwd_entry() {
        assert!(passwd().contains("sandbox:x:1000:1000:km sandbox:/home/sandbox:"));
        assert!(group().contains("sandbox:x:1000:"));
    }
}

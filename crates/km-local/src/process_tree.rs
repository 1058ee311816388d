//! Finding and killing every process that belongs to a sandbox, through `/proc`.
//!
//! sshd puts each session in its own session with `setsid()`, so a process group is not
//! enough. The agent is a child subreaper, so orphans stay below it; and after a crash, any
//! process whose command line or environment names the sandbox directory is still found.
//!
//! `/proc` is Linux's: elsewhere these functions find nothing, and the local platform refuses
//! to create or resume sandboxes (see [`crate::platform`]), so nothing relies on them there.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `/proc/<pid>/<file>` as bytes; always `None` where there is no Linux `/proc`.
fn proc_file(pid: i32, file: &str) -> Option<Vec<u8>> {
    if cfg!(target_os = "linux") {
        fs::read(format!("/proc/{pid}/{file}")).ok()
    } else {
        None
    }
}

fn proc_stat(pid: i32) -> Option<String> {
    String::from_utf8(proc_file(pid, "stat")?).ok()
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = proc_stat(pid)?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn all_pids() -> Vec<i32> {
    if !cfg!(target_os = "linux") {
        return Vec::new();
    }
    fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every descendant of `root`.
pub fn descendants(root: i32) -> Vec<i32> {
    let parents: HashMap<i32, i32> = all_pids()
        .into_iter()
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (&pid, &ppid) in &parents {
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// Whether `pid` is a zombie.
pub fn is_zombie(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 2..].split_whitespace().next().map(|s| s == "Z"))
            .unwrap_or(false)
    })
}

/// The direct children of `parent`.
pub fn children(parent: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| parent_of(pid) == Some(parent))
        .collect()
}

/// Processes (other than this one) whose command line or environment names `sandbox_dir`.
pub fn referencing(sandbox_dir: &Path) -> Vec<i32> {
    let needle = sandbox_dir.as_os_str().as_encoded_bytes();
    let own = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&pid| pid != own)
        .filter(|pid| {
            ["cmdline", "environ"].iter().any(|file| {
                proc_file(*pid, file)
                    .is_some_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            })
        })
        .collect()
}

/// Whether `pid` is the agent of the sandbox in `sandbox_dir`: its arguments are km's hidden
/// `__agent` command with `--dir <sandbox_dir>`. A recorded PID is checked with this before
/// any signal, since after the agent died the number may belong to an unrelated process.
pub fn is_agent_of(pid: i32, sandbox_dir: &Path) -> bool {
    let Some(cmdline) = proc_file(pid, "cmdline") else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let dir = sandbox_dir.as_os_str().as_encoded_bytes();
    let unisolated = args.contains(&&b"__agent"[..])
        && args
            .windows(2)
            .any(|pair| pair[0] == b"--dir" && pair[1] == dir);
    unisolated
        || sandbox_dir
            .file_name()
            .and_then(|id| id.to_str())
            .is_some_and(|id| crate::isolation::is_isolated_agent(&cmdline, id))
}

/// A process named so that a reused PID is not mistaken for it: the PID plus the kernel's
/// record of when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessIdentity {
    /// The process ID.
    pub pid: i32,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub started: u64,
}

impl ProcessIdentity {
    /// This process.
    pub fn current() -> Option<Self> {
        let pid = std::process::id() as i32;
        Some(Self {
            pid,
            started: start_time(pid)?,
        })
    }

    /// Whether this very process still runs (not merely some process with its PID).
    pub fn is_alive(&self) -> bool {
        is_alive(self.pid) && start_time(self.pid) == Some(self.started)
    }
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = proc_stat(pid)?;
    // Fields after the command name: state is field 3, start time field 22.
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Sends SIGKILL to each pid, ignoring ones already gone.
pub fn kill_all(pids: &[i32]) {
    for &pid in pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn is_alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok() && !is_zombie(pid)
}

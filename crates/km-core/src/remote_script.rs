//! The scripts km runs inside a sandbox over the platform's command channel for VS Code
//! pre-flight, key install and read-back, and the parsers of what they print.
//!
//! The scripts run with `$HOME` set to the sandbox user's home on every platform; the only
//! platform-specific parts (how to tell sshd is up, where the host key is) are passed in.

use crate::userdata::shell_quote;

const SSHD: &str = "=== sshd ===";
const AUTHKEYS: &str = "=== authorized_keys ===";
const HOSTKEY: &str = "=== hostkey ===";
const READBACK: &str = "=== readback ===";
const SESSIONS: &str = "=== sessions ===";

/// What a pre-flight probe found in the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// Whether sshd can serve a connection.
    pub sshd_active: bool,
    /// The lines of `authorized_keys`, or `None` when the file is absent.
    pub authorized_keys: Option<Vec<String>>,
    /// The sandbox's host public key line, if readable.
    pub host_key: Option<String>,
}

/// Why a sandbox is not ready for VS Code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeProblem {
    /// No sshd and no authorized_keys: created without `vscodeEnabled: true`.
    NotEnabled,
    /// authorized_keys is there but sshd is not serving.
    SshdDown,
    /// sshd serves but authorized_keys is missing.
    Inconsistent,
}

impl Probe {
    /// Classifies the probe the way the rekey gate does.
    pub fn problem(&self) -> Option<ProbeProblem> {
        match (self.sshd_active, self.authorized_keys.is_some()) {
            (true, true) => None,
            (false, false) => Some(ProbeProblem::NotEnabled),
            (false, true) => Some(ProbeProblem::SshdDown),
            (true, false) => Some(ProbeProblem::Inconsistent),
        }
    }
}

/// A probe script: `sshd_check` is a shell condition that succeeds when sshd can serve, and
/// `host_key_path` is where the sandbox's host public key lives, as one shell word.
pub fn probe_script(sshd_check: &str, host_key_path: &str) -> String {
    format!(
        "echo '{SSHD}'\nif {sshd_check} >/dev/null 2>&1; then echo active; else echo inactive; fi\n\
         echo '{AUTHKEYS}'\nif [ -f \"$HOME/.ssh/authorized_keys\" ]; then echo present; cat \"$HOME/.ssh/authorized_keys\"; else echo absent; fi\n\
         echo '{HOSTKEY}'\ncat {host_key_path} 2>/dev/null || true\n"
    )
}

fn section<'a>(stdout: &'a str, header: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .skip_while(|line| *line != header)
        .skip(1)
        .take_while(|line| !line.starts_with("=== "))
        .collect()
}

/// Parses what [`probe_script`] printed.
pub fn parse_probe(stdout: &str) -> Probe {
    let sshd = section(stdout, SSHD);
    let keys = section(stdout, AUTHKEYS);
    let host = section(stdout, HOSTKEY);
    Probe {
        sshd_active: sshd.first() == Some(&"active"),
        authorized_keys: (keys.first() == Some(&"present")).then(|| {
            keys[1..]
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| (*l).to_owned())
                .collect()
        }),
        host_key: host
            .first()
            .filter(|l| !l.is_empty())
            .map(|l| (*l).to_owned()),
    }
}

/// Removes the `authorized_keys` lines whose comment is one of `comments` and appends
/// `new_line` (when given), atomically, then prints back the lines with `comments`.
/// Every other operator's line is kept.
pub fn install_key_script(comments: &[&str], new_line: Option<&str>) -> String {
    let append = match new_line {
        Some(line) => format!("printf '%s\\n' {} >> \"$tmp\"\n", shell_quote(line)),
        None => String::new(),
    };
    let mine = comments
        .iter()
        .map(|c| format!("$NF == {}", awk_string(c)))
        .collect::<Vec<_>>()
        .join(" || ");
    let mine = if mine.is_empty() {
        "0".to_owned()
    } else {
        mine
    };
    format!(
        "set -eu\numask 077\nmkdir -p \"$HOME/.ssh\"\nf=\"$HOME/.ssh/authorized_keys\"\n\
         tmp=\"$f.km-$$\"\n: > \"$tmp\"\n\
         if [ -f \"$f\" ]; then awk {keep} \"$f\" >> \"$tmp\"; fi\n\
         {append}chmod 600 \"$tmp\"\nmv -f \"$tmp\" \"$f\"\n\
         echo '{READBACK}'\nawk {show} \"$f\"\n",
        keep = shell_quote(&format!("!({mine})")),
        show = shell_quote(&mine),
    )
}

/// Removes the `authorized_keys` lines whose key is `key_material` (`type base64`), then
/// ends the sessions that logged in with it: sshd (with `ExposeAuthInfo yes`) names each
/// session's key in the file `$SSH_USER_AUTH`, which every process of the session inherits.
/// Prints how many lines are left and the PIDs it stopped.
pub fn revoke_key_script(key_material: &str) -> String {
    // The base64 field alone identifies the key, in authorized_keys and in $SSH_USER_AUTH.
    let material = shell_quote(key_material.split_whitespace().last().unwrap_or_default());
    format!(
        "set -eu\numask 077\nf=\"$HOME/.ssh/authorized_keys\"\nk={material}\n\
         tmp=\"$f.km-$$\"\n\
         awk -v k=\"$k\" '{{ for (i = 1; i <= NF; i++) if ($i == k) next; print }}' \"$f\" > \"$tmp\"\n\
         chmod 600 \"$tmp\"\nmv -f \"$tmp\" \"$f\"\n\
         echo '{READBACK}'\ngrep -c -F -e \"$k\" \"$f\" || true\n\
         echo '{SESSIONS}'\n\
         for environ in /proc/[0-9]*/environ; do\n\
         \x20 pid=${{environ#/proc/}}; pid=${{pid%/environ}}\n\
         \x20 auth=$(tr '\\0' '\\n' < \"$environ\" 2>/dev/null | sed -n 's/^SSH_USER_AUTH=//p') || continue\n\
         \x20 [ -n \"$auth\" ] && [ -r \"$auth\" ] && grep -q -F -e \"$k\" \"$auth\" || continue\n\
         \x20 parent=$(sed -n 's/^PPid:[[:space:]]*//p' \"/proc/$pid/status\" 2>/dev/null) || parent=\n\
         \x20 if [ -n \"$parent\" ] && grep -q '^sshd' \"/proc/$parent/comm\" 2>/dev/null; then kill -TERM \"$parent\" 2>/dev/null && echo \"$parent\" || true; fi\n\
         \x20 kill -TERM \"$pid\" 2>/dev/null && echo \"$pid\" || true\n\
         done\n"
    )
}

/// What [`revoke_key_script`] reported: lines still holding the key, and sessions stopped.
pub fn parse_revoke(stdout: &str) -> (usize, Vec<u32>) {
    let left = section(stdout, READBACK)
        .first()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(usize::MAX);
    let stopped = section(stdout, SESSIONS)
        .iter()
        .filter_map(|pid| pid.trim().parse().ok())
        .collect();
    (left, stopped)
}

/// `text` as an awk string literal (km's comments never hold quotes or backslashes; they are
/// escaped anyway).
fn awk_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The line printed back by [`install_key_script`], if any.
pub fn parse_readback(stdout: &str) -> Option<String> {
    section(stdout, READBACK)
        .first()
        .map(|line| line.trim().to_owned())
        .filter(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output_parses() {
        let out = "=== sshd ===\nactive\n=== authorized_keys ===\npresent\nssh-ed25519 AAA km-sb-1\nssh-ed25519 BBB other\n=== hostkey ===\nssh-ed25519 HHH host\n";
        let probe = parse_probe(out);
        assert!(probe.sshd_active);
        assert_eq!(
            probe.authorized_keys.as_deref().map(<[String]>::len),
            Some(2)
        );
        assert_eq!(probe.host_key.as_deref(), Some("ssh-ed25519 HHH host"));
        assert_eq!(probe.problem(), None);
    }

    #[test]
    fn probe_problems_follow_the_rekey_gate() {
        let none = parse_probe("=== sshd ===\ninactive\n=== authorized_keys ===\nabsent\n");
        assert_eq!(none.problem(), Some(ProbeProblem::NotEnabled));
        let down = parse_probe("=== sshd ===\ninactive\n=== authorized_keys ===\npresent\n");
        assert_eq!(down.problem(), Some(ProbeProblem::SshdDown));
        let odd = parse_probe("=== sshd ===\nactive\n=== authorized_keys ===\nabsent\n");
        assert_eq!(odd.problem(), Some(ProbeProblem::Inconsistent));
    }

    #[test]
    fn readback_is_the_line_after_the_marker() {
        assert_eq!(
            parse_readback("=== readback ===\nssh-ed25519 X km-a\n").as_deref(),
            Some("ssh-ed25519 X km-a")
        );
        assert_eq!(parse_readback("=== readback ===\n"), None);
    }
}

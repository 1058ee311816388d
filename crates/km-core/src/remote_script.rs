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

    /// The `authorized_keys` line that carries `comment` as its last field.
    pub fn key_line_for(&self, comment: &str) -> Option<&str> {
        self.authorized_keys
            .as_ref()?
            .iter()
            .map(String::as_str)
            .find(|line| line.split_whitespace().last() == Some(comment))
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

/// Replaces only the `authorized_keys` line whose comment is `comment` with `new_line`
/// (or removes it when `new_line` is `None`), atomically, then prints that line back.
/// Other operators' lines are kept.
pub fn install_key_script(comment: &str, new_line: Option<&str>) -> String {
    let append = match new_line {
        Some(line) => format!("printf '%s\\n' {} >> \"$tmp\"\n", shell_quote(line)),
        None => String::new(),
    };
    format!(
        "set -eu\numask 077\nmkdir -p \"$HOME/.ssh\"\nf=\"$HOME/.ssh/authorized_keys\"\n\
         tmp=\"$f.km-$$\"\n: > \"$tmp\"\n\
         if [ -f \"$f\" ]; then awk -v c={c} '$NF != c' \"$f\" >> \"$tmp\"; fi\n\
         {append}chmod 600 \"$tmp\"\nmv -f \"$tmp\" \"$f\"\n\
         echo '{READBACK}'\nawk -v c={c} '$NF == c' \"$f\"\n",
        c = shell_quote(comment),
    )
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
            probe.key_line_for("km-sb-1"),
            Some("ssh-ed25519 AAA km-sb-1")
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

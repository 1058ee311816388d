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

/// Whether [`probe_script`] ran to its last section (its output is a whole report).
pub fn probe_completed(stdout: &str) -> bool {
    stdout.lines().any(|line| line == HOSTKEY)
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

/// Removes exactly `lines` from `authorized_keys` (every line km read that carries the key
/// being revoked, whatever its options or comment), then ends this sandbox's sessions that
/// logged in with the key whose base64 blob is `blob`, and prints what is left of the file.
///
/// A session is found by `$SSH_USER_AUTH` (sshd's `ExposeAuthInfo yes` names the session's key
/// in that file, which its processes inherit) and ended whole: its sshd process, everything
/// below it, every process of its login session (`setsid` by sshd) and every process carrying
/// the same auth file. Only descendants of `sessions_root` (a shell word: the PID under which
/// this sandbox's sessions run) are looked at, never the script's own ancestry. What did not
/// end, and processes whose auth file is gone so their key cannot be told, are reported.
pub fn revoke_key_script(lines: &[String], blob: &str, sessions_root: &str) -> String {
    // An empty pattern file matches nothing; `printf` with no lines would write one empty
    // pattern, which matches every line.
    let drop_lines = if lines.is_empty() {
        ": > \"$drop\"".to_owned()
    } else {
        let quoted: Vec<String> = lines.iter().map(|line| shell_quote(line)).collect();
        format!("printf '%s\\n' {} > \"$drop\"", quoted.join(" "))
    };
    format!(
        "set -eu\numask 077\nf=\"$HOME/.ssh/authorized_keys\"\nk={blob}\nroot={sessions_root}\n\
         drop=\"$f.km-drop-$$\"\ntmp=\"$f.km-$$\"\n\
         {drop_lines}\n\
         if [ -f \"$f\" ]; then grep -v -x -F -f \"$drop\" \"$f\" > \"$tmp\" || [ $? -eq 1 ]; else : > \"$tmp\"; fi\n\
         rm -f \"$drop\"\nchmod 600 \"$tmp\"\nmv -f \"$tmp\" \"$f\"\n\
         echo '{SESSIONS}'\n{END_SESSIONS}\
         echo '{READBACK}'\ncat \"$f\"\n",
        blob = shell_quote(blob),
    )
}

/// The session-ending part of [`revoke_key_script`]: `$k` is the key's blob, `$root` the PID
/// whose descendants are this sandbox's processes. Prints `ended PID`, `survived PID COMM` and
/// `unknown PID COMM` lines.
const END_SESSIONS: &str = r#"table=$(for s in /proc/[0-9]*/stat; do
  { read -r line < "$s"; } 2>/dev/null || continue
  p=${s#/proc/}; p=${p%/stat}
  comm=${line#*(}; comm=${comm%)*}
  case $comm in sshd*) comm=sshd ;; *) comm=other ;; esac
  rest=${line##*) }
  # shellcheck disable=SC2086
  set -- $rest
  printf '%s %s %s %s\n' "$p" "$2" "$4" "$comm"
done)
scope=$(printf '%s\n' "$table" | awk -v root="$root" -v self="$$" '
  { parent[$1] = $2 }
  END {
    for (p in parent) {
      q = p; n = 0
      while (q != "" && q != root && q > 1 && n < 4096) { if (q == self) break; q = parent[q]; n++ }
      if (q == root && p != root) {
        a = self; mine = 0
        while (a != "" && a > 1) { if (a == p) { mine = 1; break }; a = parent[a] }
        if (!mine) print p
      }
    }
  }')
auths=$(for p in $scope; do
  auth=$( { tr '\0' '\n' < "/proc/$p/environ"; } 2>/dev/null | sed -n 's/^SSH_USER_AUTH=//p' | head -n 1) || continue
  [ -n "$auth" ] || continue
  if [ -r "$auth" ]; then
    if awk -v k="$k" '$1 == "publickey" && $3 == k { found = 1 } END { exit !found }' "$auth" 2>/dev/null; then
      printf 'hit %s %s\n' "$p" "$auth"
    else
      printf 'other %s %s\n' "$p" "$auth"
    fi
  else
    printf 'lost %s %s\n' "$p" "$auth"
  fi
done)
victims=$( { printf '%s\n' "$table" | sed 's/^/proc /'; printf 'scope %s\n' $scope; printf '%s\n' "$auths"; } | awk '
  $1 == "proc" { parent[$2] = $3; sid[$2] = $4; comm[$2] = $5; next }
  $1 == "scope" { inscope[$2] = 1; next }
  $1 == "hit" || $1 == "other" || $1 == "lost" { auth[$2] = $3; if ($1 == "hit") { hit[$2] = 1; hitauth[$3] = 1 } }
  END {
    for (p in hit) {
      a = parent[p]
      while (a != "" && inscope[a] && comm[a] != "sshd") a = parent[a]
      if (a != "" && inscope[a]) top[a] = 1
      if (comm[sid[p]] != "sshd" && inscope[sid[p]]) session[sid[p]] = 1
    }
    for (p in inscope) {
      take = (p in top) || (p in hit) || ((p in auth) && (auth[p] in hitauth)) || (sid[p] in session)
      q = parent[p]
      while (!take && q != "" && inscope[q]) { if (q in top) take = 1; q = parent[q] }
      if (take) print p
    }
  }')
for p in $victims; do kill -TERM "$p" 2>/dev/null || true; done
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
tries=0
left=
while [ "$tries" -lt 30 ]; do
  left=
  for p in $victims; do if alive "$p"; then left="$left $p"; fi; done
  [ -n "$left" ] || break
  tries=$((tries + 1))
  sleep 0.1
done
for p in $left; do kill -KILL "$p" 2>/dev/null || true; done
[ -z "$left" ] || sleep 0.3
for p in $victims; do
  if alive "$p"; then printf 'survived %s %s\n' "$p" "$(cat "/proc/$p/comm" 2>/dev/null)"; else printf 'ended %s\n' "$p"; fi
done
printf '%s\n' "$auths" | while read -r kind p _; do
  [ "$kind" = lost ] || continue
  case " $victims " in *" $p "*) continue ;; esac
  if alive "$p"; then printf 'unknown %s %s\n' "$p" "$(cat "/proc/$p/comm" 2>/dev/null)"; fi
done
"#;

/// What [`revoke_key_script`] reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokeReport {
    /// The lines of `authorized_keys` after the removal, `None` if the script never got there.
    pub remaining: Option<Vec<String>>,
    /// Processes of the key's sessions that ended.
    pub ended: Vec<u32>,
    /// Processes of the key's sessions still running after SIGTERM and SIGKILL, with their name.
    pub survived: Vec<(u32, String)>,
    /// Processes of ended sessions whose key cannot be told (their auth file is gone).
    pub unknown: Vec<(u32, String)>,
}

/// Parses what [`revoke_key_script`] printed.
pub fn parse_revoke(stdout: &str) -> RevokeReport {
    let mut report = RevokeReport::default();
    for line in section(stdout, SESSIONS) {
        let mut fields = line.splitn(3, ' ');
        let (kind, pid, name) = (fields.next(), fields.next(), fields.next());
        let Some(pid) = pid.and_then(|p| p.trim().parse().ok()) else {
            continue;
        };
        let name = name.unwrap_or_default().trim().to_owned();
        match kind {
            Some("ended") => report.ended.push(pid),
            Some("survived") => report.survived.push((pid, name)),
            Some("unknown") => report.unknown.push((pid, name)),
            _ => {}
        }
    }
    // The file comes last and is read to the end, whatever its lines look like.
    report.remaining = stdout
        .split_once(&format!("{READBACK}\n"))
        .map(|(_, rest)| rest.lines().map(str::to_owned).collect());
    report
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
    fn only_a_whole_probe_report_counts() {
        assert!(probe_completed(
            "=== sshd ===\nactive\n=== authorized_keys ===\nabsent\n=== hostkey ===\n"
        ));
        assert!(!probe_completed(""));
        assert!(!probe_completed("=== sshd ===\ninactive\n"));
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

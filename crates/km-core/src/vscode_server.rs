//! The VS Code server in a sandbox that cannot download it: the commit and architecture it is
//! named by, its tarball's name and official address, and the scripts that look for it and put
//! it where Remote-SSH looks (`~/.vscode-server/bin/<commit>/`, and the newer
//! `~/.vscode-server/cli/servers/Stable-<commit>/server/`).
//!
//! Placing is all or nothing: the tarball is unpacked into a staging directory beside the
//! destination, checked (its `product.json` names the commit, its top directory the
//! architecture), and renamed into place; anything wrong leaves no directory behind.

use std::fmt;
use std::str::FromStr;

use crate::userdata::shell_quote;

/// A VS Code build's commit: 40 lowercase hex digits (`code --version`'s second line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit(String);

impl FromStr for Commit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.len() == 40 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!(
                "{text:?} is not a VS Code commit (40 lowercase hex digits, the second line of `code --version`)"
            ))
        }
    }
}

impl fmt::Display for Commit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The server's architectures, in VS Code's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X64,
    Arm64,
}

impl Arch {
    /// VS Code's name (`x64`, `arm64`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::X64 => "x64",
            Self::Arm64 => "arm64",
        }
    }

    /// From `uname -m` as a sandbox reports it.
    pub fn of_machine(machine: &str) -> Option<Self> {
        match machine.trim() {
            "x86_64" | "amd64" => Some(Self::X64),
            "aarch64" | "arm64" => Some(Self::Arm64),
            _ => None,
        }
    }
}

impl FromStr for Arch {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "x64" => Ok(Self::X64),
            "arm64" => Ok(Self::Arm64),
            other => Err(format!("{other:?} is not x64 or arm64")),
        }
    }
}

/// The tarball's file name, as km caches it.
pub fn tarball_name(commit: &Commit, arch: Arch) -> String {
    format!("vscode-server-linux-{}-{commit}.tar.gz", arch.as_str())
}

/// Where Microsoft publishes the server for `commit`.
pub fn download_url(commit: &Commit, arch: Arch) -> String {
    format!(
        "https://update.code.visualstudio.com/commit:{commit}/server-linux-{}/stable",
        arch.as_str()
    )
}

/// What a sandbox said about itself and the server (see [`survey_script`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survey {
    /// `uname -m`.
    pub machine: String,
    /// Free space in the home directory, in KiB.
    pub free_kib: u64,
    /// Both layouts hold this commit's server already.
    pub present: bool,
}

/// Prints the machine, the free space of `$HOME` and whether the server for `commit` is in
/// place in both layouts.
pub fn survey_script(commit: &Commit) -> String {
    format!(
        "commit={commit}\n\
         base=\"$HOME/.vscode-server\"\n\
         echo \"machine=$(uname -m)\"\n\
         echo \"free_kib=$(df -Pk \"$HOME\" | awk 'NR == 2 {{ print $4 }}')\"\n\
         if grep -qs \"$commit\" \"$base/bin/$commit/product.json\" && grep -qs \"$commit\" \"$base/cli/servers/Stable-$commit/server/product.json\"; then\n\
           echo present=yes\n\
         else\n\
           echo present=no\n\
         fi\n",
        commit = shell_quote(&commit.0),
    )
}

/// Reads [`survey_script`]'s output.
pub fn parse_survey(stdout: &str) -> Option<Survey> {
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
    };
    Some(Survey {
        machine: value("machine")?.to_owned(),
        free_kib: value("free_kib")?.trim().parse().ok()?,
        present: value("present")? == "yes",
    })
}

/// How [`place_script`] ends when it refuses (its exit status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The stream was not a readable gzip'd tar.
    Unreadable = 3,
    /// No `product.json` in a top directory.
    NotAServer = 4,
    /// `product.json` names another commit.
    OtherCommit = 5,
    /// The top directory names another architecture.
    OtherArch = 6,
}

impl Refusal {
    /// The refusal an exit status stands for.
    pub fn of_status(code: i32) -> Option<Self> {
        [
            Self::Unreadable,
            Self::NotAServer,
            Self::OtherCommit,
            Self::OtherArch,
        ]
        .into_iter()
        .find(|r| *r as i32 == code)
    }
}

/// Unpacks the tarball on stdin into a staging directory, checks it is `commit`'s server for
/// `arch`, and renames it into both layouts (a layout already in place is kept). Prints
/// `found=<what>` before a refusal, and `placed` at the end.
pub fn place_script(commit: &Commit, arch: Arch) -> String {
    format!(
        r#"set -eu
commit={commit}
arch={arch}
base="$HOME/.vscode-server"
mkdir -p "$base/bin" "$base/cli/servers"
stage=$(mktemp -d "$base/.km-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
if ! tar -xzf - -C "$stage" 2>/dev/null; then
  exit {unreadable}
fi
top=""
for dir in "$stage"/*/; do
  if [ -f "${{dir}}product.json" ]; then top=${{dir%/}}; break; fi
done
if [ -z "$top" ]; then
  exit {not_a_server}
fi
found=$(sed -n 's/.*"commit"[[:space:]]*:[[:space:]]*"\([0-9a-f]*\)".*/\1/p' "$top/product.json" | head -n 1)
if [ "$found" != "$commit" ]; then
  echo "found=$found"
  exit {other_commit}
fi
name=$(basename "$top")
case "$name" in
  *-linux-"$arch") ;;
  *) echo "found=$name"; exit {other_arch} ;;
esac
legacy="$base/bin/$commit"
cli="$base/cli/servers/Stable-$commit/server"
if [ ! -f "$cli/product.json" ]; then
  rm -rf "$cli"
  mkdir -p "$(dirname "$cli")"
  cp -a "$top" "$stage/cli"
  mv -T "$stage/cli" "$cli"
fi
if [ ! -f "$legacy/product.json" ]; then
  rm -rf "$legacy"
  mv -T "$top" "$legacy"
fi
echo placed
"#,
        commit = shell_quote(&commit.0),
        arch = shell_quote(arch.as_str()),
        unreadable = Refusal::Unreadable as i32,
        not_a_server = Refusal::NotAServer as i32,
        other_commit = Refusal::OtherCommit as i32,
        other_arch = Refusal::OtherArch as i32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn commits_are_forty_lowercase_hex_digits() {
        assert_eq!(C.parse::<Commit>().unwrap().to_string(), C);
        assert!(format!("{C}\n").parse::<Commit>().is_ok());
        for bad in [
            "",
            "0123",
            &C.to_uppercase(),
            &format!("{C}0"),
            "'; rm -rf ~ #",
        ] {
            assert!(bad.parse::<Commit>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_and_addresses_follow_vs_codes() {
        let commit: Commit = C.parse().unwrap();
        assert_eq!(
            tarball_name(&commit, Arch::Arm64),
            format!("vscode-server-linux-arm64-{C}.tar.gz")
        );
        assert_eq!(
            download_url(&commit, Arch::X64),
            format!("https://update.code.visualstudio.com/commit:{C}/server-linux-x64/stable")
        );
        assert_eq!(Arch::of_machine("x86_64\n"), Some(Arch::X64));
        assert_eq!(Arch::of_machine("aarch64"), Some(Arch::Arm64));
        assert_eq!(Arch::of_machine("riscv64"), None);
    }

    #[test]
    fn a_survey_is_read_back_and_a_partial_one_is_not() {
        let survey = parse_survey("machine=x86_64\nfree_kib=1024\npresent=no\n").unwrap();
        assert_eq!(survey.machine, "x86_64");
        assert_eq!(survey.free_kib, 1024);
        assert!(!survey.present);
        assert!(parse_survey("machine=x86_64\n").is_none());
        assert_eq!(Refusal::of_status(5), Some(Refusal::OtherCommit));
        assert_eq!(Refusal::of_status(1), None);
    }
}

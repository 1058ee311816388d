//! The `~/.ssh/config` managed-block editor: pure `text → text`, never loses a byte.
//!
//! km owns the lines between its BEGIN and END markers and nothing else. A new block goes at
//! the very top of the file, because OpenSSH keeps the first value it meets for each option:
//! above the user's `Host *` or top-level options, km's values win for `km-<id>` hosts. The
//! block ends with a `Host *` line so the user's content after it applies to every host again,
//! exactly as it did before km wrote. Malformed markers are refused, never repaired by guess.

use std::fmt::Write as _;

/// The first line of the managed block.
pub const BEGIN_MARKER: &str = "# BEGIN km vscode hosts (managed; do not edit between markers)";
/// The last line of the managed block.
pub const END_MARKER: &str = "# END km vscode hosts";
const BEGIN_PREFIX: &str = "# BEGIN km vscode hosts";
const END_PREFIX: &str = "# END km vscode hosts";
const HANDBACK_COMMENT: &str = "# km: the next line gives the rest of this file back to every host";
const HANDBACK_HOST: &str = "Host *";

/// Why a config file cannot be edited safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// A BEGIN marker has no END marker after it.
    #[error("line {begin_line}: `{BEGIN_PREFIX}` has no matching `{END_PREFIX}` after it")]
    Unterminated {
        /// 1-based line of the BEGIN marker.
        begin_line: usize,
    },
    /// An END marker comes before any BEGIN marker.
    #[error("line {end_line}: `{END_PREFIX}` comes before any `{BEGIN_PREFIX}`")]
    EndBeforeBegin {
        /// 1-based line of the END marker.
        end_line: usize,
    },
    /// There are two managed blocks.
    #[error(
        "lines {first_line} and {second_line}: two `{BEGIN_PREFIX}` markers; km manages one block"
    )]
    Duplicate {
        /// 1-based line of the first BEGIN marker.
        first_line: usize,
        /// 1-based line of the second BEGIN marker.
        second_line: usize,
    },
    /// A value cannot be written into ssh_config safely.
    #[error(
        "{0:?} cannot be written into an ssh config (it contains a quote, newline or control character)"
    )]
    UnsafeValue(String),
}

/// One `Host` entry that km writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// The `Host` pattern: always a single validated alias such as `km-sb-1a2b3c4d`.
    pub alias: String,
    /// Option names and rendered values, in order.
    pub options: Vec<(String, String)>,
}

impl HostEntry {
    /// Starts an entry for `alias`.
    pub fn new(alias: impl Into<String>) -> Self {
        Self {
            alias: alias.into(),
            options: Vec::new(),
        }
    }

    /// Adds a plain option (a number, a word or an alias).
    pub fn option(mut self, name: &str, value: impl Into<String>) -> Self {
        self.options.push((name.to_owned(), value.into()));
        self
    }

    /// Adds a path option: `%` is escaped because ssh expands `%` tokens in paths, and the
    /// value is quoted when it contains spaces.
    pub fn path_option(self, name: &str, path: &str) -> Result<Self, BlockError> {
        Ok(self.option(name, path_value(path)?))
    }

    fn render_lines(&self) -> Vec<String> {
        let mut lines = vec![format!("Host {}", self.alias)];
        lines.extend(
            self.options
                .iter()
                .map(|(name, value)| format!("  {name} {value}")),
        );
        lines
    }
}

/// A path as an ssh option value (in a config file or after `-o`): `%` escaped, since ssh
/// expands `%` tokens in paths, and quoted when it contains spaces.
pub fn path_value(path: &str) -> Result<String, BlockError> {
    quote_value(&path.replace('%', "%%"))
}

/// Quotes a value for ssh_config when it contains whitespace; refuses what cannot be quoted.
pub fn quote_value(value: &str) -> Result<String, BlockError> {
    if value.is_empty() || value.chars().any(|c| c == '"' || c.is_control()) {
        return Err(BlockError::UnsafeValue(value.to_owned()));
    }
    if value.chars().any(char::is_whitespace) {
        Ok(format!("\"{value}\""))
    } else {
        Ok(value.to_owned())
    }
}

/// A line split from its ending, with its byte offset.
struct Line<'a> {
    start: usize,
    content: &'a str,
    end: usize,
}

fn split_lines(text: &str) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let end = text[start..]
            .find('\n')
            .map_or(text.len(), |i| start + i + 1);
        let content = text[start..end]
            .trim_end_matches('\n')
            .trim_end_matches('\r');
        lines.push(Line {
            start,
            content,
            end,
        });
        start = end;
    }
    lines
}

/// The managed block's position in a file.
struct Block {
    start: usize,
    end: usize,
    first_inner_line: usize,
    end_line: usize,
}

fn locate_block(lines: &[Line<'_>]) -> Result<Option<Block>, BlockError> {
    let mut begin: Option<usize> = None;
    let mut found: Option<(usize, usize)> = None;
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.content.trim();
        if trimmed.starts_with(BEGIN_PREFIX) {
            if let Some(first) = begin.or(found.map(|(b, _)| b)) {
                return Err(BlockError::Duplicate {
                    first_line: first + 1,
                    second_line: index + 1,
                });
            }
            begin = Some(index);
        } else if trimmed.starts_with(END_PREFIX) {
            match begin.take() {
                Some(b) => {
                    if found.is_some() {
                        return Err(BlockError::EndBeforeBegin {
                            end_line: index + 1,
                        });
                    }
                    found = Some((b, index));
                }
                None => {
                    return Err(BlockError::EndBeforeBegin {
                        end_line: index + 1,
                    });
                }
            }
        }
    }
    if let Some(b) = begin {
        return Err(BlockError::Unterminated { begin_line: b + 1 });
    }
    Ok(found.map(|(b, e)| Block {
        start: lines[b].start,
        end: lines[e].end,
        first_inner_line: b + 1,
        end_line: e,
    }))
}

/// One entry as found inside the block: its alias and its raw lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundEntry {
    /// The first pattern of the `Host` line.
    pub alias: String,
    /// The entry's lines, without line endings, `Host` line first.
    pub lines: Vec<String>,
}

fn host_line_alias(content: &str) -> Option<String> {
    let trimmed = content.trim();
    let (keyword, rest) = trimmed.split_once(|c: char| c.is_whitespace() || c == '=')?;
    if !keyword.eq_ignore_ascii_case("host") {
        return None;
    }
    rest.trim_start_matches(|c: char| c.is_whitespace() || c == '=')
        .split_whitespace()
        .next()
        .map(str::to_owned)
}

fn entries_in(lines: &[Line<'_>], block: &Block) -> Vec<FoundEntry> {
    let mut entries: Vec<FoundEntry> = Vec::new();
    let mut in_entry = false;
    for line in &lines[block.first_inner_line..block.end_line] {
        match host_line_alias(line.content) {
            Some(alias) if alias == "*" => in_entry = false,
            Some(alias) => {
                entries.push(FoundEntry {
                    alias,
                    lines: vec![line.content.to_owned()],
                });
                in_entry = true;
            }
            None if in_entry => {
                if let Some(entry) = entries.last_mut() {
                    let trimmed = line.content.trim();
                    if !trimmed.is_empty() && !trimmed.starts_with('#') {
                        entry.lines.push(line.content.to_owned());
                    }
                }
            }
            None => {}
        }
    }
    entries
}

/// Lists the entries in the managed block (empty when there is none).
pub fn parse_entries(text: &str) -> Result<Vec<FoundEntry>, BlockError> {
    let lines = split_lines(text);
    Ok(match locate_block(&lines)? {
        Some(block) => entries_in(&lines, &block),
        None => Vec::new(),
    })
}

fn line_ending_of(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if i > 0 && text.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

fn render_block(entries: &[FoundEntry], eol: &str) -> String {
    let mut out = String::new();
    let _ = write!(out, "{BEGIN_MARKER}{eol}");
    for entry in entries {
        for line in &entry.lines {
            let _ = write!(out, "{line}{eol}");
        }
    }
    let _ = write!(
        out,
        "{HANDBACK_COMMENT}{eol}{HANDBACK_HOST}{eol}{END_MARKER}{eol}"
    );
    out
}

/// Inserts or replaces the entry for `entry.alias`; everything outside the block is kept byte
/// for byte. A file without a block gets one at the top.
pub fn upsert(text: &str, entry: &HostEntry) -> Result<String, BlockError> {
    let lines = split_lines(text);
    let block = locate_block(&lines)?;
    let eol = line_ending_of(text);
    let fresh = FoundEntry {
        alias: entry.alias.clone(),
        lines: entry.render_lines(),
    };
    match block {
        Some(block) => {
            let mut entries = entries_in(&lines, &block);
            match entries.iter().position(|e| e.alias == entry.alias) {
                Some(at) => entries[at] = fresh,
                None => entries.push(fresh),
            }
            let mut seen_once = false;
            entries.retain(|e| {
                if e.alias != entry.alias {
                    return true;
                }
                let keep = !seen_once;
                seen_once = true;
                keep
            });
            Ok(splice(text, &block, &render_block(&entries, eol)))
        }
        None => Ok(format!("{}{text}", render_block(&[fresh], eol))),
    }
}

/// Removes every entry for `alias`; when none is left the whole block goes, restoring the
/// file to what it was before km first wrote to it.
pub fn remove(text: &str, alias: &str) -> Result<String, BlockError> {
    let lines = split_lines(text);
    let Some(block) = locate_block(&lines)? else {
        return Ok(text.to_owned());
    };
    let mut entries = entries_in(&lines, &block);
    let before = entries.len();
    entries.retain(|e| e.alias != alias);
    if entries.len() == before {
        return Ok(text.to_owned());
    }
    let replacement = if entries.is_empty() {
        String::new()
    } else {
        render_block(&entries, line_ending_of(text))
    };
    Ok(splice(text, &block, &replacement))
}

fn splice(text: &str, block: &Block, replacement: &str) -> String {
    let mut out = String::with_capacity(text.len() + replacement.len());
    out.push_str(&text[..block.start]);
    out.push_str(replacement);
    out.push_str(&text[block.end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(alias: &str, port: u16) -> HostEntry {
        HostEntry::new(alias)
            .option("HostName", "127.0.0.1")
            .option("Port", port.to_string())
    }

    const USER: &str = "Host *\n  User everyone\n\nHost work\n  HostName work.example\n";

    #[test]
    fn upsert_into_empty_file_makes_a_block() {
        let out = upsert("", &entry("km-a", 2222)).unwrap();
        assert_eq!(
            out,
            format!(
                "{BEGIN_MARKER}\nHost km-a\n  HostName 127.0.0.1\n  Port 2222\n{HANDBACK_COMMENT}\nHost *\n{END_MARKER}\n"
            )
        );
    }

    #[test]
    fn block_goes_on_top_and_user_bytes_follow_untouched() {
        let out = upsert(USER, &entry("km-a", 2222)).unwrap();
        assert!(out.starts_with(BEGIN_MARKER));
        assert!(out.ends_with(USER));
    }

    #[test]
    fn upsert_replaces_in_place_and_keeps_others() {
        let one = upsert(USER, &entry("km-a", 1)).unwrap();
        let two = upsert(&one, &entry("km-b", 2)).unwrap();
        let three = upsert(&two, &entry("km-a", 3)).unwrap();
        let entries = parse_entries(&three).unwrap();
        let aliases: Vec<_> = entries.iter().map(|e| e.alias.as_str()).collect();
        assert_eq!(aliases, ["km-a", "km-b"]);
        assert!(entries[0].lines.contains(&"  Port 3".to_owned()));
        assert!(three.ends_with(USER));
        assert_eq!(
            upsert(&three, &entry("km-a", 3)).unwrap(),
            three,
            "idempotent"
        );
    }

    #[test]
    fn removing_the_last_entry_restores_the_original_bytes() {
        for original in [USER, "", "Host x\r\n  Port 1", "no newline at end"] {
            let with = upsert(original, &entry("km-a", 1)).unwrap();
            let with_two = upsert(&with, &entry("km-b", 1)).unwrap();
            let minus_b = remove(&with_two, "km-b").unwrap();
            assert_eq!(minus_b, with);
            assert_eq!(remove(&minus_b, "km-a").unwrap(), original);
        }
    }

    #[test]
    fn crlf_files_stay_crlf() {
        let original = "Host x\r\n  Port 1\r\n";
        let out = upsert(original, &entry("km-a", 1)).unwrap();
        assert!(
            !out.replace("\r\n", "").contains('\n'),
            "only CRLF endings: {out:?}"
        );
        assert!(out.ends_with(original));
    }

    #[test]
    fn a_block_the_user_moved_is_edited_where_it_is() {
        let with = upsert("", &entry("km-a", 1)).unwrap();
        let moved = format!("Host first\n  Port 9\n{with}# tail\n");
        let out = upsert(&moved, &entry("km-b", 2)).unwrap();
        assert!(out.starts_with("Host first\n  Port 9\n"));
        assert!(out.ends_with("# tail\n"));
    }

    #[test]
    fn malformed_markers_are_refused_with_line_numbers() {
        let begin_only = format!("Host x\n{BEGIN_MARKER}\nHost km-a\n");
        assert_eq!(
            upsert(&begin_only, &entry("km-a", 1)),
            Err(BlockError::Unterminated { begin_line: 2 })
        );
        let end_first = format!("{END_MARKER}\n{BEGIN_MARKER}\n{END_MARKER}\n");
        assert_eq!(
            remove(&end_first, "km-a"),
            Err(BlockError::EndBeforeBegin { end_line: 1 })
        );
        let two = format!("{BEGIN_MARKER}\n{END_MARKER}\nx\n{BEGIN_MARKER}\n{END_MARKER}\n");
        assert_eq!(
            upsert(&two, &entry("km-a", 1)),
            Err(BlockError::Duplicate {
                first_line: 1,
                second_line: 4
            })
        );
        let nested = format!("{BEGIN_MARKER}\n{BEGIN_MARKER}\n{END_MARKER}\n");
        assert!(matches!(
            upsert(&nested, &entry("km-a", 1)),
            Err(BlockError::Duplicate { .. })
        ));
    }

    #[test]
    fn remove_without_a_block_or_entry_changes_nothing() {
        assert_eq!(remove(USER, "km-a").unwrap(), USER);
        let with = upsert(USER, &entry("km-a", 1)).unwrap();
        assert_eq!(remove(&with, "km-zzz").unwrap(), with);
    }

    #[test]
    fn values_are_quoted_or_refused() {
        assert_eq!(quote_value("/a b/c").unwrap(), "\"/a b/c\"");
        assert_eq!(quote_value("/a/c").unwrap(), "/a/c");
        assert!(quote_value("/a\"b").is_err());
        assert!(quote_value("/a\nHost *").is_err());
        let e = HostEntry::new("km-a")
            .path_option("IdentityFile", "/h/100%/k")
            .unwrap();
        assert_eq!(e.options[0].1, "/h/100%%/k");
    }

    #[test]
    fn host_lines_are_recognised_loosely() {
        assert_eq!(host_line_alias("Host km-a"), Some("km-a".into()));
        assert_eq!(host_line_alias("  host=km-b"), Some("km-b".into()));
        assert_eq!(host_line_alias("HostName x"), None);
    }
}

//! km's own known_hosts file: one pinned host key per sandbox, keyed by its `HostKeyAlias`.
//!
//! The key is read over the platform's authenticated command channel, never learned on first
//! use, so `StrictHostKeyChecking yes` holds from the very first connection. The editor works
//! on bytes: every line that is not the sandbox's own stays exactly as it was, whatever its
//! encoding.

fn first_field(line: &[u8]) -> Option<&[u8]> {
    line.split(|b| b.is_ascii_whitespace())
        .find(|field| !field.is_empty())
}

/// Returns `text` with exactly one line for `alias`, pinning `key` (`type base64`).
pub fn pin(text: &[u8], alias: &str, key: &str) -> Vec<u8> {
    let mut out = unpin(text, alias);
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(format!("{alias} {key}\n").as_bytes());
    out
}

/// Returns `text` without any line for `alias`.
pub fn unpin(text: &[u8], alias: &str) -> Vec<u8> {
    text.split_inclusive(|b| *b == b'\n')
        .filter(|line| first_field(line) != Some(alias.as_bytes()))
        .flatten()
        .copied()
        .collect()
}

/// The host names of every pinned line, in file order.
pub fn hosts(text: &[u8]) -> Vec<String> {
    text.split(|b| *b == b'\n')
        .filter_map(first_field)
        .filter(|field| !field.starts_with(b"#"))
        .filter_map(|field| std::str::from_utf8(field).ok().map(str::to_owned))
        .collect()
}

/// The pinned key (`type base64`) for `alias`, if any.
pub fn pinned(text: &[u8], alias: &str) -> Option<String> {
    text.split(|b| *b == b'\n').find_map(|line| {
        if first_field(line) != Some(alias.as_bytes()) {
            return None;
        }
        let line = std::str::from_utf8(line).ok()?;
        let mut fields = line.split_whitespace().skip(1);
        Some(format!("{} {}", fields.next()?, fields.next()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_replaces_and_unpin_removes_only_that_alias() {
        let text = pin(b"", "km-a", "ssh-ed25519 AAA1");
        let text = pin(&text, "km-b", "ssh-ed25519 BBB1");
        let text = pin(&text, "km-a", "ssh-ed25519 AAA2");
        assert_eq!(text, b"km-b ssh-ed25519 BBB1\nkm-a ssh-ed25519 AAA2\n");
        assert_eq!(pinned(&text, "km-a").as_deref(), Some("ssh-ed25519 AAA2"));
        assert_eq!(unpin(&text, "km-a"), b"km-b ssh-ed25519 BBB1\n");
        assert_eq!(pinned(&text, "km-ab"), None);
        assert_eq!(hosts(&text), ["km-b", "km-a"]);
    }

    #[test]
    fn other_lines_keep_their_bytes_even_when_not_utf8() {
        let foreign: &[u8] = b"# caf\xe9 \xff\xfe\r\nhost.example ssh-ed25519 CCC1\n";
        let pinned_text = pin(foreign, "km-a", "ssh-ed25519 AAA1");
        assert!(pinned_text.starts_with(foreign));
        assert_eq!(unpin(&pinned_text, "km-a"), foreign);
        assert_eq!(
            pinned(&pinned_text, "km-a").as_deref(),
            Some("ssh-ed25519 AAA1")
        );
    }
}

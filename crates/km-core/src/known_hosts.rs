//! km's own known_hosts file: one pinned host key per sandbox, keyed by its `HostKeyAlias`.
//!
//! The key is read over the platform's authenticated command channel, never learned on first
//! use, so `StrictHostKeyChecking yes` holds from the very first connection.

/// Returns `text` with exactly one line for `alias`, pinning `key` (`type base64`).
pub fn pin(text: &str, alias: &str, key: &str) -> String {
    let mut out = unpin(text, alias);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("{alias} {key}\n"));
    out
}

/// Returns `text` without any line for `alias`.
pub fn unpin(text: &str, alias: &str) -> String {
    text.split_inclusive('\n')
        .filter(|line| line.split_whitespace().next() != Some(alias))
        .collect()
}

/// The pinned key (`type base64`) for `alias`, if any.
pub fn pinned(text: &str, alias: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        if fields.next() != Some(alias) {
            return None;
        }
        Some(format!("{} {}", fields.next()?, fields.next()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_replaces_and_unpin_removes_only_that_alias() {
        let text = pin("", "km-a", "ssh-ed25519 AAA1");
        let text = pin(&text, "km-b", "ssh-ed25519 BBB1");
        let text = pin(&text, "km-a", "ssh-ed25519 AAA2");
        assert_eq!(text, "km-b ssh-ed25519 BBB1\nkm-a ssh-ed25519 AAA2\n");
        assert_eq!(pinned(&text, "km-a").as_deref(), Some("ssh-ed25519 AAA2"));
        assert_eq!(unpin(&text, "km-a"), "km-b ssh-ed25519 BBB1\n");
        assert_eq!(pinned(&text, "km-ab"), None);
    }
}

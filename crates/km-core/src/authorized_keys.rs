//! Reading `authorized_keys` lines the way OpenSSH's sshd reads them: optional options, key
//! type, base64 key and comment; blank lines and `#` comments carry no key.
//!
//! km decides what to remove from a sandbox's `authorized_keys` from this parse alone, so a
//! line it cannot read is never matched by anything: it is reported, not guessed at.

use ssh_key::{HashAlg, PublicKey};

/// One line of an `authorized_keys` file, as sshd would take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizedLine {
    /// Empty, whitespace only, or a `#` comment: sshd skips it.
    Ignored,
    /// A key sshd would accept a login with.
    Key(AuthorizedKey),
    /// Neither: sshd would skip it as well, but it may be a key km cannot read (an algorithm it
    /// does not know, or a damaged line), so km reports it and never touches it.
    Unreadable,
}

/// A key line: its options, its key and its comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    /// The options before the key type (`from="…",no-pty`), if any.
    pub options: Option<String>,
    /// The key type, as written (`ssh-ed25519`).
    pub algorithm: String,
    /// The base64 key blob, as written: what `$SSH_USER_AUTH` names a session's key by.
    pub blob: String,
    /// The comment (the rest of the line), possibly empty.
    pub comment: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// Parses one line. Like sshd, it first reads the line as a key and, failing that, skips a
/// leading options field and reads the rest as a key.
pub fn parse_line(line: &str) -> AuthorizedLine {
    let text = line
        .trim_start_matches([' ', '\t'])
        .trim_end_matches(['\r', '\n']);
    if text.trim().is_empty() || text.starts_with('#') {
        return AuthorizedLine::Ignored;
    }
    if let Some(key) = key_at(text, None) {
        return AuthorizedLine::Key(key);
    }
    let Some((options, rest)) = split_options(text) else {
        return AuthorizedLine::Unreadable;
    };
    key_at(rest, Some(options)).map_or(AuthorizedLine::Unreadable, AuthorizedLine::Key)
}

/// Parses every line of a file's text, in order.
pub fn parse_text(text: &str) -> Vec<(String, AuthorizedLine)> {
    text.split('\n')
        .filter(|line| !line.is_empty())
        .map(|line| (line.to_owned(), parse_line(line)))
        .collect()
}

fn key_at(text: &str, options: Option<&str>) -> Option<AuthorizedKey> {
    let text = text.trim_start_matches([' ', '\t']);
    let mut fields = text.splitn(3, [' ', '\t']);
    let algorithm = fields.next()?;
    let blob = fields.next()?;
    let comment = fields.next().unwrap_or_default().trim().to_owned();
    let key = PublicKey::from_openssh(&format!("{algorithm} {blob}")).ok()?;
    if key.algorithm().as_str() != algorithm {
        return None;
    }
    Some(AuthorizedKey {
        options: options.map(str::to_owned),
        algorithm: algorithm.to_owned(),
        blob: blob.to_owned(),
        comment,
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
    })
}

/// Splits `options rest` where options end at the first blank outside double quotes (inside
/// quotes, `\"` is a quote). `None` when the quotes never close or nothing follows.
fn split_options(text: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => {
                let rest = &text[at..];
                return (!rest.trim().is_empty()).then_some((&text[..at], rest));
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGrMYzBeS4c0BkfRSRmcQgCVV7rEf/Dmj4CzNPRQLQnJ";

    fn key(line: &str) -> AuthorizedKey {
        match parse_line(line) {
            AuthorizedLine::Key(key) => key,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn a_plain_key_line_has_its_fields() {
        let parsed = key(&format!("{KEY} km-sb-01234567:alice"));
        assert_eq!(parsed.options, None);
        assert_eq!(parsed.algorithm, "ssh-ed25519");
        assert!(parsed.blob.starts_with("AAAAC3"));
        assert_eq!(parsed.comment, "km-sb-01234567:alice");
        assert!(parsed.fingerprint.starts_with("SHA256:"));
    }

    #[test]
    fn options_are_skipped_even_with_quoted_blanks() {
        let plain = key(KEY);
        let with = key(&format!(
            "from=\"127.0.0.1\",command=\"echo \\\"a b\\\"\",no-pty {KEY} x y"
        ));
        assert_eq!(
            with.options.as_deref(),
            Some("from=\"127.0.0.1\",command=\"echo \\\"a b\\\"\",no-pty")
        );
        assert_eq!(with.fingerprint, plain.fingerprint);
        assert_eq!(with.comment, "x y");
    }

    #[test]
    fn comments_and_blanks_carry_no_key() {
        for line in ["", "   ", "# ssh-ed25519 AAAA x", &format!("#{KEY}")] {
            assert_eq!(parse_line(line), AuthorizedLine::Ignored, "{line:?}");
        }
    }

    #[test]
    fn what_is_not_a_key_is_unreadable_never_a_key() {
        for line in [
            "ssh-ed25519",
            "ssh-ed25519 AAAA x",
            "from=\"127.0.0.1\" ssh-ed25519 AAAA x",
            "from=\"unclosed ssh-ed25519 AAAA",
            "garbage",
            &KEY.replace("ssh-ed25519", "ssh-rsa"),
        ] {
            assert_eq!(parse_line(line), AuthorizedLine::Unreadable, "{line:?}");
        }
    }

    #[test]
    fn the_same_key_twice_has_one_fingerprint() {
        let lines = parse_text(&format!("{KEY} a\n\nfrom=\"x\" {KEY} b\n"));
        let prints: Vec<_> = lines
            .iter()
            .filter_map(|(_, l)| match l {
                AuthorizedLine::Key(k) => Some(k.fingerprint.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(prints.len(), 2);
        assert_eq!(prints[0], prints[1]);
    }
}

//! Sandbox identifiers, aliases and the references a user may type for a sandbox.
//!
//! Every string that later reaches a path, a shell script or `~/.ssh/config` passes one of these
//! grammars first, so hostile input (`../x`, spaces, newlines, `*`) never gets that far.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The prefix used when a profile does not set `metadata.prefix`.
pub const DEFAULT_PREFIX: &str = "sb";

/// Errors from parsing an identifier, alias, prefix or reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The prefix does not match `^[a-z][a-z0-9]{0,11}$`.
    #[error(
        "invalid prefix {0:?}: use 1-12 characters, a lowercase letter then lowercase letters or digits"
    )]
    Prefix(String),
    /// The sandbox ID does not match `<prefix>-<8 lowercase hex>`.
    #[error(
        "invalid sandbox ID {0:?}: expected <prefix>-<8 lowercase hex digits>, e.g. sb-1a2b3c4d"
    )]
    SandboxId(String),
    /// The alias does not match `^[a-z0-9][a-z0-9._-]{0,62}$`, is all digits, or is an ID.
    #[error(
        "invalid alias {0:?}: use 1-63 characters from a-z 0-9 . _ -, starting with a letter or digit, not all digits and not shaped like a sandbox ID (<prefix>-<8 hex digits>)"
    )]
    Alias(String),
    /// The reference is none of an ID, an alias or a list number.
    #[error("{0:?} is not a sandbox ID, alias or `km list` number")]
    Reference(String),
    /// The operator name does not match `^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`.
    #[error(
        "invalid operator name {0:?}: use 1-64 characters from A-Z a-z 0-9 . _ @ + -, starting with a letter or digit"
    )]
    Operator(String),
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Checks a profile's `metadata.prefix`.
pub fn validate_prefix(prefix: &str) -> Result<(), IdError> {
    let mut chars = prefix.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if first_ok && prefix.len() <= 12 && chars.all(is_lower_alnum) {
        Ok(())
    } else {
        Err(IdError::Prefix(prefix.to_owned()))
    }
}

/// A sandbox ID: `<prefix>-<8 lowercase hex>`, e.g. `lrn2-ee9499b5`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SandboxId(String);

impl SandboxId {
    /// Makes a fresh ID with 32 random bits after the prefix.
    pub fn generate(prefix: &str) -> Result<Self, IdError> {
        validate_prefix(prefix)?;
        let mut bytes = [0u8; 4];
        getrandom::getrandom(&mut bytes).expect("the OS random source is available");
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self(format!("{prefix}-{hex}")))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ssh `Host` alias km writes for this sandbox.
    pub fn host_alias(&self) -> String {
        format!("km-{}", self.0)
    }

    /// The comment of keys made before sandboxes had several operators: `km-<id>`.
    pub fn key_comment(&self) -> String {
        format!("km-{}", self.0)
    }

    /// The comment on `operator`'s key for this sandbox, `km-<id>:<operator>`; it marks that
    /// operator's own `authorized_keys` line.
    pub fn operator_key_comment(&self, operator: &Operator) -> String {
        format!("km-{}:{}", self.0, operator.0)
    }

    /// Whose key a comment on this sandbox's `authorized_keys` line names.
    pub fn key_owner(&self, comment: &str) -> KeyOwner {
        let Some(rest) = comment.strip_prefix(&self.key_comment()) else {
            return KeyOwner::Foreign;
        };
        if rest.is_empty() {
            return KeyOwner::Unnamed;
        }
        rest.strip_prefix(':')
            .and_then(|name| name.parse().ok())
            .map_or(KeyOwner::Foreign, KeyOwner::Operator)
    }
}

/// Who an `authorized_keys` line of a sandbox belongs to, by its comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOwner {
    /// `km-<id>:<operator>`.
    Operator(Operator),
    /// `km-<id>`: made by a km from before operators had names.
    Unnamed,
    /// Not a line km wrote for this sandbox.
    Foreign,
}

/// The name of a person or machine that holds a key to sandboxes (default `user@host`); it
/// tells the keys of one sandbox apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Operator(String);

impl Operator {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Operator {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut chars = text.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok =
            chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-'));
        if first_ok && rest_ok && text.len() <= 64 {
            Ok(Self(text.to_owned()))
        } else {
            Err(IdError::Operator(text.to_owned()))
        }
    }
}

impl TryFrom<String> for Operator {
    type Error = IdError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Operator> for String {
    fn from(operator: Operator) -> Self {
        operator.0
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SandboxId {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || IdError::SandboxId(text.to_owned());
        let (prefix, hex) = text.rsplit_once('-').ok_or_else(invalid)?;
        validate_prefix(prefix).map_err(|_| invalid())?;
        let hex_ok = hex.len() == 8
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        if hex_ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(invalid())
        }
    }
}

impl TryFrom<String> for SandboxId {
    type Error = IdError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<SandboxId> for String {
    fn from(id: SandboxId) -> Self {
        id.0
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user-chosen name for a sandbox, unique among live sandboxes.
///
/// Stricter than the bare grammar in two ways: an alias made only of digits is refused, since
/// it would shadow a `km list` number, and so is one that is itself a sandbox ID, since it
/// would make that sandbox's ID ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Alias(String);

impl Alias {
    /// The alias as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Alias {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut chars = text.chars();
        let first_ok = chars.next().is_some_and(is_lower_alnum);
        let rest_ok = chars.all(|c| is_lower_alnum(c) || matches!(c, '.' | '_' | '-'));
        let all_digits = text.chars().all(|c| c.is_ascii_digit());
        let is_an_id = text.parse::<SandboxId>().is_ok();
        if first_ok && rest_ok && text.len() <= 63 && !all_digits && !is_an_id {
            Ok(Self(text.to_owned()))
        } else {
            Err(IdError::Alias(text.to_owned()))
        }
    }
}

impl TryFrom<String> for Alias {
    type Error = IdError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Alias> for String {
    fn from(alias: Alias) -> Self {
        alias.0
    }
}

impl fmt::Display for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a user typed to name a sandbox: an ID, an alias or a `km list` number.
///
/// The grammars do not overlap: an alias is never all digits and never shaped like an ID, so
/// every reference names at most one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxRef {
    /// A `km list` number.
    Number(u32),
    /// A sandbox ID.
    Id(SandboxId),
    /// An alias.
    Alias(Alias),
}

impl FromStr for SandboxRef {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.trim_start_matches('#');
        if !digits.is_empty() && digits.len() <= 9 && digits.chars().all(|c| c.is_ascii_digit()) {
            let number: u32 = digits
                .parse()
                .map_err(|_| IdError::Reference(text.into()))?;
            if number > 0 {
                return Ok(Self::Number(number));
            }
        }
        if let Ok(id) = text.parse::<SandboxId>() {
            return Ok(Self::Id(id));
        }
        let alias: Alias = text.parse().map_err(|_| IdError::Reference(text.into()))?;
        Ok(Self::Alias(alias))
    }
}

impl fmt::Display for SandboxRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "#{n}"),
            Self::Id(id) => write!(f, "{id}"),
            Self::Alias(alias) => write!(f, "{alias}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_ids_parse_and_carry_the_prefix() {
        let id = SandboxId::generate("lrn2").unwrap();
        assert!(id.as_str().starts_with("lrn2-"));
        assert_eq!(id.as_str().len(), "lrn2-".len() + 8);
        assert_eq!(id.as_str().parse::<SandboxId>().unwrap(), id);
        assert_eq!(id.host_alias(), format!("km-{id}"));
    }

    #[test]
    fn known_good_and_bad_ids() {
        assert!("lrn2-ee9499b5".parse::<SandboxId>().is_ok());
        for bad in [
            "lrn2-EE9499B5",
            "lrn2-ee9499b",
            "-ee9499b5",
            "2x-ee9499b5",
            "a-b-ee9499b5",
        ] {
            assert!(bad.parse::<SandboxId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn references_distinguish_numbers_ids_and_aliases() {
        assert_eq!("3".parse::<SandboxRef>().unwrap(), SandboxRef::Number(3));
        assert_eq!("#12".parse::<SandboxRef>().unwrap(), SandboxRef::Number(12));
        assert!(matches!("sb-0123abcd".parse(), Ok(SandboxRef::Id(_))));
        assert!(matches!("my-poc".parse(), Ok(SandboxRef::Alias(_))));
        for bad in ["0", "../x", "a b", "*", "", "x\ny", "A"] {
            assert!(bad.parse::<SandboxRef>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_alias_shaped_like_an_id_is_refused() {
        assert!("sb-0123abcd".parse::<Alias>().is_err());
        assert!("lrn2-ee9499b5".parse::<Alias>().is_err());
        assert!("sb-0123abcd-x".parse::<Alias>().is_ok());
        assert!("sb-0123abcg".parse::<Alias>().is_ok());
    }

    #[test]
    fn prefixes() {
        assert!(validate_prefix("sb").is_ok());
        assert!(validate_prefix("abcdefghijkl").is_ok());
        for bad in ["", "1a", "abcdefghijklm", "a-b", "Ab"] {
            assert!(validate_prefix(bad).is_err(), "{bad}");
        }
    }

    fn forbidden_char() -> impl Strategy<Value = char> {
        prop_oneof![
            Just('/'),
            Just('\\'),
            Just(' '),
            Just('\t'),
            Just('\n'),
            Just('\r'),
            Just('*'),
            Just('?'),
            Just('\''),
            Just('"'),
            Just('$'),
            prop::char::range('A', 'Z'),
        ]
    }

    #[test]
    fn operator_comments_name_their_owner_and_nothing_else() {
        let id: SandboxId = "sb-0123abcd".parse().unwrap();
        let alice: Operator = "alice@laptop-1".parse().unwrap();
        let comment = id.operator_key_comment(&alice);
        assert_eq!(comment, "km-sb-0123abcd:alice@laptop-1");
        assert_eq!(id.key_owner(&comment), KeyOwner::Operator(alice));
        assert_eq!(id.key_owner("km-sb-0123abcd"), KeyOwner::Unnamed);
        for foreign in [
            "km-sb-0123abcde",
            "km-sb-0123abcd:",
            "km-sb-0123abcd:a b",
            "me@host",
        ] {
            assert_eq!(id.key_owner(foreign), KeyOwner::Foreign, "{foreign}");
        }
        for bad in ["", "-x", "a b", "a:b", "a'b", &"x".repeat(65)] {
            assert!(bad.parse::<Operator>().is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn operator_names_round_trip_through_their_comment(name in "[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}") {
            let id: SandboxId = "sb-0123abcd".parse().unwrap();
            let operator: Operator = name.parse().unwrap();
            prop_assert_eq!(id.key_owner(&id.operator_key_comment(&operator)), KeyOwner::Operator(operator));
        }

        #[test]
        fn nothing_with_a_forbidden_char_parses(
            head in "[a-z0-9]{0,8}", bad in forbidden_char(), tail in "[a-z0-9.-]{0,8}"
        ) {
            let text = format!("{head}{bad}{tail}");
            prop_assert!(text.parse::<SandboxId>().is_err());
            prop_assert!(text.parse::<Alias>().is_err());
            prop_assert!(text.parse::<SandboxRef>().is_err());
            prop_assert!(validate_prefix(&text).is_err());
        }

        #[test]
        fn long_strings_never_parse(text in "[a-z][a-z0-9]{299}") {
            prop_assert!(text.parse::<SandboxId>().is_err());
            prop_assert!(text.parse::<Alias>().is_err());
            prop_assert!(text.parse::<SandboxRef>().is_err());
        }

        #[test]
        fn any_string_that_parses_is_in_the_grammar(text in "\\PC{0,80}") {
            if let Ok(alias) = text.parse::<Alias>() {
                prop_assert!(alias.as_str().chars().all(|c| c.is_ascii_lowercase()
                    || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')));
                prop_assert!(!alias.as_str().starts_with('.'));
            }
            if let Ok(id) = text.parse::<SandboxId>() {
                prop_assert!(id.as_str().is_ascii());
            }
        }

        #[test]
        fn generated_ids_roundtrip(prefix in "[a-z][a-z0-9]{0,11}") {
            let id = SandboxId::generate(&prefix).unwrap();
            prop_assert_eq!(id.as_str().parse::<SandboxId>().unwrap(), id);
        }
    }
}

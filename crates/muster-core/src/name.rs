//! Worker and token names.

use std::fmt;

/// The longest name accepted: it fits a DNS label, which keeps names usable as host names.
pub const MAX_NAME_LEN: usize = 63;

/// A validated worker or token name: 1–63 characters of `a-z`, `0-9`, `-`, `_`, starting with a
/// letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

/// Why a name was refused. The message names the rule so the user can fix the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name must not be empty; names are 1–63 characters of a-z, 0-9, `-` and `_`")]
    Empty,
    #[error("name `{0}` is longer than 63 characters")]
    TooLong(String),
    #[error("name `{name}` contains `{bad}`; names use only lowercase a-z, 0-9, `-` and `_`")]
    BadCharacter { name: String, bad: char },
    #[error("name `{0}` must start with a lowercase letter or a digit")]
    BadStart(String),
}

impl Name {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        if input.is_empty() {
            return Err(NameError::Empty);
        }
        if input.chars().count() > MAX_NAME_LEN {
            return Err(NameError::TooLong(shorten(input)));
        }
        if let Some(bad) = input.chars().find(|c| !is_name_char(*c)) {
            return Err(NameError::BadCharacter {
                name: shorten(input),
                bad,
            });
        }
        let first = input.as_bytes()[0];
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(NameError::BadStart(input.to_owned()));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
}

/// Keeps error messages one line long however long the rejected input was.
pub(crate) fn shorten(input: &str) -> String {
    const KEEP: usize = 80;
    if input.chars().count() <= KEEP {
        input.escape_debug().to_string()
    } else {
        let head: String = input.chars().take(KEEP).collect();
        format!("{}…", head.escape_debug())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["a", "0", "ingest-us-east-01", "w_1", &"a".repeat(63)] {
            assert!(Name::parse(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn refuses_with_the_rule_named() {
        assert_eq!(Name::parse(""), Err(NameError::Empty));
        assert!(matches!(
            Name::parse(&"a".repeat(64)),
            Err(NameError::TooLong(_))
        ));
        assert!(matches!(
            Name::parse("Upper"),
            Err(NameError::BadCharacter { bad: 'U', .. })
        ));
        assert!(matches!(
            Name::parse("a.b"),
            Err(NameError::BadCharacter { bad: '.', .. })
        ));
        assert!(matches!(Name::parse("-lead"), Err(NameError::BadStart(_))));
        assert!(matches!(Name::parse("_lead"), Err(NameError::BadStart(_))));
        let msg = Name::parse("a b").unwrap_err().to_string();
        assert!(msg.contains("a-z"), "{msg}");
    }

    #[test]
    fn multibyte_input_does_not_panic() {
        assert!(Name::parse("é").is_err());
        assert!(Name::parse(&"é".repeat(100)).is_err());
    }
}

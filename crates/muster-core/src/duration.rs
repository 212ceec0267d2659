//! Durations as users type them: `30s`, `30m`, `1h`, `24h`, `7d`, `1h30m`.

use std::time::Duration;

use crate::name::shorten;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration must not be empty; use a number and a unit, like `30m`, `24h` or `7d`")]
    Empty,
    #[error(
        "duration `{0}` is not understood; use a number and a unit (s, m, h, d), like `30m`, `1h30m` or `7d`"
    )]
    Malformed(String),
    #[error("duration `{0}` must be positive")]
    NotPositive(String),
    #[error("duration `{0}` is too long; the longest allowed is 3650d")]
    TooLong(String),
}

/// Ten years. Anything longer is a typo, and it keeps deadline arithmetic far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);

/// Parses a positive duration. Units: `ms`, `s`, `m`, `h`, `d` (and the longer spellings
/// humantime accepts); several may be combined, as in `1h30m`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    // A bare number is ambiguous (seconds? minutes?): refuse it rather than guess.
    if trimmed.chars().all(|c| c.is_ascii_digit()) {
        return Err(DurationError::Malformed(shorten(trimmed)));
    }
    if !units_descend(trimmed) {
        return Err(DurationError::Malformed(shorten(trimmed)));
    }
    let parsed = humantime::parse_duration(trimmed)
        .map_err(|_| DurationError::Malformed(shorten(trimmed)))?;
    if parsed.is_zero() {
        return Err(DurationError::NotPositive(shorten(trimmed)));
    }
    if parsed > MAX_DURATION {
        return Err(DurationError::TooLong(shorten(trimmed)));
    }
    Ok(parsed)
}

/// A duration as users type it, largest unit first: `365d`, `1h30m`, `2s` (whole seconds; a
/// shorter remainder is dropped, and less than a second reads `0s`). [`parse_duration`] reads it
/// back.
pub fn format_duration(duration: Duration) -> String {
    let mut rest = duration.as_secs();
    if rest == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, secs) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= secs {
            out.push_str(&format!("{}{unit}", rest / secs));
            rest %= secs;
        }
    }
    out
}

/// Each unit at most once, largest first (`1h30m`, not `30m1h` or `1h30m30m`): humantime adds up
/// whatever it is given, and a repeated unit is far more likely a typo than a sum.
fn units_descend(input: &str) -> bool {
    let mut previous: Option<Duration> = None;
    let mut rest = input.trim();
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let after_digits = rest[digits..].trim_start();
        let unit_len =
            after_digits.len() - after_digits.trim_start_matches(char::is_alphabetic).len();
        if digits == 0 || unit_len == 0 {
            // Not a number followed by a unit: let humantime say it is malformed.
            return true;
        }
        let Ok(one) = humantime::parse_duration(&format!("1{}", &after_digits[..unit_len])) else {
            return true;
        };
        if previous.is_some_and(|p| one >= p) {
            return false;
        }
        previous = Some(one);
        rest = after_digits[unit_len..].trim_start();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        let cases = [
            ("30s", 30),
            ("30m", 1800),
            ("1h", 3600),
            ("24h", 86400),
            ("7d", 7 * 86400),
            ("1h30m", 5400),
        ];
        for (input, secs) in cases {
            assert_eq!(
                parse_duration(input).unwrap(),
                Duration::from_secs(secs),
                "{input}"
            );
        }
    }

    #[test]
    fn formats_what_it_parses() {
        for text in ["365d", "30d", "1h30m", "2s", "1d2h3m4s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("0s"),
            Err(DurationError::NotPositive(_))
        ));
        assert!(matches!(
            parse_duration("-5m"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_duration("10"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_duration("soon"),
            Err(DurationError::Malformed(_))
        ));
        for repeated in ["1h30m30m", "30m1h", "1h1h", "5s 5s"] {
            assert!(
                matches!(parse_duration(repeated), Err(DurationError::Malformed(_))),
                "{repeated}"
            );
        }
        assert_eq!(
            parse_duration("1d 2h").unwrap(),
            Duration::from_secs(93_600)
        );
        assert!(matches!(
            parse_duration("100000d"),
            Err(DurationError::TooLong(_))
        ));
    }
}

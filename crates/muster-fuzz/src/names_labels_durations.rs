//! Target `names_labels_durations`: the small parsers every request goes through. Worker and
//! token names ([`Name::parse`]), labels (`--label k=v` with [`Labels::parse_pair`], and the
//! `x-muster-labels` header a connecting worker sends, with [`Labels::parse_list`]), durations
//! ([`parse_duration`]) and the auto-enrollment name pattern ([`NamePattern::parse`] and
//! matching). Nothing may panic, and what parses must survive a round trip where one exists.
//!
//! The input is one text; a first line break, if any, splits it into a pattern and a name to
//! match against it.

use muster_core::enrollment::NamePattern;
use muster_core::{Labels, Name, parse_duration};

/// The fuzz target.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    name(text);
    labels(text);
    duration(text);
    let (pattern, candidate) = text.split_once('\n').unwrap_or((text, ""));
    name_pattern(pattern, candidate);
}

fn name(text: &str) {
    if let Ok(name) = Name::parse(text) {
        assert_eq!(name.to_string(), text, "a parsed name displays as itself");
        assert!(name.as_str().len() <= muster_core::name::MAX_NAME_LEN);
    }
}

fn labels(text: &str) {
    if let Ok((key, value)) = Labels::parse_pair(text) {
        assert_eq!(
            format!("{key}={value}"),
            text,
            "a pair is its key and value"
        );
    }
    if let Ok(labels) = Labels::parse_list(text) {
        assert!(labels.len() <= muster_core::labels::MAX_LABELS);
        // Displayed as the header carries them, they parse back to the same set.
        let shown = labels.to_string();
        assert_eq!(Labels::parse_list(&shown), Ok(labels), "labels {shown:?}");
    }
}

fn duration(text: &str) {
    if let Ok(duration) = parse_duration(text) {
        assert!(!duration.is_zero());
        assert!(duration <= muster_core::duration::MAX_DURATION);
        let shown = humantime::format_duration(duration).to_string();
        assert_eq!(
            parse_duration(&shown),
            Ok(duration),
            "{text:?} shown as {shown:?}"
        );
    }
}

fn name_pattern(pattern: &str, candidate: &str) {
    let Ok(parsed) = NamePattern::parse(pattern) else {
        return;
    };
    assert_eq!(parsed.as_str(), pattern);
    // `*` matches itself as a run of characters and `?` as one: a pattern matches its own text.
    assert!(parsed.matches(pattern), "{pattern:?} matches itself");
    // And the plainest name it describes: no characters for `*`, an `x` for `?`.
    let plain: String = pattern
        .chars()
        .filter(|c| *c != '*')
        .map(|c| if c == '?' { 'x' } else { c })
        .collect();
    assert!(parsed.matches(&plain), "{pattern:?} matches {plain:?}");
    let _ = parsed.matches(candidate);
}

//! Stored text made safe to show: control characters written as escapes, and lengths capped.
//!
//! Text that reaches the store from outside (an audit detail built from a refusal, a job's
//! reason sent by a worker, a command an admin typed) is shown later on an admin's terminal and
//! in the web UI. A carriage return or line feed there forges a line; an escape sequence drives
//! the terminal; a bidirectional override makes text read differently from what it is. So
//! whatever prints stored text passes it through [`escape_controls`] first, and whatever records
//! it caps it with [`truncate`].

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal or a page raw: the C0 and C1 control characters and DEL
/// (`char::is_control`), the line and paragraph separators, and the bidirectional formatting
/// characters ("Trojan Source").
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every unsafe character written as an escape: `\n`, `\r`, `\t`, `\x1b` (for the
/// others below U+0100) or `\u{202e}`. Text without any comes back borrowed.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) && u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// At most `max` characters: longer text is cut on a character boundary and ends with `…`
/// (which counts as one of the `max`).
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some(_) => {
            let keep = max.saturating_sub(1);
            let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
            Cow::Owned(format!("{}…", &text[..end]))
        }
    }
}

/// [`escape_controls`], then [`truncate`] to `max` characters: the one way a field is made
/// fit to be recorded.
pub fn bounded(text: &str, max: usize) -> String {
    truncate(&escape_controls(text), max).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_come_out_escaped() {
        assert_eq!(
            escape_controls("plain text, ünïcode"),
            "plain text, ünïcode"
        );
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("a\r\nforged line\t\x1b[31mred\x07\x7f"),
            "a\\r\\nforged line\\t\\x1b[31mred\\x07\\x7f"
        );
        assert_eq!(escape_controls("\u{9b}31m"), "\\x9b31m", "C1 CSI");
        assert_eq!(
            escape_controls("admin\u{202e}nimda\u{2028}"),
            "admin\\u{202e}nimda\\u{2028}"
        );
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("exactly10!", 10), "exactly10!");
        assert_eq!(truncate("eleven chars", 10), "eleven ch…");
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(truncate("🦀🦀🦀🦀", 2).chars().count(), 2);
    }

    #[test]
    fn bounded_escapes_before_it_counts() {
        let long = format!("{}\n", "x".repeat(2000));
        let out = bounded(&long, 1024);
        assert_eq!(out.chars().count(), 1024);
        assert!(out.ends_with('…'));
        assert!(!out.chars().any(char::is_control));
        // An escape cut in the middle is still no control character.
        assert!(
            !bounded(&"\x1b".repeat(100), 7)
                .chars()
                .any(char::is_control)
        );
    }
}

//! How values read on a page: times relative to now (with the exact UTC time on hover and in
//! `datetime`), labels as chips, long ids shortened, stored text with its control characters
//! escaped.

use std::borrow::Cow;

use maud::{Markup, html};
use muster_core::Timestamp;
use muster_core::span::Span;
use muster_proto::api::LabelMap;

use crate::ui::layout;

/// Stored text as a page shows it: maud escapes HTML, and this escapes what HTML would not
/// (line breaks, terminal escape sequences, bidirectional overrides), so a record reads as what
/// it is. See [`muster_core::text::escape_controls`].
pub fn text(stored: &str) -> Cow<'_, str> {
    muster_core::text::escape_controls(stored)
}

/// `3 min`, `2 h 5 min`, `4 d`: a coarse length of time for people, by the rounding the CLI
/// uses too ([`Span`]: to the nearest unit shown, so a token made for a day says `in 24 h`).
pub fn span(millis: i64) -> String {
    Span::of(millis).to_string()
}

/// The exact time as people read it and as the CLI prints it: `2025-01-31 14:05:09Z`.
fn exact(rfc3339: &str) -> String {
    rfc3339
        .replacen('T', " ", 1)
        .trim_end_matches('Z')
        .split('.')
        .next()
        .map(|s| format!("{s}Z"))
        .unwrap_or_default()
}

/// A time relative to `now` (`5 min ago`, `in 2 h`), or `never`/— when there is none.
pub fn when(now: Timestamp, at: Option<&str>, missing: &str) -> Markup {
    let Some(at) = at else {
        return if missing.is_empty() {
            layout::none()
        } else {
            html! { span.muted { (missing) } }
        };
    };
    let Some(ts) = Timestamp::parse_rfc3339(at) else {
        return html! { (at) };
    };
    let delta = ts.unix_millis() - now.unix_millis();
    let text = if delta.abs() < 1000 {
        "just now".to_owned()
    } else if delta < 0 {
        format!("{} ago", span(delta))
    } else {
        format!("in {}", span(delta))
    };
    html! { time datetime=(at) title=(exact(at)) { (text) } }
}

/// The exact time, for detail pages.
pub fn exact_time(at: Option<&str>) -> Markup {
    match at {
        Some(at) => html! { time datetime=(at) { (exact(at)) } },
        None => layout::none(),
    }
}

pub fn labels(labels: &LabelMap) -> Markup {
    html! {
        @if labels.is_empty() {
            (layout::none())
        } @else {
            ul.labels {
                @for (k, v) in labels {
                    li { code { (k) "=" (v) } }
                }
            }
        }
    }
}

/// The first characters of a long id, with the whole id on hover and for screen readers.
pub fn short_id(id: Option<&str>) -> Markup {
    match id {
        Some(id) if id.chars().count() > 12 => {
            let short: String = id.chars().take(12).collect();
            html! { code title=(id) aria-label=(id) { (short) "…" } }
        }
        Some(id) => html! { code { (id) } },
        None => layout::none(),
    }
}

/// A status word as a coloured badge; the word itself carries the meaning, the colour helps.
pub fn badge(word: &str) -> Markup {
    html! { span class={ "badge badge-" (word) } { (word) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_well() {
        assert_eq!(span(5_000), "5 s");
        assert_eq!(span(-125_000), "2 min");
        assert_eq!(span(3_600_000), "1 h");
        assert_eq!(span(3_900_000), "1 h 5 min");
        assert_eq!(span(3 * 86_400_000), "3 d");
        assert_eq!(span(86_400_000 - 1), "24 h", "a day less a moment is a day");
        assert_eq!(span(86_400_000 - 20_000), "24 h");
        assert_eq!(span(86_400_000 - 40_000), "23 h 59 min");
        assert_eq!(
            span(3_599_700),
            "1 h",
            "rounding carries into the next unit"
        );
        assert_eq!(span(59_600), "1 min");
        assert_eq!(span(36 * 3_600_000), "36 h");
        assert_eq!(exact("2025-01-31T14:05:09.123Z"), "2025-01-31 14:05:09Z");
    }
}

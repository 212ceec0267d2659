//! What the CLI prints: tables and JSON on stdout, errors as one line on stderr, and the small
//! formatting rules tables share (times, labels, dashes for nothing).

use comfy_table::{Table, presets};
use muster_core::Timestamp;
use muster_core::span::Span;
use serde::Serialize;

use crate::error;

/// Prints a failure as one line on stderr.
pub fn print_error(message: &str, hint: Option<&str>) {
    eprintln!("{}", error::line(message, hint));
}

/// Prints a warning as one line on stderr, control characters escaped (a warning may carry
/// text from the server).
pub fn print_warning(message: &str) {
    eprintln!("warning: {}", muster_core::text::escape_controls(message));
}

/// Handles a command line clap refused (or `--help`, `--version`): printed as clap prints it,
/// and, when the command line asks for `--json`, also as the JSON error object on stdout.
/// Returns the exit code.
pub fn command_line_error(e: &clap::Error) -> u8 {
    use clap::error::ErrorKind;
    let _ = e.print();
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    if json && !informational {
        let rendered = e.render().to_string();
        let first = rendered.lines().next().unwrap_or_default();
        let message = first.strip_prefix("error: ").unwrap_or(first);
        println!(
            "{}",
            serde_json::json!({"error": {
                "code": crate::error::LocalCode::Usage,
                "message": message,
                "hint": "`muster --help` and `muster COMMAND --help` list the commands and flags",
            }})
        );
    }
    u8::try_from(e.exit_code()).unwrap_or(2)
}

pub fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => print_error(&format!("cannot encode the answer as JSON: {e}"), None),
    }
}

pub fn table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(headers.iter().map(|h| h.to_string()));
    table
}

/// The table as printed: each line without trailing blanks.
pub fn render(table: &Table) -> String {
    table
        .to_string()
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Prints a rendered table, with or without its header line.
pub fn print_table(rendered: &str, no_headers: bool) {
    if no_headers {
        let rows = without_header(rendered);
        if !rows.is_empty() {
            println!("{rows}");
        }
    } else {
        println!("{rendered}");
    }
}

/// The page size lists are fetched with, when `MUSTER_PAGE_SIZE` sets one (the server's default,
/// 500, otherwise; at most 5,000). Only how many requests a long list takes depends on it.
pub fn page_size() -> Option<String> {
    std::env::var("MUSTER_PAGE_SIZE")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A rendered table without its header line (`--no-headers`).
pub fn without_header(rendered: &str) -> String {
    rendered.lines().skip(1).collect::<Vec<_>>().join("\n")
}

/// Now, for the relative times tables show.
pub fn now() -> Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_unix_millis(millis)
}

/// An RFC 3339 time as `2026-11-22 09:43:44Z (in 2h)`, or `-`.
pub fn when(rfc3339: Option<&str>, now: Timestamp) -> String {
    let Some(s) = rfc3339 else { return "-".into() };
    let Some(t) = Timestamp::parse_rfc3339(s) else {
        return s.into();
    };
    let delta = t.unix_millis() - now.unix_millis();
    let shown = s.split('.').next().unwrap_or(s).replace('T', " ");
    let shown = if shown.ends_with('Z') {
        shown
    } else {
        format!("{shown}Z")
    };
    format!("{shown} ({})", relative(delta))
}

/// `in 2h`, `5m ago`: rounded as the web UI rounds ([`Span`]), so the two read alike and a
/// day-long token says `in 24h`, not `in 23h`.
fn relative(delta_ms: i64) -> String {
    let amount = Span::of(delta_ms).compact();
    if delta_ms >= 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

pub fn labels(map: &std::collections::BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(80_000), "in 1m");
        assert_eq!(relative(90_000), "in 2m", "to the nearest minute, not down");
        assert_eq!(relative(-7_200_000), "2h ago");
        assert_eq!(relative(3 * 86_400_000), "in 3d");
        assert_eq!(
            relative(86_400_000 - 1_000),
            "in 24h",
            "never `in 23h` for a day"
        );
        assert_eq!(relative(-(3_600_000 + 5 * 60_000)), "1h5m ago");
    }

    #[test]
    fn times_show_to_the_second_in_utc() {
        let now = Timestamp::parse_rfc3339("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(
            when(Some("2026-01-02T05:04:05.123Z"), now),
            "2026-01-02 05:04:05Z (in 2h)"
        );
        assert_eq!(when(None, now), "-");
        assert_eq!(when(Some("yesterday"), now), "yesterday");
    }
}

//! What the CLI prints: tables and JSON on stdout, errors as one line on stderr.

use comfy_table::{Table, presets};
use serde::Serialize;

/// A command that failed: one line saying what happened, a hint with the fix, an exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub hint: Option<String>,
    pub code: u8,
}

impl Failure {
    pub fn general(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: Some(hint.into()),
            code: 1,
        }
    }

    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: Some(hint.into()),
            code: 2,
        }
    }
}

/// `error: what happened; hint: the fix` — one line, so it reads well in a journal.
pub fn print_error(message: &str, hint: Option<&str>) {
    match hint {
        Some(hint) => eprintln!("error: {message}; hint: {hint}"),
        None => eprintln!("error: {message}"),
    }
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

pub fn print_table(table: Table) {
    let text = table.to_string();
    for line in text.lines() {
        println!("{}", line.trim_end());
    }
}

/// An RFC 3339 time as `2026-11-22 09:43:44Z (in 2h)`, or `-`.
pub fn when(rfc3339: Option<&str>) -> String {
    let Some(s) = rfc3339 else { return "-".into() };
    let Some(t) = muster_core::Timestamp::parse_rfc3339(s) else {
        return s.into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let delta = t.unix_millis() - now;
    let shown = s.split('.').next().unwrap_or(s).replace('T', " ");
    let shown = if shown.ends_with('Z') {
        shown
    } else {
        format!("{shown}Z")
    };
    format!("{shown} ({})", relative(delta))
}

fn relative(delta_ms: i64) -> String {
    let secs = delta_ms.unsigned_abs() / 1000;
    let amount = match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    };
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
        assert_eq!(relative(90_000), "in 1m");
        assert_eq!(relative(-7_200_000), "2h ago");
        assert_eq!(relative(3 * 86_400_000), "in 3d");
    }
}

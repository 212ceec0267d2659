//! The results of a run: `latest.json` (flat keys, numbers for figures) and the table printed
//! at the end, each figure next to its target.

use serde_json::{Map, Value};

#[derive(Debug, Default)]
pub struct Report {
    values: Map<String, Value>,
    pub errors: Vec<String>,
}

/// The figures with targets, in the order the table shows them. README.md's results table uses
/// the same order.
pub const COLUMNS: &[(&str, &str)] = &[
    ("connected_workers", "= N"),
    ("server_rss_per_worker_bytes", "<= 8192, <= 1.5x floor"),
    ("ws_floor_rss_per_conn_bytes", ""),
    ("ws_floor_plain_rss_per_conn_bytes", ""),
    ("revoke_p50_ms", ""),
    ("revoke_p99_ms", "<= 10"),
    ("expiry_lateness_p99_ms", "<= 50"),
    ("reconnect_storm_s", "<= 10"),
    ("reconnect_gave_up", "= 0"),
    ("enroll_token_per_s", ">= 2000, > fsync"),
    ("enroll_secret_per_s", ""),
    ("fsync_ceiling_per_s", ""),
    ("job_dispatch_p50_ms", "<= 5"),
    ("job_dispatch_p99_ms", ""),
    ("jobs_per_s", ""),
];

impl Report {
    /// A figure: counts stay integers, other values keep three decimals, and a missing or
    /// non-finite value is `null`.
    pub fn num(&mut self, key: &str, value: impl Into<Option<f64>>) {
        let value = match value.into().filter(|v| v.is_finite()) {
            Some(v) if v.fract() == 0.0 && v.abs() < 9e15 => Value::from(v as i64),
            Some(v) => serde_json::Number::from_f64((v * 1000.0).round() / 1000.0)
                .map_or(Value::Null, Value::Number),
            None => Value::Null,
        };
        self.values.insert(key.to_owned(), value);
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.values.insert(key.to_owned(), value.into());
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).and_then(Value::as_f64)
    }

    pub fn error(&mut self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("  error: {what}");
        self.errors.push(what);
    }

    /// A batch's failures: how many under `key`, and an error naming the first, if any failed.
    pub fn failures(&mut self, key: &str, what: &str, errors: usize, first: Option<String>) {
        self.num(key, errors as f64);
        if let Some(first) = first {
            self.error(format!("{what}: {errors} failed; first: {first}"));
        }
    }

    pub fn to_json(&self) -> Value {
        let mut all = self.values.clone();
        all.insert(
            "errors".into(),
            Value::Array(self.errors.iter().cloned().map(Value::String).collect()),
        );
        Value::Object(all)
    }

    /// `Some(true)` when a figure meets its target, `None` when it has no target or no value.
    pub fn verdict(&self, key: &str) -> Option<bool> {
        let v = self.get(key)?;
        Some(match key {
            "connected_workers" => Some(v) == self.get("workers"),
            "server_rss_per_worker_bytes" => {
                v <= 8192.0
                    && self
                        .get("ws_floor_rss_per_conn_bytes")
                        .is_some_and(|floor| v <= 1.5 * floor)
            }
            "revoke_p99_ms" => v <= 10.0,
            "expiry_lateness_p99_ms" => v <= 50.0,
            "reconnect_storm_s" => v <= 10.0,
            "reconnect_gave_up" => v == 0.0,
            "enroll_token_per_s" => {
                v >= 2000.0 && self.get("fsync_ceiling_per_s").is_some_and(|f| v > f)
            }
            "job_dispatch_p50_ms" => v <= 5.0,
            _ => return None,
        })
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<36} {:>14}  {:<24} {}\n",
            "figure", "value", "target", "verdict"
        ));
        for (key, target) in COLUMNS {
            let value = self
                .get(key)
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
            let verdict = match (self.verdict(key), target.is_empty()) {
                (Some(true), _) => "ok",
                (Some(false), _) => "MISS",
                (None, false) => "no value",
                (None, true) => "",
            };
            out.push_str(&format!("{key:<36} {value:>14}  {target:<24} {verdict}\n"));
        }
        out
    }

    /// One row for the results table in bench/README.md.
    pub fn markdown_row(&self) -> String {
        let text = |k: &str| {
            self.values
                .get(k)
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .unwrap_or_default()
        };
        let mut cells = vec![
            text("date").chars().take(10).collect::<String>(),
            text("commit"),
            text("workers"),
            self.get("duration_s")
                .map_or_else(String::new, |d| format!("{:.0} s", d)),
        ];
        for (key, _) in COLUMNS {
            let value = self.get(key).map_or_else(
                || "—".to_owned(),
                |v| {
                    if v.abs() >= 100.0 || v.fract() == 0.0 {
                        format!("{v:.0}")
                    } else {
                        format!("{v:.2}")
                    }
                },
            );
            cells.push(match self.verdict(key) {
                Some(false) => format!("**{value}** ✗"),
                _ => value,
            });
        }
        format!("| {} |", cells.join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_compare_with_targets_and_related_figures() {
        let mut r = Report::default();
        r.num("workers", 200.0);
        r.num("connected_workers", 200.0);
        r.num("ws_floor_rss_per_conn_bytes", 4000.0);
        r.num("server_rss_per_worker_bytes", 7000.0);
        r.num("fsync_ceiling_per_s", 2500.0);
        r.num("enroll_token_per_s", 2100.0);
        assert_eq!(r.verdict("connected_workers"), Some(true));
        assert_eq!(r.verdict("server_rss_per_worker_bytes"), Some(false));
        assert_eq!(r.verdict("enroll_token_per_s"), Some(false));
        assert_eq!(r.verdict("revoke_p99_ms"), None);
        r.num("revoke_p99_ms", f64::NAN);
        assert_eq!(r.to_json()["revoke_p99_ms"], Value::Null);
    }
}

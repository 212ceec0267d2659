//! The results of a run: `latest.json` (flat keys, numbers for figures) and the table printed
//! at the end, each figure next to its target.

use serde_json::{Map, Value};

#[derive(Debug)]
pub struct Report {
    values: Map<String, Value>,
    pub errors: Vec<String>,
    layout: &'static Layout,
}

impl Default for Report {
    fn default() -> Self {
        Self::new(&SINGLE)
    }
}

/// Which figures a kind of run prints, in order, with their targets, and which keys start its
/// row in README.md's results table (after the date and the commit).
#[derive(Debug)]
pub struct Layout {
    pub lead: &'static [&'static str],
    pub columns: &'static [(&'static str, &'static str)],
}

/// `bench/run`: one server.
pub const SINGLE: Layout = Layout {
    lead: &["workers"],
    columns: COLUMNS,
};

/// `bench/run --replicas R`: R servers on one PostgreSQL database.
pub const REPLICAS: Layout = Layout {
    lead: &["replicas", "workers_per_replica"],
    columns: REPLICA_COLUMNS,
};

/// `bench/run --ui`: the list API and the Workers page with a large fleet in the store.
pub const UI: Layout = Layout {
    lead: &["workers_in_store", "workers"],
    columns: UI_COLUMNS,
};

/// The figures of a `--ui` run, in the order README.md's table uses. Issue 14's goals: KB are
/// 1,024 bytes.
pub const UI_COLUMNS: &[(&str, &str)] = &[
    ("connected_workers", "= N"),
    ("list_limit100_p50_ms", ""),
    ("list_limit100_p99_ms", "<= 50"),
    ("list_limit100_bytes", "<= 51200 (gzip)"),
    ("list_connected_limit100_p99_ms", ""),
    ("overview_query_p50_ms", ""),
    ("overview_query_p99_ms", ""),
    ("overview_fragment_p99_ms", ""),
    ("page_html_p50_ms", ""),
    ("page_html_p99_ms", ""),
    ("page_first_render_ms", "<= 500"),
    ("page_first_load_bytes", "<= 307200"),
    ("page_first_load_transfer_bytes", ""),
    ("page_live_bytes_per_min", "<= 51200"),
    ("page_warm_render_ms", ""),
];

/// The figures with targets of a replica run, in the order README.md's replica table uses.
pub const REPLICA_COLUMNS: &[(&str, &str)] = &[
    ("connected_workers", "= R x N"),
    ("connected_min_by_replica", "= R x N on every replica"),
    ("server_rss_per_worker_max_bytes", ""),
    ("single_rss_per_worker_bytes", ""),
    ("server_rss_ratio_to_single", "<= 1.10"),
    ("revoke_cross_p50_ms", ""),
    ("revoke_cross_p99_ms", "<= 10"),
    ("failover_s", "<= 15"),
    ("failover_gave_up", "= 0"),
    ("failover_jobs_reattached", "= failover_jobs"),
    ("failover_jobs_lost", "= 0"),
    ("connect_s", ""),
    ("connect_cpu_replicas_s", ""),
    ("connect_cpu_postgres_s", ""),
    ("failover_cpu_survivors_s", ""),
    ("failover_cpu_postgres_s", ""),
];

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
    pub fn new(layout: &'static Layout) -> Self {
        Self {
            values: Map::new(),
            errors: Vec::new(),
            layout,
        }
    }

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
            "connected_min_by_replica" => Some(v) == self.get("workers"),
            "server_rss_ratio_to_single" => v <= 1.10,
            "revoke_cross_p99_ms" => v <= 10.0,
            "failover_s" => v <= 15.0,
            "failover_gave_up" | "failover_jobs_lost" => v == 0.0,
            "failover_jobs_reattached" => Some(v) == self.get("failover_jobs"),
            "list_limit100_p99_ms" => v <= 50.0,
            "list_limit100_bytes" | "page_live_bytes_per_min" => v <= 51_200.0,
            "page_first_render_ms" => v <= 500.0,
            "page_first_load_bytes" => v <= 307_200.0,
            _ => return None,
        })
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<36} {:>14}  {:<24} {}\n",
            "figure", "value", "target", "verdict"
        ));
        for (key, target) in self.layout.columns {
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
        ];
        cells.extend(self.layout.lead.iter().map(|k| text(k)));
        cells.push(
            self.get("duration_s")
                .map_or_else(String::new, |d| format!("{:.0} s", d)),
        );
        for (key, _) in self.layout.columns {
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

    #[test]
    fn a_ui_run_judges_issue_14s_goals_in_kib() {
        let mut r = Report::new(&UI);
        r.num("workers_in_store", 100_000.0);
        r.num("workers", 19_000.0);
        r.num("connected_workers", 19_000.0);
        r.num("list_limit100_p99_ms", 50.5);
        r.num("list_limit100_bytes", 51_200.0);
        r.num("page_first_render_ms", 316.0);
        r.num("page_first_load_bytes", 307_201.0);
        r.num("page_live_bytes_per_min", 120.0);
        assert_eq!(r.verdict("connected_workers"), Some(true));
        assert_eq!(r.verdict("list_limit100_p99_ms"), Some(false));
        assert_eq!(r.verdict("list_limit100_bytes"), Some(true));
        assert_eq!(r.verdict("page_first_render_ms"), Some(true));
        assert_eq!(r.verdict("page_first_load_bytes"), Some(false));
        assert_eq!(r.verdict("page_live_bytes_per_min"), Some(true));
        assert_eq!(r.verdict("overview_query_p99_ms"), None);
        assert!(r.table().contains("page_live_bytes_per_min"));
        assert!(!r.table().contains("revoke_p99_ms"));
    }

    #[test]
    fn a_replica_run_has_its_own_columns_and_targets() {
        let mut r = Report::new(&REPLICAS);
        r.set("date", "2026-11-30T19:00:00Z");
        r.set("commit", "abc1234");
        r.num("replicas", 5.0);
        r.num("workers_per_replica", 19_000.0);
        r.num("workers", 95_000.0);
        r.num("connected_workers", 95_000.0);
        r.num("connected_min_by_replica", 94_999.0);
        r.num("server_rss_ratio_to_single", 1.04);
        r.num("failover_jobs", 20.0);
        r.num("failover_jobs_reattached", 20.0);
        r.num("failover_s", 15.5);
        assert_eq!(r.verdict("connected_min_by_replica"), Some(false));
        assert_eq!(r.verdict("server_rss_ratio_to_single"), Some(true));
        assert_eq!(r.verdict("failover_jobs_reattached"), Some(true));
        assert_eq!(r.verdict("failover_s"), Some(false));
        let row = r.markdown_row();
        assert!(
            row.starts_with("| 2026-11-30 | abc1234 | 5 | 19000 |"),
            "{row}"
        );
        assert!(row.contains("**15.50** ✗"), "{row}");
        assert_eq!(row.matches(" | ").count(), 4 + REPLICA_COLUMNS.len());
        assert!(r.table().contains("failover_jobs_lost"));
        assert!(!r.table().contains("enroll_token_per_s"));
    }
}

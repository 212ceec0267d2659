//! Revocation: from the moment the revoke call is made to the moment the revoked worker reads
//! the server's close frame. Tokens are revoked one at a time, each against an otherwise idle,
//! fully connected fleet.

use std::time::{Duration, Instant};

use muster_client::Client;
use muster_proto::control::CloseCode;

use super::fleet::Tracker;
use super::report::Report;
use crate::clock::{ms_between, now_us};
use crate::stats::summarize;

#[derive(Debug, Default)]
pub struct Revocations {
    /// Call made → close frame read, in ms.
    pub cutoff_ms: Vec<f64>,
    /// Call made → API answer, in ms.
    pub api_ms: Vec<f64>,
    /// Victims that were not connected, or saw no close frame within 5 s.
    pub missed: usize,
    /// Close frames with another code than "revoked".
    pub wrong_code: usize,
    pub errors: Vec<String>,
}

impl Revocations {
    /// Writes the figures under `PREFIX_p50_ms`, `PREFIX_p99_ms`, … and the failures as errors.
    pub fn record(&self, report: &mut Report, prefix: &str) {
        let s = summarize(&self.cutoff_ms);
        report.num(&format!("{prefix}_p50_ms"), s.map(|s| s.p50));
        report.num(&format!("{prefix}_p99_ms"), s.map(|s| s.p99));
        report.num(&format!("{prefix}_max_ms"), s.map(|s| s.max));
        report.num(&format!("{prefix}_samples"), self.cutoff_ms.len() as f64);
        report.num(&format!("{prefix}_missed"), self.missed as f64);
        report.num(
            &format!("{prefix}_api_p50_ms"),
            crate::stats::percentile(&self.api_ms, 50.0),
        );
        if self.wrong_code > 0 {
            report.error(format!(
                "revocation: {} close frames were not 4001",
                self.wrong_code
            ));
        }
        for e in self.errors.iter().take(3) {
            report.error(format!("revocation: {e}"));
        }
    }
}

/// Revokes each victim's token through the client paired with it (with replicas, one that does
/// not hold the victim's channel).
pub async fn measure(tracker: &Tracker, victims: &[(&Client, String)]) -> Revocations {
    let mut out = Revocations::default();
    for (i, (client, name)) in victims.iter().enumerate() {
        if i % 50 == 0 {
            eprintln!("  revoked {i}/{}", victims.len());
        }
        let connected = tracker.with(|s| s.workers.get(name).is_some_and(|r| r.connected));
        if !connected {
            out.missed += 1;
            continue;
        }
        let t0 = now_us();
        if let Err(e) = client.revoke_token(name).await {
            out.errors.push(format!("revoke `{name}`: {e}"));
            continue;
        }
        out.api_ms.push(ms_between(t0, now_us()));
        let waited = Instant::now();
        loop {
            let seen = tracker.with(|s| {
                s.workers
                    .get(name)
                    .and_then(|r| r.close_frame)
                    .filter(|(_, t)| *t >= t0)
            });
            if let Some((code, t)) = seen {
                if code != CloseCode::Revoked {
                    out.wrong_code += 1;
                }
                out.cutoff_ms.push(ms_between(t0, t));
                break;
            }
            if waited.elapsed() > Duration::from_secs(5) {
                out.missed += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    eprintln!("  revoked {}/{}", victims.len(), victims.len());
    out
}

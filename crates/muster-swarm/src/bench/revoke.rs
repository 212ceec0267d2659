//! Revocation: from the moment the revoke call is made to the moment the revoked worker reads
//! the server's close frame. Tokens are revoked one at a time, each against an otherwise idle,
//! fully connected fleet.

use std::time::{Duration, Instant};

use muster_client::Client;
use muster_proto::control::CloseCode;

use super::fleet::Tracker;
use crate::clock::{ms_between, now_us};

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

pub async fn measure(client: &Client, tracker: &Tracker, victims: &[String]) -> Revocations {
    let mut out = Revocations::default();
    for (i, name) in victims.iter().enumerate() {
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

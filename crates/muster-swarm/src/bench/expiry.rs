//! Expiry: many tokens minted so that they all expire at the same instant, their workers
//! enrolled and connected, and for each the lateness of its cut-off: the time the worker read
//! the "expired" close frame minus the token's `expires_at`.

use std::path::Path;
use std::time::Duration;

use muster_client::Client;
use muster_proto::control::CloseCode;

use super::fleet::{Fleet, Target};
use super::mint;
use crate::clock::{ms_between, now_us};
use crate::creds;

/// How long before the first expiry the connected workers are counted.
const SNAPSHOT_MARGIN: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
pub struct Expiries {
    pub lateness_ms: Vec<f64>,
    /// Workers not connected when their token expired (the lead was too short).
    pub not_connected: usize,
    /// Connected at expiry, but no "expired" close frame within 10 s after it.
    pub missed: usize,
    /// Spread of the tokens' `expires_at`, in ms.
    pub expires_spread_ms: f64,
}

#[allow(clippy::too_many_arguments)]
pub async fn measure(
    client: &Client,
    swarm_bin: &Path,
    data_dir: &Path,
    work: &Path,
    run_id: &str,
    count: usize,
    lead: Duration,
    concurrency: usize,
    swarm_args: &[String],
) -> anyhow::Result<Expiries> {
    let target_us = now_us() + u64::try_from(lead.as_micros()).unwrap_or(u64::MAX);
    let minted = mint::tokens(client, mint::names("x", count), run_id, concurrency, || {
        let left_ms = target_us.saturating_sub(now_us()) / 1000;
        format!("{}ms", left_ms.max(1000))
    })
    .await?;
    let first = minted.iter().map(|m| m.expires_at_us).min().unwrap_or(0);
    let last = minted.iter().map(|m| m.expires_at_us).max().unwrap_or(0);
    let path = work.join("creds-expiry.jsonl");
    creds::write(
        &path,
        &minted.iter().map(|m| m.cred.clone()).collect::<Vec<_>>(),
    )?;
    let fleet = Fleet::start(
        swarm_bin,
        &path,
        Target::DataDir(data_dir),
        1,
        work,
        "expiry",
        swarm_args,
    )?;
    // Who is connected is read a little before the first expiry: read at the instant itself, a
    // server that cuts workers off within milliseconds would already have closed them all.
    let until_snapshot =
        Duration::from_micros(first.saturating_sub(now_us())).saturating_sub(SNAPSHOT_MARGIN);
    fleet
        .tracker
        .wait_for("expiry workers connected", count, until_snapshot, |s| {
            s.connected
        })
        .await;
    let connected_at_expiry: Vec<String> = fleet.tracker.with(|s| {
        s.workers
            .iter()
            .filter(|(_, r)| r.connected)
            .map(|(n, _)| n.clone())
            .collect()
    });
    let mut out = Expiries {
        not_connected: count - connected_at_expiry.len(),
        expires_spread_ms: ms_between(first, last),
        ..Default::default()
    };
    eprintln!(
        "  {} of {count} expiry workers connected; tokens expire within {:.0} ms of each other",
        connected_at_expiry.len(),
        out.expires_spread_ms
    );
    let wait = Duration::from_micros(last.saturating_sub(now_us())) + Duration::from_secs(10);
    let closed = |s: &super::fleet::State| {
        connected_at_expiry
            .iter()
            .filter(|n| {
                s.workers
                    .get(*n)
                    .and_then(|r| r.close_frame)
                    .is_some_and(|(code, _)| code == CloseCode::Expired)
            })
            .count()
    };
    fleet
        .tracker
        .wait_for("expired", connected_at_expiry.len(), wait, closed)
        .await;
    let expires: std::collections::HashMap<&str, u64> = minted
        .iter()
        .map(|m| (m.cred.name.as_str(), m.expires_at_us))
        .collect();
    fleet.tracker.with(|s| {
        for name in &connected_at_expiry {
            match s.workers.get(name).and_then(|r| r.close_frame) {
                Some((CloseCode::Expired, t)) => {
                    let at = expires.get(name.as_str()).copied().unwrap_or(t);
                    out.lateness_ms.push(ms_between(at, t));
                }
                _ => out.missed += 1,
            }
        }
    });
    fleet.stop().await;
    Ok(out)
}

//! The reconnect storm: `kill -9` the server, start it again on the same data dir and port,
//! and time until every worker has its welcome again. Workers come back on their own, with the
//! real backoff; nothing is staggered for them.

use std::time::Duration;

use super::fleet::Tracker;
use super::procs::Server;
use crate::clock::now_us;

#[derive(Debug, Default)]
pub struct Storm {
    /// Restart → last worker welcomed again; `None` if not all came back in time.
    pub seconds: Option<f64>,
    /// Restart → the server answers its health check.
    pub server_ready_s: f64,
    pub reconnected: usize,
    /// Restart → welcome, per worker that came back: median and p99, in seconds.
    pub p50_s: Option<f64>,
    pub p99_s: Option<f64>,
    /// Workers that stopped for good after the kill.
    pub gave_up: usize,
}

pub async fn measure(
    server: &mut Server,
    tracker: &Tracker,
    population: usize,
    timeout: Duration,
) -> anyhow::Result<Storm> {
    let killed = now_us();
    server.kill9().await?;
    let restarted = now_us();
    server.restart()?;
    server.wait_ready(Duration::from_secs(120)).await?;
    let server_ready_s = (now_us() - restarted) as f64 / 1e6;
    eprintln!("  server answering {server_ready_s:.2} s after the restart");
    let back = |s: &super::fleet::State| {
        s.workers
            .values()
            .filter(|r| r.connected && r.last_welcome.is_some_and(|t| t > restarted))
            .count()
    };
    let (reconnected, all) = tracker
        .wait_for("reconnected", population, timeout, back)
        .await;
    let back_after: Vec<f64> = tracker.with(|s| {
        s.workers
            .values()
            .filter_map(|r| r.last_welcome.filter(|t| *t > restarted))
            .map(|t| (t - restarted) as f64 / 1e6)
            .collect()
    });
    let (last, gave_up) = tracker.with(|s| {
        let last = s
            .workers
            .values()
            .filter_map(|r| r.last_welcome.filter(|t| *t > restarted))
            .max();
        let gave_up = s
            .workers
            .values()
            .filter(|r| r.gave_up.as_ref().is_some_and(|(_, t, _)| *t > killed))
            .count();
        (last, gave_up)
    });
    Ok(Storm {
        seconds: all
            .then(|| last.map(|t| (t - restarted) as f64 / 1e6))
            .flatten(),
        server_ready_s,
        reconnected,
        gave_up,
        p50_s: crate::stats::percentile(&back_after, 50.0),
        p99_s: crate::stats::percentile(&back_after, 99.0),
    })
}

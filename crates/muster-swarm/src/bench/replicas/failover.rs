//! A replica's death: `kill -9` of one replica with its workers connected and jobs running on
//! some of them, then the time until every one of its workers holds a channel to another
//! replica (their own reconnect loop, `--url` order and backoff; nothing is staggered for them),
//! and how its jobs ended.

use std::time::{Duration, Instant};

use anyhow::bail;
use muster_client::Client;
use muster_proto::api::{JobState, SubmitJobRequest};

use crate::bench::fleet::{State, Tracker};
use crate::bench::procs::Server;
use crate::clock::now_us;

#[derive(Debug)]
pub struct Failover {
    /// Workers connected to the killed replica at the kill.
    pub workers: usize,
    /// Of those, the ones welcomed by another replica since.
    pub moved: usize,
    /// Kill → the last of them welcomed elsewhere; `None` if not all were in time.
    pub seconds: Option<f64>,
    /// Kill → welcome elsewhere, per worker: median and p99, in seconds.
    pub p50_s: Option<f64>,
    pub p99_s: Option<f64>,
    /// Workers (any) that stopped for good after the kill.
    pub gave_up: usize,
    /// When the kill was sent.
    pub killed_at: Instant,
}

/// Kills `victim` (whose URL is `victim_url`) with SIGKILL and waits until every worker it held
/// is welcomed by another replica.
pub async fn kill_and_wait(
    victim: &mut Server,
    victim_url: &str,
    tracker: &Tracker,
    timeout: Duration,
) -> anyhow::Result<Failover> {
    let (held, index) = tracker.with(|s| {
        let index = s.server_index(victim_url);
        let held: Vec<String> = s
            .workers
            .iter()
            .filter(|(_, r)| r.connected && index.is_some() && r.server == index)
            .map(|(name, _)| name.clone())
            .collect();
        (held, index)
    });
    if held.is_empty() {
        bail!("no worker is connected to the replica to kill ({victim_url})");
    }
    eprintln!("  kill -9 of the replica holding {} workers", held.len());
    let killed_at = Instant::now();
    let killed = now_us();
    victim.kill9().await?;
    let moved = |s: &State| {
        held.iter()
            .filter(|name| {
                s.workers.get(*name).is_some_and(|r| {
                    r.connected && r.server != index && r.last_welcome.is_some_and(|t| t > killed)
                })
            })
            .count()
    };
    let (count, all) = tracker
        .wait_for("failed over", held.len(), timeout, moved)
        .await;
    let (back_after, gave_up) = tracker.with(|s| {
        let back: Vec<f64> = held
            .iter()
            .filter_map(|n| s.workers.get(n))
            .filter(|r| r.server != index)
            .filter_map(|r| r.last_welcome.filter(|t| *t > killed))
            .map(|t| (t - killed) as f64 / 1e6)
            .collect();
        let gave_up = s
            .workers
            .values()
            .filter(|r| r.gave_up.as_ref().is_some_and(|(_, t, _)| *t > killed))
            .count();
        (back, gave_up)
    });
    Ok(Failover {
        workers: held.len(),
        moved: count,
        seconds: all
            .then(|| crate::stats::percentile(&back_after, 100.0))
            .flatten(),
        p50_s: crate::stats::percentile(&back_after, 50.0),
        p99_s: crate::stats::percentile(&back_after, 99.0),
        gave_up,
        killed_at,
    })
}

/// One long job on each of `workers`, submitted through `admin`; returns their ids.
pub async fn start_jobs(
    admin: &Client,
    workers: &[String],
    sleep: Duration,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(workers.len());
    for name in workers {
        let job = admin
            .submit_job(&SubmitJobRequest {
                command: vec!["sleep".into(), sleep.as_secs().max(1).to_string()],
                worker: Some(name.clone()),
                labels: Default::default(),
                env: Default::default(),
                timeout: Some(format!("{}s", sleep.as_secs() + 600)),
                queue_timeout: Some("60s".into()),
            })
            .await
            .map_err(|e| anyhow::anyhow!("submitting a job to `{name}`: {e}"))?;
        ids.push(job.id);
    }
    Ok(ids)
}

/// How the jobs ended, as `admin` shows them.
#[derive(Debug, Default)]
pub struct Endings {
    /// Ended `succeeded` with exit code 0: re-attached and followed to their end.
    pub succeeded: usize,
    pub lost: usize,
    /// Ended otherwise (`state: reason`).
    pub other: Vec<String>,
    /// Not ended by the deadline.
    pub unfinished: usize,
    /// What the first of those looked like at the deadline (id, state, worker, output bytes),
    /// so a run that misses says which job and where it stood.
    pub first_unfinished: Option<String>,
}

/// Waits until every job is in `state` (or has ended, when `state` is `None`), asking `admin`.
pub async fn wait_jobs(
    admin: &Client,
    ids: &[String],
    state: Option<JobState>,
    timeout: Duration,
) -> anyhow::Result<Endings> {
    let start = Instant::now();
    loop {
        let mut out = Endings::default();
        let mut waiting = 0;
        for id in ids {
            let job = admin
                .show_job(id)
                .await
                .map_err(|e| anyhow::anyhow!("job {id}: {e}"))?;
            match job.state {
                s if Some(s) == state => {}
                JobState::Queued | JobState::Running => {
                    waiting += 1;
                    out.first_unfinished.get_or_insert_with(|| {
                        format!(
                            "job {} {} on worker {} since {}, {} output bytes",
                            job.id,
                            job.state.as_str(),
                            job.worker.as_deref().unwrap_or("-"),
                            job.started_at.as_deref().unwrap_or("-"),
                            job.output_bytes
                        )
                    });
                }
                JobState::Succeeded if job.exit_code == Some(0) => out.succeeded += 1,
                JobState::Lost => out.lost += 1,
                other => out.other.push(format!(
                    "{}: {}",
                    other.as_str(),
                    job.reason.unwrap_or_default()
                )),
            }
        }
        // Waiting for a state: any job that ended instead will never reach it.
        let hopeless = state.is_some() && out.succeeded + out.lost + out.other.len() > 0;
        if waiting == 0 || hopeless || start.elapsed() > timeout {
            out.unfinished = waiting;
            return Ok(out);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

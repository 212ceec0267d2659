//! Retention while the server runs: once at start and then every hour, audit records older than
//! `--audit-retention` and jobs that ended longer ago than `--job-retention` (with their output)
//! are deleted, one small batch per transaction, so a large backlog never holds the writer for
//! long. What a run deleted is itself recorded in the audit log.

use std::time::Duration;

use muster_core::audit::{AuditEvent, Outcome};
use muster_core::{Timestamp, format_duration};
use muster_store::flows::retention;
use muster_store::{Store, StoreResult};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::clock::Clock;

/// How often the pruner runs (and once at start).
const EVERY: Duration = Duration::from_secs(3600);
/// Audit records deleted per transaction: small rows, so a few hundred take milliseconds.
const AUDIT_BATCH: u32 = 500;
/// Jobs deleted per transaction: each may carry up to the output cap (1 MiB by default).
const JOB_BATCH: u32 = 20;

/// How long records are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub audit: Duration,
    pub jobs: Duration,
}

/// Prunes at once and then every [`EVERY`], until `stop`.
pub(super) async fn prune_forever(
    store: Store,
    clock: Clock,
    retention: Retention,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        if let Err(e) = prune(&store, clock, retention, &stop).await {
            tracing::warn!(error = %e, "cannot prune old audit records and jobs; trying again in an hour");
        }
    }
}

/// One run: every batch older than the cut-offs (taken at the start of the run), unless `stop`
/// is raised between two batches. Records what it deleted.
pub async fn prune(
    store: &Store,
    clock: Clock,
    retention: Retention,
    stop: &watch::Receiver<bool>,
) -> StoreResult<()> {
    let now = clock.now();
    let audit_before = now.saturating_sub(retention.audit);
    let jobs_before = now.saturating_sub(retention.jobs);
    let audit = in_batches(stop, AUDIT_BATCH, |batch| {
        store.write(move |tx| retention::prune_audit(tx, audit_before, batch))
    })
    .await?;
    let jobs = in_batches(stop, JOB_BATCH, |batch| {
        store.write(move |tx| retention::prune_jobs(tx, jobs_before, batch))
    })
    .await?;
    if audit + jobs == 0 {
        return Ok(());
    }
    tracing::info!(audit, jobs, "pruned old audit records and ended jobs");
    let event = record(now, retention, audit, jobs);
    store
        .write(move |tx| muster_store::flows::audit::append(tx, &event))
        .await
}

/// Runs `one(batch)` until it deletes fewer than `batch` (none older are left) or `stop` is
/// raised. Returns how many it deleted in all.
async fn in_batches<F>(
    stop: &watch::Receiver<bool>,
    batch: u32,
    one: impl Fn(u32) -> F,
) -> StoreResult<u64>
where
    F: Future<Output = StoreResult<u64>>,
{
    let mut deleted = 0;
    while !*stop.borrow() {
        let n = one(batch).await?;
        deleted += n;
        if n < u64::from(batch) {
            break;
        }
    }
    Ok(deleted)
}

fn record(now: Timestamp, retention: Retention, audit: u64, jobs: u64) -> AuditEvent {
    AuditEvent {
        expected: None,
        at: now,
        actor: "server".into(),
        action: "retention.prune".into(),
        target: "-".into(),
        remote_addr: None,
        outcome: Outcome::Ok,
        detail: format!(
            "deleted {audit} audit records older than {} and {jobs} jobs that ended more than {} ago",
            format_duration(retention.audit),
            format_duration(retention.jobs)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prunes_everything_older_across_batches_and_says_so() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_sqlite(&dir.path().join("db")).expect("store");
        let clock = Clock::system();
        let old = clock.now().saturating_sub(Duration::from_secs(3 * 3600));
        let events: Vec<AuditEvent> = (0..AUDIT_BATCH * 2 + 7)
            .map(|i| AuditEvent {
                expected: None,
                at: old,
                actor: "admin".into(),
                action: "token.create".into(),
                target: format!("t{i}"),
                remote_addr: None,
                outcome: Outcome::Ok,
                detail: String::new(),
            })
            .collect();
        store
            .write(move |tx| events.iter().try_for_each(|e| tx.insert_audit(e)))
            .await
            .expect("audit");
        let retention = Retention {
            audit: Duration::from_secs(3600),
            jobs: Duration::from_secs(3600),
        };
        let (_stop, stopped) = watch::channel(false);
        prune(&store, clock, retention, &stopped)
            .await
            .expect("prune");
        let left = store
            .read(|tx| {
                tx.list_audit(&muster_store::AuditFilter {
                    limit: 10,
                    ..Default::default()
                })
            })
            .await
            .expect("list");
        assert_eq!(left.len(), 1, "only the record of the run: {left:?}");
        assert_eq!(left[0].event.action, "retention.prune");
        assert_eq!(
            left[0].event.detail,
            "deleted 1007 audit records older than 1h and 0 jobs that ended more than 1h ago"
        );
        store.close();
    }
}

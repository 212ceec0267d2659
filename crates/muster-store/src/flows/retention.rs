//! Retention: audit records and ended jobs older than their configured ages are deleted, one
//! small batch per transaction, so pruning a large backlog never holds the writer for long.

use muster_core::Timestamp;

use crate::error::StoreResult;
use crate::tx::Tx;

/// Deletes at most `batch` audit records written before `before`, oldest first, and as many
/// finished webhook deliveries (delivered or given up) of events that old: a delivery log lives
/// as long as its events. Returns the larger count: fewer than `batch` means none older are left.
pub fn prune_audit(tx: &mut dyn Tx, before: Timestamp, batch: u32) -> StoreResult<u64> {
    let audit = tx.delete_audit_before(before, batch)?;
    let deliveries = tx.delete_deliveries_before(before, batch)?;
    Ok(audit.max(deliveries))
}

/// Deletes at most `batch` jobs that ended before `before`, with their output, oldest first.
/// Returns how many it deleted: fewer than `batch` means none older are left. Queued and running
/// jobs are never touched, however old.
pub fn prune_jobs(tx: &mut dyn Tx, before: Timestamp, batch: u32) -> StoreResult<u64> {
    let mut deleted = 0;
    for id in tx.ended_jobs_before(before, batch)? {
        if tx.delete_ended_job(&id)? {
            deleted += 1;
        }
    }
    Ok(deleted)
}

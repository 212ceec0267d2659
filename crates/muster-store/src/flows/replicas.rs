//! Replicas sharing one store: who is connected (presence), and each replica's lease.
//!
//! A replica records each live control channel it holds (`Tx::put_presence`, with the
//! connection id, so an older connection's end never clears a newer one's row) and renews its
//! lease every second. A replica that finds another's lease lapsed takes it over in one
//! transaction: exactly one of several that notice wins the lease's deletion, clears the dead
//! replica's presence rows and takes its running jobs, which then wait for their workers as
//! after a restart.

use muster_core::Timestamp;

use crate::error::StoreResult;
use crate::flows::jobs::{self, Held};
use crate::tx::Tx;

/// At a replica's start: its rows from before (a crash leaves them) are cleared, and its lease
/// taken.
pub fn start(tx: &mut dyn Tx, replica: &str, at: Timestamp) -> StoreResult<u64> {
    let stale = tx.drop_replica_presence(replica)?;
    tx.beat_replica(replica, at)?;
    Ok(stale)
}

/// The instant leases are written and judged at: the store's own clock when it has one (see
/// [`Tx::store_clock`]), else `fallback` (the server's clock, read by the caller).
pub fn lease_clock(tx: &mut dyn Tx, fallback: Timestamp) -> StoreResult<Timestamp> {
    Ok(tx.store_clock()?.unwrap_or(fallback))
}

/// Renews `me`'s lease and takes over every replica silent for longer than `lease`, both on the
/// store's clock (see [`lease_clock`]), read inside the transaction.
pub fn beat_on_store_clock(
    tx: &mut dyn Tx,
    me: &str,
    fallback: Timestamp,
    lease: std::time::Duration,
) -> StoreResult<TakenOver> {
    let now = lease_clock(tx, fallback)?;
    beat_and_take_over(tx, me, now, now.saturating_sub(lease))
}

/// What taking over dead replicas changed.
#[derive(Debug, Default)]
pub struct TakenOver {
    /// This replica's own lease had lapsed and was taken by another (it was thought dead): it
    /// must record its live channels and take its running jobs back.
    pub was_taken_over: bool,
    /// The replicas found dead (and taken over by the caller).
    pub dead: Vec<String>,
    /// Presence rows cleared: workers that were connected to them.
    pub disconnected: u64,
    /// Every running job the caller now holds (its own too: it tracks the ones it did not).
    pub jobs: Vec<Held>,
}

/// Renews `me`'s lease and takes over every other replica whose lease is older than `before`.
pub fn beat_and_take_over(
    tx: &mut dyn Tx,
    me: &str,
    at: Timestamp,
    before: Timestamp,
) -> StoreResult<TakenOver> {
    let mut taken = TakenOver {
        was_taken_over: !tx.beat_replica(me, at)?,
        ..TakenOver::default()
    };
    for replica in tx.replicas_silent_since(before)? {
        if replica == me || !tx.drop_replica(&replica, before)? {
            continue;
        }
        taken.disconnected += tx.drop_replica_presence(&replica)?;
        tx.transfer_jobs(&replica, me)?;
        taken.dead.push(replica);
    }
    if !taken.dead.is_empty() {
        taken.jobs = jobs::held_by(tx, me)?;
    }
    Ok(taken)
}

//! Several units of work in one transaction, each in a savepoint of its own: a unit that fails
//! (its own error, or a statement PostgreSQL aborted, such as a deadlock's victim) is undone
//! alone, and the others commit. What a server writes for many workers at once (admissions in a
//! reconnect storm) then costs the database one transaction and one commit, not one per worker.
//!
//! A unit in a group must not take advisory locks ([`crate::Tx::serialize`], name locks): held
//! until the group commits, they would make every other unit of the group wait for them, and
//! make two groups deadlock on locks they take in different orders.

use crate::error::StoreResult;
use crate::tx::Tx;

/// Runs `unit` in a savepoint of `tx`. The outer error means the transaction itself is unusable
/// (the savepoint could not be opened or closed): the whole group fails. The inner one is the
/// unit's own, and its writes were undone.
pub fn isolated<R>(
    tx: &mut dyn Tx,
    unit: impl FnOnce(&mut dyn Tx) -> StoreResult<R>,
) -> StoreResult<StoreResult<R>> {
    tx.open_savepoint()?;
    let result = unit(tx);
    match tx.close_savepoint(result.is_ok()) {
        Ok(()) => Ok(result),
        // The unit called itself done after one of its statements failed: undone, and failed.
        Err(e) if result.is_ok() => Ok(Err(e)),
        Err(e) => Err(e),
    }
}

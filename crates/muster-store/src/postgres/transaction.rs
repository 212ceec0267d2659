//! [`PgTx`]: one transaction on a pool thread's connection, and what every statement in it goes
//! through: statements prepared once per connection, the first failed statement remembered, and
//! locks on names.
//!
//! Write transactions run at READ COMMITTED, and several run at once (from this process's other
//! threads and from other replicas). The conditional updates in [`Tx`](crate::Tx) stay atomic at
//! that level: an `UPDATE ... WHERE bound_machine IS NULL` that waited for a concurrent writer
//! re-checks its condition against the committed row. That does not cover a flow that reads,
//! decides, then inserts, such as "no token and no worker is called `x`, so create token `x`".
//! Two of those could both pass their checks. SQLite never has this problem because it runs one
//! writer at a time. Here, a write transaction takes a transaction-scoped advisory lock on a name
//! before it first reads or inserts a token or worker by that name. Every write flow that touches
//! a name therefore runs after any other write flow on that name has committed, just as it would
//! on SQLite, and the flows need no backend-specific code.

use std::collections::HashSet;

use muster_core::Name;
use postgres::Row;
use postgres::types::{FromSql, ToSql};

use super::conn::Conn;
use crate::error::{StoreError, StoreResult};
use crate::rows::{Column, ColumnSource};

/// The first key of the two-part advisory locks taken on names. It keeps them apart from other
/// applications' advisory locks in the same database. The value is "must" in ASCII.
const NAME_LOCK_CLASS: i32 = 0x6d75_7374;

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

pub(super) struct PgTx<'c> {
    conn: &'c mut Conn,
    /// Whether this is a write transaction, which takes name locks. Read transactions run on a
    /// snapshot and take none.
    write: bool,
    locked: HashSet<i32>,
    /// The first statement that failed. After any error PostgreSQL aborts the transaction, and a
    /// COMMIT then quietly rolls back. So if the work swallowed the error and returned success,
    /// the backend must report a failure, not a commit.
    failed: Option<StoreError>,
    /// While a savepoint is open: what to go back to if it is rolled back (whether a statement
    /// had failed before it, and the name locks held then; a rollback to a savepoint releases
    /// the locks taken since).
    savepoint: Option<(bool, HashSet<i32>)>,
}

impl<'c> PgTx<'c> {
    pub(super) fn new(conn: &'c mut Conn, write: bool) -> Self {
        Self {
            conn,
            write,
            locked: HashSet::new(),
            failed: None,
            savepoint: None,
        }
    }

    /// The channel [`Tx::notify`](crate::Tx::notify) announces events on.
    pub(super) fn events_channel(&self) -> String {
        self.conn.events_channel.clone()
    }

    /// The error that aborted the transaction, if a statement failed.
    pub(super) fn into_failure(self) -> Option<StoreError> {
        self.failed
    }

    fn track<T>(&mut self, result: Result<T, postgres::Error>) -> StoreResult<T> {
        result.map_err(|e| {
            let e = StoreError::from(e);
            self.failed.get_or_insert_with(|| e.clone());
            e
        })
    }

    fn simple(&mut self, sql: &str) -> StoreResult<()> {
        let done = self.conn.client.batch_execute(sql);
        self.track(done)
    }

    /// Opens the savepoint one unit of a group runs in ([`crate::Tx::open_savepoint`]).
    pub(super) fn savepoint(&mut self) -> StoreResult<()> {
        if self.savepoint.is_some() {
            return Err(StoreError::Backend("a savepoint is already open".into()));
        }
        self.simple("SAVEPOINT unit")?;
        self.savepoint = Some((self.failed.is_some(), self.locked.clone()));
        Ok(())
    }

    /// Keeps or undoes what the unit wrote. Undone, a failed statement of the unit no longer
    /// aborts the transaction, so it is forgotten (unless one had failed before the savepoint).
    pub(super) fn end_savepoint(&mut self, keep: bool) -> StoreResult<()> {
        let Some((failed_before, locked)) = self.savepoint.take() else {
            return Err(StoreError::Backend("no savepoint is open".into()));
        };
        if keep && self.failed.is_none() {
            return self.simple("RELEASE SAVEPOINT unit");
        }
        let undone = self
            .conn
            .client
            .batch_execute("ROLLBACK TO SAVEPOINT unit; RELEASE SAVEPOINT unit");
        if undone.is_ok() && !failed_before {
            self.failed = None;
        }
        self.locked = locked;
        self.track(undone)?;
        if keep {
            // The unit went on after a failed statement: what it wrote is gone, so it must not
            // be told it was kept.
            return Err(StoreError::Backend(
                "a statement of this unit failed; its changes were rolled back".into(),
            ));
        }
        Ok(())
    }

    /// Prepares `sql` once per connection. This saves a round trip on every later use.
    fn statement(&mut self, sql: &str) -> StoreResult<postgres::Statement> {
        if let Some(statement) = self.conn.statements.get(sql) {
            return Ok(statement.clone());
        }
        let prepared = self.conn.client.prepare(sql);
        let statement = self.track(prepared)?;
        self.conn
            .statements
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub(super) fn query(&mut self, sql: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
        let statement = self.statement(sql)?;
        let rows = self.conn.client.query(&statement, params);
        self.track(rows)
    }

    /// Like [`Self::query`], but planned afresh with these values (an unnamed statement, never
    /// cached): for a statement whose best plan depends on a value, as a substring's does.
    pub(super) fn query_planned_each_time(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> StoreResult<Vec<Row>> {
        let rows = self.conn.client.query(sql, params);
        self.track(rows)
    }

    pub(super) fn query_opt(&mut self, sql: &str, params: Params<'_>) -> StoreResult<Option<Row>> {
        let statement = self.statement(sql)?;
        let row = self.conn.client.query_opt(&statement, params);
        self.track(row)
    }

    pub(super) fn execute(&mut self, sql: &str, params: Params<'_>) -> StoreResult<u64> {
        let statement = self.statement(sql)?;
        let n = self.conn.client.execute(&statement, params);
        self.track(n)
    }

    /// Waits until no other write transaction holds `name`, then holds it until this
    /// transaction ends. It must be its own statement, before the read it guards: at READ
    /// COMMITTED each statement reads a snapshot taken when that statement starts. So only a
    /// read that starts after the lock is granted sees what the previous holder committed.
    pub(super) fn lock_name(&mut self, name: &Name) -> StoreResult<()> {
        let key = name_lock_key(name.as_str());
        if !self.write || !self.locked.insert(key) {
            return Ok(());
        }
        self.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&NAME_LOCK_CLASS, &key],
        )?;
        Ok(())
    }
}

/// FNV-1a, computed here rather than with PostgreSQL's `hashtext`. The key must be the same for
/// every replica, including replicas of different muster versions, and FNV-1a is fixed. A
/// collision only makes two names share a lock.
fn name_lock_key(name: &str) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(hash.to_ne_bytes())
}

/// Reads column `i`. A value of the wrong type means the schema is not the one this code wrote:
/// corrupt, and reported as such instead of panicking like `Row::get`.
pub(super) fn col<'r, T: FromSql<'r>>(row: &'r Row, i: usize) -> StoreResult<T> {
    row.try_get(i)
        .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
}

impl ColumnSource for Row {
    fn column<T: Column>(&self, i: usize) -> StoreResult<T> {
        col(self, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_lock_keys_are_fixed() {
        // Replicas of different versions must agree on these, so they are pinned.
        assert_eq!(
            name_lock_key(""),
            i32::from_ne_bytes(0x811c_9dc5_u32.to_ne_bytes())
        );
        assert_eq!(
            name_lock_key("a"),
            i32::from_ne_bytes(0xe40c_292c_u32.to_ne_bytes())
        );
        assert_ne!(name_lock_key("alpha"), name_lock_key("beta"));
    }
}

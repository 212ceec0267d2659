//! One thread of the pool: takes work from the shared queue and runs each unit in its own
//! transaction on the thread's connection. It delivers the outcome only after COMMIT has
//! returned.
//!
//! There is no batching here, unlike SQLite's writer. Each thread commits its own transactions,
//! and PostgreSQL groups concurrent commits from many connections into one WAL flush by itself.
//! A caller that writes many like units at once groups them itself, in one unit of work with a
//! savepoint each (`flows::group`): it knows which units take no advisory lock and in which
//! order their rows are locked, which this queue does not.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, mpsc};

use super::conn::{Conn, Connector};
use super::transaction::PgTx;
use super::{Mode, Task};
use crate::backend::Counters;
use crate::error::{StoreError, StoreResult};

/// Serves work until the queue is closed and drained. `conn` is the connection to start with
/// (the one that ran migrations). Without one, the thread connects now, so the first unit of work
/// does not wait for a connection, and it retries at each unit if that fails.
pub(super) fn serve(
    connector: &Connector,
    conn: Option<Conn>,
    tasks: &Mutex<mpsc::Receiver<Task>>,
    counters: &Counters,
) {
    let mut slot = conn.or_else(|| match connector.connect() {
        Ok(conn) => Some(conn),
        Err(e) => {
            tracing::warn!(error = %e, "cannot connect to PostgreSQL yet; will retry when work arrives");
            None
        }
    });
    loop {
        let task = {
            let rx = tasks.lock().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(task) => task,
                Err(_) => return,
            }
        };
        run(connector, &mut slot, task, counters);
    }
}

fn run(connector: &Connector, slot: &mut Option<Conn>, task: Task, counters: &Counters) {
    let Task { mode, work } = task;
    let began = std::time::Instant::now();
    let conn = match begin(connector, slot, mode) {
        Ok(conn) => conn,
        Err(e) => {
            // The caller learns why (the connection error), not a misleading "the store is
            // closed", and its closure never runs: there is no transaction to run it in.
            tracing::error!(error = %e, "cannot start a transaction; failing the work");
            work.fail(e);
            return;
        }
    };
    let mut tx = PgTx::new(conn, mode == Mode::Write);
    let outcome = catch_unwind(AssertUnwindSafe(|| work.run(&mut tx)));
    let statement_failed = tx.into_failure();
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(_) => {
            // The work's result channel was dropped while unwinding, so its caller gets
            // `StoreError::Closed`. What remains is to undo its writes.
            tracing::error!("store work panicked; its changes were rolled back");
            rollback(slot);
            return;
        }
    };
    if outcome.failed {
        rollback(slot);
        outcome.deliver(None);
        return;
    }
    if let Some(e) = statement_failed {
        // The work went on after a failed statement and called itself a success. PostgreSQL has
        // aborted the transaction, so COMMIT would roll back while looking fine. Report the
        // statement's error instead of a commit that did not happen.
        tracing::error!(error = %e, "store work ignored a failed statement; rolled back");
        rollback(slot);
        outcome.deliver(Some(e));
        return;
    }
    match commit(slot) {
        Ok(()) => {
            if mode == Mode::Write {
                counters.committed(1, began.elapsed());
            }
            outcome.deliver(None);
        }
        // If the connection broke during COMMIT, the transaction may or may not have committed.
        // Reporting an error is the only safe answer: the caller may then retry or re-read. It
        // never reports a change that did not happen.
        Err(e) => outcome.deliver(Some(e)),
    }
}

/// Opens a transaction, on a new connection if the thread has none or its connection broke. A
/// connection can break while idle (a server restart, a failover, an idle timeout), and that is
/// only found when BEGIN fails. No work has run at that point, so reconnecting and beginning
/// again cannot apply anything twice.
fn begin<'s>(
    connector: &Connector,
    slot: &'s mut Option<Conn>,
    mode: Mode,
) -> StoreResult<&'s mut Conn> {
    let began = match slot.as_mut() {
        Some(conn) if !conn.client.is_closed() => match conn.client.batch_execute(mode.begin()) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "the PostgreSQL connection broke; reconnecting");
                false
            }
        },
        _ => false,
    };
    if !began {
        // Drop the old connection first, so it never outlives its replacement.
        *slot = None;
        let mut conn = connector.connect()?;
        conn.client.batch_execute(mode.begin())?;
        *slot = Some(conn);
    }
    slot.as_mut()
        .ok_or_else(|| StoreError::Backend("no database connection".into()))
}

fn commit(slot: &mut Option<Conn>) -> StoreResult<()> {
    let Some(conn) = slot.as_mut() else {
        return Err(StoreError::Backend("no database connection".into()));
    };
    let result = conn.client.batch_execute("COMMIT");
    if result.is_err() && conn.client.is_closed() {
        *slot = None;
    }
    Ok(result?)
}

/// Rolls back the open transaction. If even that fails, the connection is in an unknown state.
/// It is dropped, which makes the server roll back, and the next unit of work opens a fresh one.
fn rollback(slot: &mut Option<Conn>) {
    if let Some(conn) = slot.as_mut()
        && let Err(e) = conn.client.batch_execute("ROLLBACK")
    {
        tracing::warn!(error = %e, "rollback failed; dropping the connection");
        *slot = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With no server to reach, the caller learns why (`Backend`, naming the cause), not a
    /// misleading "the store is closed", and the thread survives to serve the next unit of work.
    #[test]
    fn work_without_a_connection_fails_with_the_cause() {
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let connector = Connector::new("postgres://postgres@127.0.0.1:1/test", None).unwrap();
        let counters = Counters::default();
        let mut slot = None;
        for _ in 0..2 {
            let (done, mut result) = tokio::sync::oneshot::channel();
            let work = crate::Work::new(|tx| tx.put_setting("k", "v"), done);
            run(
                &connector,
                &mut slot,
                Task {
                    mode: Mode::Write,
                    work,
                },
                &counters,
            );
            match result.try_recv() {
                Ok(Err(StoreError::Backend(msg))) => assert!(msg.contains("refused"), "{msg}"),
                other => panic!("expected a backend error, got {other:?}"),
            }
        }
        assert_eq!(counters.stats().commits, 0);
    }
}

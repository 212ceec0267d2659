//! The embedded SQLite backend.
//!
//! One writer thread owns the only write connection. It takes every unit of write work waiting in
//! its queue, runs each in its own savepoint inside one transaction, commits once (one fsync with
//! `synchronous=FULL`), and only then tells each caller its outcome: group commit. Under load,
//! requests that arrive during one fsync share the next, so durable writes per second are not
//! bounded by the disk's fsync rate. Reads run on a few reader connections concurrently (WAL).

mod migrations;
mod snapshot;
mod transaction;
mod tx;

pub use migrations::LATEST as LATEST_SCHEMA;
pub use snapshot::{Snapshot, snapshot};

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use rusqlite::Connection;

use crate::backend::{Backend, CommitObserver, Counters, StoreStats, Work};
use crate::error::{StoreError, StoreResult};

/// The most units of work one transaction takes. Bounds how long one commit holds early callers.
const MAX_BATCH: usize = 1024;
const READERS: usize = 3;

pub struct SqliteBackend {
    writes: Mutex<Option<mpsc::Sender<Work>>>,
    reads: Mutex<Option<mpsc::Sender<Work>>>,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
    counters: Arc<Counters>,
}

fn open_connection(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // WAL: readers never block the writer. synchronous=FULL: a commit is on disk when it returns,
    // which is what lets the server say "done" only after a change is durable.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Creates the database file readable by its owner only, if it does not exist yet: it holds
/// every key hash and the audit log, and SQLite would create it with the umask's mode (often
/// 0644). SQLite gives its `-wal` and `-shm` files the database file's mode.
fn create_private(path: &Path) -> StoreResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Backend(format!(
            "cannot create the database file `{}`: {e}",
            path.display()
        ))),
    }
}

impl SqliteBackend {
    pub fn open(path: &Path) -> StoreResult<Self> {
        create_private(path)?;
        let mut writer = open_connection(path)?;
        // Every unit of a batch runs in a savepoint, and SQLite keeps a savepoint's original
        // pages in a statement journal that, past 64 KiB, it moves to a temporary file: created,
        // written and deleted once per batch. A token enrollment touches enough pages for that,
        // and the file's create and delete were 15 % of the server's CPU in the enrollment
        // benchmark (`perf`: `subjournalPage` → `unixOpen`, `releaseAllSavepoints` → `close`).
        // In memory the journal holds at most the pages one unit changes, which the page cache
        // and the WAL hold at commit anyway; it is never needed after a crash (the WAL is).
        writer.pragma_update(None, "temp_store", "MEMORY")?;
        migrations::apply(&mut writer)?;

        let mut threads = Vec::new();
        let counters = Arc::new(Counters::default());
        let writer_counters = Arc::clone(&counters);
        let (write_tx, write_rx) = mpsc::channel::<Work>();
        threads.push(
            thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer_loop(writer, write_rx, &writer_counters))
                .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?,
        );

        let (read_tx, read_rx) = mpsc::channel::<Work>();
        let read_rx = Arc::new(Mutex::new(read_rx));
        for i in 0..READERS {
            let conn = open_connection(path)?;
            conn.pragma_update(None, "query_only", "ON")?;
            let rx = Arc::clone(&read_rx);
            threads.push(
                thread::Builder::new()
                    .name(format!("store-reader-{i}"))
                    .spawn(move || reader_loop(conn, rx))
                    .map_err(|e| {
                        StoreError::Backend(format!("cannot start a reader thread: {e}"))
                    })?,
            );
        }
        Ok(Self {
            writes: Mutex::new(Some(write_tx)),
            reads: Mutex::new(Some(read_tx)),
            threads: Mutex::new(threads),
            counters,
        })
    }
}

fn send(queue: &Mutex<Option<mpsc::Sender<Work>>>, work: Work) {
    let guard = queue.lock().unwrap_or_else(|e| e.into_inner());
    match guard.as_ref() {
        // If the thread is gone the work is dropped, and its caller sees `StoreError::Closed`.
        Some(sender) => drop(sender.send(work)),
        None => drop(work),
    }
}

impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn stats(&self) -> StoreStats {
        self.counters.stats()
    }

    fn run_write(&self, work: Work) {
        send(&self.writes, work);
    }

    fn run_read(&self, work: Work) {
        send(&self.reads, work);
    }

    fn observe_commits(&self, observer: CommitObserver) {
        self.counters.observe(observer);
    }

    fn close(&self) {
        self.writes.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.reads.lock().unwrap_or_else(|e| e.into_inner()).take();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for SqliteBackend {
    fn drop(&mut self) {
        self.close();
    }
}

fn writer_loop(conn: Connection, queue: mpsc::Receiver<Work>, counters: &Counters) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(work) => batch.push(work),
                Err(_) => break,
            }
        }
        commit_batch(&conn, batch, counters);
    }
}

/// Runs one group of work in one transaction, counts it if it committed, then answers its
/// callers (counted first, so a caller that got its answer sees its write in the stats).
fn commit_batch(conn: &Connection, batch: Vec<Work>, counters: &Counters) {
    let size = batch.len() as u64;
    let began = std::time::Instant::now();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(error = %e, "cannot begin a write transaction");
        // Dropping the work tells its callers the store failed.
        return;
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for work in batch {
        if let Err(e) = conn.execute_batch("SAVEPOINT work") {
            tracing::error!(error = %e, "cannot open a savepoint");
            continue;
        }
        let mut tx = transaction::SqliteTx::new(conn);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.run(&mut tx)));
        let keep = matches!(&outcome, Ok(o) if !o.failed);
        let end = if keep {
            "RELEASE work"
        } else {
            "ROLLBACK TO work; RELEASE work"
        };
        if let Err(e) = conn.execute_batch(end) {
            tracing::error!(error = %e, "cannot close a savepoint");
        }
        match outcome {
            Ok(o) => outcomes.push(o),
            Err(_) => tracing::error!("store work panicked; its changes were rolled back"),
        }
    }
    let commit_error = conn.execute_batch("COMMIT").err().map(|e| {
        tracing::error!(error = %e, "commit failed; rolling back the batch");
        let _ = conn.execute_batch("ROLLBACK");
        StoreError::from(e)
    });
    if commit_error.is_none() {
        counters.committed(size, began.elapsed());
    }
    for outcome in outcomes {
        outcome.deliver(commit_error.clone());
    }
}

fn reader_loop(conn: Connection, queue: Arc<Mutex<mpsc::Receiver<Work>>>) {
    loop {
        let work = {
            let rx = queue.lock().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(work) => work,
                Err(_) => return,
            }
        };
        if let Err(e) = conn.execute_batch("BEGIN DEFERRED") {
            tracing::error!(error = %e, "cannot begin a read transaction");
            continue;
        }
        let mut tx = transaction::SqliteTx::new(&conn);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.run(&mut tx)));
        let _ = conn.execute_batch("COMMIT");
        match outcome {
            Ok(o) => o.deliver(None),
            Err(_) => tracing::error!("a store read panicked"),
        }
    }
}

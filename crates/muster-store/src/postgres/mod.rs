//! The PostgreSQL backend, for several server replicas sharing one fleet database.
//!
//! A small pool of dedicated OS threads each owns one connection (the synchronous `postgres`
//! client, which must not run inside the server's async runtime) and takes work, reads and writes
//! alike, from one shared queue. One more thread, on a connection of its own, serves the
//! replica's lease alone ([`Backend::run_lease`]), so a storm of admissions cannot starve it. Each unit of work runs in its own transaction and is delivered
//! after its COMMIT returned. Concurrent commits from the pool, and from other replicas, are
//! grouped into one WAL flush by PostgreSQL itself.
//!
//! The connection string is libpq's, as a URL or as `key=value` pairs:
//! `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?connect_timeout=SECS&application_name=NAME]`.
//! Connections are not encrypted (no TLS); use a local socket path, a trusted network, or a
//! tunnel.

mod conn;
mod events;
mod migrations;
mod pool;
mod transaction;
mod tx;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use crate::backend::{Backend, CommitObserver, Counters, StoreStats, Work};
use crate::error::{StoreError, StoreResult};
use conn::Connector;

/// Connections (and threads) per store. Enough to keep PostgreSQL's commit grouping busy under a
/// burst of enrollments. Small enough that a handful of replicas stay far below the server's
/// default `max_connections` of 100.
pub const POOL_SIZE: usize = 8;

/// PostgreSQL connections one server (replica) holds: its pool, the lease's own connection (see
/// [`Backend::run_lease`]) and the connection that listens for the other replicas'
/// notifications. Replicas × this must fit under `max_connections`.
pub const CONNECTIONS_PER_STORE: usize = POOL_SIZE + 2;

pub struct PostgresBackend {
    queue: Mutex<Option<mpsc::Sender<Task>>>,
    /// The lease's own queue, served by one thread on its own connection: a replica's lease
    /// renewal never waits behind admissions and other writes queued for the pool.
    lease: Mutex<Option<mpsc::Sender<Task>>>,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
    counters: Arc<Counters>,
    connector: Arc<Connector>,
    stop: Arc<AtomicBool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Read,
    Write,
}

impl Mode {
    fn begin(self) -> &'static str {
        match self {
            // Stated, not left to the server's `default_transaction_isolation`: name locks (see
            // `tx.rs`) rely on each statement taking a fresh snapshot, so a read that follows a
            // granted lock sees what the lock's previous holder committed.
            Mode::Write => "BEGIN ISOLATION LEVEL READ COMMITTED",
            // A read is promised a consistent snapshot across its statements. A read-only
            // REPEATABLE READ transaction never fails with a serialization error.
            Mode::Read => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        }
    }
}

struct Task {
    mode: Mode,
    work: Work,
}

impl PostgresBackend {
    /// Connects to the database at `url` and brings its schema up to date. Tables live wherever
    /// the connection's `search_path` puts them (normally `public`).
    pub fn open(url: &str) -> StoreResult<Self> {
        Self::start(Connector::new(url, None)?)
    }

    /// Like [`PostgresBackend::open`], with every table in `schema`, which is created if needed.
    /// Lets independent stores (tests, or several fleets) share one database. `schema` must be
    /// 1-63 characters of `a-z`, `0-9` and `_`, not starting with a digit.
    pub fn open_in_schema(url: &str, schema: &str) -> StoreResult<Self> {
        Self::start(Connector::new(url, Some(schema))?)
    }

    fn start(connector: Connector) -> StoreResult<Self> {
        let connector = Arc::new(connector);
        let counters = Arc::new(Counters::default());
        let (queue, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));

        // The first thread connects and migrates before the others start, and reports back.
        // That way `open` fails at once on a bad URL or an unreachable server. The work runs on
        // that thread, not this one, because this one may be inside an async runtime.
        let (ready_tx, ready_rx) = mpsc::sync_channel::<StoreResult<()>>(1);
        let (c, r, k) = (
            Arc::clone(&connector),
            Arc::clone(&rx),
            Arc::clone(&counters),
        );
        let first = spawn(0, move || {
            let opened = c.connect().and_then(|mut conn| {
                migrations::apply(&mut conn.client, c.quoted_schema().as_deref())?;
                Ok(conn)
            });
            match opened {
                Ok(conn) => {
                    let _ = ready_tx.send(Ok(()));
                    pool::serve(&c, Some(conn), &r, &k);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })?;
        // From here on, returning early drops `backend`, which closes the queue and joins every
        // thread started so far.
        let (lease, lease_rx) = mpsc::channel::<Task>();
        let backend = Self {
            queue: Mutex::new(Some(queue)),
            lease: Mutex::new(Some(lease)),
            threads: Mutex::new(vec![first]),
            counters: Arc::clone(&counters),
            connector: Arc::clone(&connector),
            stop: Arc::new(AtomicBool::new(false)),
        };
        ready_rx.recv().map_err(|_| {
            StoreError::Backend("the first PostgreSQL thread stopped before connecting".into())
        })??;
        for i in 1..POOL_SIZE {
            let (c, r, k) = (
                Arc::clone(&connector),
                Arc::clone(&rx),
                Arc::clone(&counters),
            );
            let thread = spawn(i, move || pool::serve(&c, None, &r, &k))?;
            backend
                .threads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(thread);
        }
        let (c, k) = (Arc::clone(&connector), Arc::clone(&counters));
        let lease_rx = Mutex::new(lease_rx);
        let thread = spawn_named("store-pg-lease".into(), move || {
            pool::serve(&c, None, &lease_rx, &k)
        })?;
        backend
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(thread);
        Ok(backend)
    }
}

fn spawn(i: usize, body: impl FnOnce() + Send + 'static) -> StoreResult<thread::JoinHandle<()>> {
    spawn_named(format!("store-pg-{i}"), body)
}

fn spawn_named(
    name: String,
    body: impl FnOnce() + Send + 'static,
) -> StoreResult<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(name)
        .spawn(body)
        .map_err(|e| StoreError::Backend(format!("cannot start a PostgreSQL thread: {e}")))
}

impl PostgresBackend {
    fn send(&self, mode: Mode, work: Work) {
        Self::send_to(&self.queue, mode, work);
    }

    fn send_to(queue: &Mutex<Option<mpsc::Sender<Task>>>, mode: Mode, work: Work) {
        let guard = queue.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            // If the threads are gone the work is dropped, and its caller sees
            // `StoreError::Closed`.
            Some(sender) => drop(sender.send(Task { mode, work })),
            None => drop(work),
        }
    }
}

impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn stats(&self) -> StoreStats {
        self.counters.stats()
    }

    fn run_write(&self, work: Work) {
        self.send(Mode::Write, work);
    }

    fn run_read(&self, work: Work) {
        self.send(Mode::Read, work);
    }

    fn run_lease(&self, work: Work) {
        Self::send_to(&self.lease, Mode::Write, work);
    }

    fn observe_commits(&self, observer: CommitObserver) {
        self.counters.observe(observer);
    }

    fn listen(&self, on_event: crate::EventHandler) {
        let connector = Arc::clone(&self.connector);
        let stop = Arc::clone(&self.stop);
        let spawned = spawn(POOL_SIZE, move || {
            events::listen(&connector, &stop, &on_event)
        });
        match spawned {
            Ok(thread) => self
                .threads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(thread),
            Err(e) => tracing::error!(error = %e, "cannot listen for replica events"),
        }
    }

    fn close(&self) {
        self.stop.store(true, Ordering::Relaxed);
        // Closing the queue lets each thread finish the work already queued and then stop.
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.lease.lock().unwrap_or_else(|e| e.into_inner()).take();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        self.close();
    }
}

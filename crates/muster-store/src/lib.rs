//! Durable state.
//!
//! [`Store`] is what the server holds: an async handle that runs closures over a [`Tx`] in a
//! transaction on a backend's own threads. The SQLite backend (the embedded default) serializes
//! writes on one thread and commits them in groups, so many concurrent durable changes share one
//! fsync. The PostgreSQL backend (for several server replicas sharing one database) implements
//! the same [`Tx`] over a pool of connections.
//!
//! Only this crate talks SQL.

pub mod backend;
mod codec;
pub mod error;
pub mod flows;
mod pages;
pub mod postgres;
mod rows;
pub mod sqlite;
pub mod tx;

#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "testing")]
pub mod upgrades;

use std::sync::Arc;

pub use backend::{Backend, CommitObserver, EventHandler, Heard, StoreStats, Work, WorkOutcome};
pub use error::{StoreError, StoreResult};
pub use tx::{
    Attempt, AttemptNext, AuditFilter, Delivery, DeliveryState, DueDelivery, FleetOverview, JobEnd,
    JobFilter, LabelMatch, OutputChunk, OutputPosition, Presence, Scope, SealedTicketKey,
    StoredStatus, TimedChunk, TokenPage, Tx, Webhook, WorkerPage, WorkerPosition, WorkerSort,
};

/// A cheap-to-clone handle to the durable state.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self { backend }
    }

    /// Opens (creating if needed) the embedded SQLite database at `path`.
    pub fn open_sqlite(path: &std::path::Path) -> StoreResult<Self> {
        Ok(Self::new(Arc::new(sqlite::SqliteBackend::open(path)?)))
    }

    /// Connects to the PostgreSQL database at `url` and brings its schema up to date. For the
    /// connection-string format see [`postgres`](crate::postgres).
    pub fn open_postgres(url: &str) -> StoreResult<Self> {
        Ok(Self::new(Arc::new(crate::postgres::PostgresBackend::open(
            url,
        )?)))
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    pub fn stats(&self) -> StoreStats {
        self.backend.stats()
    }

    /// Runs `f` in a write transaction. Resolves only after the transaction is committed — on
    /// disk — so a caller never reports a change that a crash could undo. If `f` returns an
    /// error, everything it wrote is rolled back.
    pub async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> StoreResult<R> + Send + 'static,
    {
        self.submit(f, |backend, work| backend.run_write(work))
            .await
    }

    /// Like [`Store::write`], for a replica's lease: on a path of its own, never queued behind
    /// other writes (see [`Backend::run_lease`]). Only the lease goes there: anything slow on
    /// it would delay the lease it exists to protect.
    pub async fn write_lease<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> StoreResult<R> + Send + 'static,
    {
        self.submit(f, |backend, work| backend.run_lease(work))
            .await
    }

    /// Runs `f` in a read-only transaction (a consistent snapshot).
    pub async fn read<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> StoreResult<R> + Send + 'static,
    {
        self.submit(f, |backend, work| backend.run_read(work)).await
    }

    /// Hands `f` to the backend through `to` (which path it takes) and waits for its result.
    async fn submit<R, F>(&self, f: F, to: fn(&dyn Backend, Work)) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> StoreResult<R> + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        to(self.backend.as_ref(), Work::new(f, done));
        result.await.map_err(|_| StoreError::Closed)?
    }

    /// Calls `observer` with how long each write transaction took to commit (see
    /// [`CommitObserver`]).
    pub fn observe_commits(&self, observer: CommitObserver) {
        self.backend.observe_commits(observer);
    }

    /// Calls `on_event` with every event replicas announce with [`Tx::notify`].
    pub fn listen(&self, on_event: EventHandler) {
        self.backend.listen(on_event);
    }

    /// Waits for writes already submitted to finish and stops the backend's threads.
    pub fn close(&self) {
        self.backend.close();
    }
}

//! What a backend provides to [`crate::Store`]: somewhere to run transactions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::{StoreError, StoreResult};
use crate::tx::Tx;

/// A unit of work for a backend thread: a caller's closure and the channel its result goes back
/// on. A backend either runs it in a transaction ([`Work::run`]) and then delivers the outcome
/// once that transaction has committed or failed ([`WorkOutcome::deliver`]), or, when it has no
/// transaction to offer (no database connection), fails it without running it ([`Work::fail`]).
/// Dropping it unrun tells the caller "the store is closed".
pub struct Work(Box<dyn Unit>);

/// [`Work`] with its closure's result type erased.
trait Unit: Send {
    fn run(self: Box<Self>, tx: &mut dyn Tx) -> WorkOutcome;
    fn fail(self: Box<Self>, error: StoreError);
}

struct Closure<F, R> {
    f: F,
    done: tokio::sync::oneshot::Sender<StoreResult<R>>,
}

impl<F, R> Unit for Closure<F, R>
where
    R: Send + 'static,
    F: FnOnce(&mut dyn Tx) -> StoreResult<R> + Send + 'static,
{
    fn run(self: Box<Self>, tx: &mut dyn Tx) -> WorkOutcome {
        let Closure { f, done } = *self;
        let result = f(tx);
        WorkOutcome {
            failed: result.is_err(),
            deliver: Box::new(move |commit_error| {
                let result = match commit_error {
                    None => result,
                    Some(e) => Err(e),
                };
                // The caller may have gone away (a dropped request); nothing to do then.
                let _ = done.send(result);
            }),
        }
    }

    fn fail(self: Box<Self>, error: StoreError) {
        // As in `run`: a caller that went away needs no answer.
        let _ = self.done.send(Err(error));
    }
}

/// What running a [`Work`] left to do: tell the backend whether to roll back, and hand the result
/// to the caller once the transaction's fate is known.
pub struct WorkOutcome {
    /// The work returned an error: the backend rolls back what it wrote.
    pub failed: bool,
    deliver: Box<dyn FnOnce(Option<StoreError>) + Send>,
}

impl WorkOutcome {
    /// Hands the result to the waiting caller. `commit_error` replaces the result when the
    /// transaction did not commit.
    pub fn deliver(self, commit_error: Option<StoreError>) {
        (self.deliver)(commit_error)
    }
}

impl Work {
    pub(crate) fn new<R, F>(f: F, done: tokio::sync::oneshot::Sender<StoreResult<R>>) -> Self
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> StoreResult<R> + Send + 'static,
    {
        Work(Box::new(Closure { f, done }))
    }

    /// Runs the closure in the transaction `tx`, which the backend opened.
    pub fn run(self, tx: &mut dyn Tx) -> WorkOutcome {
        self.0.run(tx)
    }

    /// Answers the caller with `error` without running the closure: the backend could not open
    /// a transaction for it, and says why rather than "the store is closed".
    pub fn fail(self, error: StoreError) {
        self.0.fail(error)
    }
}

/// Counters a backend keeps, for metrics and for tests of batching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Write transactions committed.
    pub commits: u64,
    /// Units of write work those transactions carried. `writes / commits` is the mean group
    /// size.
    pub writes: u64,
}

/// Told how long each committed write transaction took, from its start to the end of its
/// COMMIT (for SQLite, one group of work, fsync included). Called on the backend's threads, so
/// it must be quick: the server records it in a histogram.
pub type CommitObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// The counters behind [`StoreStats`], shared by a backend's threads.
#[derive(Default)]
pub(crate) struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    observer: OnceLock<CommitObserver>,
}

impl Counters {
    /// Counts one committed write transaction that carried `writes` units of work and took
    /// `took`.
    pub(crate) fn committed(&self, writes: u64, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes, Ordering::Relaxed);
        if let Some(observe) = self.observer.get() {
            observe(took);
        }
    }

    /// Installs the observer of commit times; the first one installed stays.
    pub(crate) fn observe(&self, observer: CommitObserver) {
        let _ = self.observer.set(observer);
    }

    pub(crate) fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.commits.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
        }
    }
}

pub trait Backend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn stats(&self) -> StoreStats;
    fn run_write(&self, work: Work);
    fn run_read(&self, work: Work);
    /// Runs a write for a replica's lease: on a path of its own where the backend has one
    /// (PostgreSQL: its own connection and thread), so that no queue of other writes can delay
    /// it past the lease. Backends with one replica run it as any write.
    fn run_lease(&self, work: Work) {
        self.run_write(work);
    }
    fn close(&self);
    /// Calls `observer` with the duration of every write transaction committed from now on.
    fn observe_commits(&self, observer: CommitObserver);
    /// Calls `on_event` with every event another server replica (or this one) announces with
    /// [`Tx::notify`], and when the listening connection breaks and comes back. Backends
    /// without replicas never call it.
    fn listen(&self, on_event: EventHandler) {
        let _ = on_event;
    }
}

/// Receives replica events (see [`Backend::listen`]).
pub type EventHandler = Box<dyn Fn(Heard<'_>) + Send + Sync>;

/// What a replica hears from the store's event channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard<'a> {
    /// An event another replica (or this one) announced.
    Event(&'a str),
    /// The connection that listens for events broke: events announced from now on are missed
    /// until [`Heard::Listening`].
    Deaf,
    /// Listening again after [`Heard::Deaf`]: what was missed meanwhile must be caught up on.
    Listening,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_work_answers_with_the_error_and_never_runs() {
        let (done, mut result) = tokio::sync::oneshot::channel::<StoreResult<()>>();
        let work = Work::new(|_| panic!("the closure must not run"), done);
        work.fail(StoreError::Backend("connection refused".into()));
        match result.try_recv() {
            Ok(Err(StoreError::Backend(msg))) => assert_eq!(msg, "connection refused"),
            other => panic!("expected the backend error, got {other:?}"),
        }
    }

    #[test]
    fn dropped_work_closes_its_channel() {
        let (done, mut result) = tokio::sync::oneshot::channel::<StoreResult<()>>();
        drop(Work::new(|_| Ok(()), done));
        assert!(matches!(
            result.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed)
        ));
    }
}

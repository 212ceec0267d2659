//! What a backend provides to [`crate::Store`]: somewhere to run transactions.

use crate::error::{StoreError, StoreResult};
use crate::tx::Tx;

/// A unit of work for a backend thread. Running it yields a [`JobOutcome`]; the backend must call
/// [`JobOutcome::deliver`] only once the transaction holding the work has committed (or failed).
pub struct Job(Box<JobFn>);

type JobFn = dyn FnOnce(&mut dyn Tx) -> JobOutcome + Send;

pub struct JobOutcome {
    /// The work returned an error: the backend rolls back what it wrote.
    pub failed: bool,
    deliver: Box<dyn FnOnce(Option<StoreError>) + Send>,
}

impl JobOutcome {
    /// Hands the result to the waiting caller. `commit_error` replaces the result when the
    /// transaction did not commit.
    pub fn deliver(self, commit_error: Option<StoreError>) {
        (self.deliver)(commit_error)
    }
}

impl Job {
    pub(crate) fn new<R, F>(f: F, done: tokio::sync::oneshot::Sender<StoreResult<R>>) -> Self
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> StoreResult<R> + Send + 'static,
    {
        Job(Box::new(move |tx| {
            let result = f(tx);
            JobOutcome {
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
        }))
    }

    pub fn run(self, tx: &mut dyn Tx) -> JobOutcome {
        (self.0)(tx)
    }
}

/// Counters a backend keeps, for metrics and for tests of batching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Write transactions committed.
    pub commits: u64,
    /// Write jobs those transactions carried. `writes / commits` is the mean group size.
    pub writes: u64,
}

pub trait Backend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn stats(&self) -> StoreStats;
    fn run_write(&self, job: Job);
    fn run_read(&self, job: Job);
    fn close(&self);
    /// Calls `on_event` with every event another server replica (or this one) announces with
    /// [`Tx::notify`]. Backends without replicas never call it.
    fn listen(&self, on_event: EventHandler) {
        let _ = on_event;
    }
}

/// Receives replica events (see [`Backend::listen`]).
pub type EventHandler = Box<dyn Fn(&str) + Send + Sync>;

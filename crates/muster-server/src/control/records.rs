//! Group commit for what sessions record: a channel opened or closed, a ticket saved
//! (`muster_store::flows::sessions`).
//!
//! Each record is handed to [`Records::write`], which resolves only once a transaction holding
//! it has committed, exactly as a write of its own would. One group is written at a time; what
//! arrives meanwhile waits and goes in the next group. So with nothing else going on a record is
//! written at once, alone, and in a reconnect storm thousands of records share a few
//! transactions and, on PostgreSQL, a few statements each, instead of costing the database
//! three transactions per worker.
//!
//! A group fails as a whole (one record's error, or PostgreSQL breaking a deadlock with another
//! replica's writes): then each of its records is written alone, so one bad record never costs
//! the others theirs, and each caller gets its own record's outcome.

use std::sync::{Arc, Mutex, MutexGuard};

use muster_store::flows::sessions::{self, SessionRecord};
use muster_store::{Store, StoreError};
use tokio::sync::oneshot;

/// The most records one transaction carries: bounds how long the first of a group waits for
/// the others to be written.
const MAX_GROUP: usize = 512;

type Answer = oneshot::Sender<Result<bool, StoreError>>;

pub struct Records {
    store: Store,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(SessionRecord, Answer)>,
    /// Whether a task is writing groups (it takes what waits until nothing does).
    writing: bool,
}

impl Records {
    pub fn new(store: Store) -> Arc<Self> {
        Arc::new(Self {
            store,
            queue: Mutex::default(),
        })
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `record` with whatever else is waiting. Resolves once it is committed: for a
    /// saved ticket, whether it was confirmed; otherwise `true`.
    pub async fn write(self: &Arc<Self>, record: SessionRecord) -> Result<bool, StoreError> {
        let (done, answer) = oneshot::channel();
        let start = {
            let mut queue = self.queue();
            queue.waiting.push((record, done));
            !std::mem::replace(&mut queue.writing, true)
        };
        if start {
            // A task of its own, not the caller's: a caller that goes away (a dropped
            // connection) must not strand the records behind its own.
            tokio::spawn(Arc::clone(self).drain());
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn drain(self: Arc<Self>) {
        loop {
            let group: Vec<(SessionRecord, Answer)> = {
                let mut queue = self.queue();
                if queue.waiting.is_empty() {
                    queue.writing = false;
                    return;
                }
                let n = queue.waiting.len().min(MAX_GROUP);
                queue.waiting.drain(..n).collect()
            };
            self.write_group(group).await;
        }
    }

    async fn write_group(&self, group: Vec<(SessionRecord, Answer)>) {
        let (records, answers): (Vec<SessionRecord>, Vec<Answer>) = group.into_iter().unzip();
        let records = Arc::new(records);
        let written = {
            let records = Arc::clone(&records);
            self.store
                .write(move |tx| sessions::write(tx, &records))
                .await
        };
        match written {
            Ok(results) => {
                for (answer, result) in answers.into_iter().zip(results) {
                    let _ = answer.send(Ok(result));
                }
            }
            Err(e) if answers.len() == 1 => {
                let _ = answers.into_iter().next().map(|a| a.send(Err(e)));
            }
            Err(e) => {
                tracing::debug!(error = %e, records = answers.len(), "a group of session records failed; writing each alone");
                for (record, answer) in records.iter().cloned().zip(answers) {
                    let one = [record];
                    let result = self
                        .store
                        .write(move |tx| sessions::write(tx, &one))
                        .await
                        .map(|results| results.first().copied().unwrap_or(true));
                    let _ = answer.send(result);
                }
            }
        }
    }
}

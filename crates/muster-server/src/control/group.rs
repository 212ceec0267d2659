//! Group commit for what many sessions write at once: records of opened and closed channels
//! ([`super::records`]) and admissions ([`super::admissions`]).
//!
//! Each item is handed to [`Grouped::write`], which resolves only once a transaction holding it
//! has committed, exactly as a write of its own would. At most [`Batch::IN_FLIGHT`] groups are
//! written at a time; what arrives meanwhile waits and goes in a later group. So with nothing
//! else going on an item is written at once, alone, and in a reconnect storm thousands share a
//! few transactions (on PostgreSQL, a few commits and statements) instead of one each.
//!
//! A group fails as a whole (one item's error, or PostgreSQL breaking a deadlock with another
//! replica's writes): then each of its items is written alone, so one bad item never costs the
//! others theirs, and each caller gets its own item's outcome.

use std::sync::{Arc, Mutex, MutexGuard};

use muster_store::{Store, StoreError, StoreResult, Tx};
use tokio::sync::oneshot;

/// What a [`Grouped`] writes.
pub trait Batch: Send + Sync + 'static {
    type Item: Clone + Send + Sync + 'static;
    type Answer: Send + 'static;
    /// The most items one transaction carries: bounds how long the first of a group waits for
    /// the others to be written.
    const MAX_GROUP: usize;
    /// How many groups may be written at once (each on its own connection on PostgreSQL).
    const IN_FLIGHT: usize;
    /// Writes `items` in one transaction: one answer per item, in order.
    fn write(tx: &mut dyn Tx, items: &[Self::Item]) -> StoreResult<Vec<Self::Answer>>;
}

type Answer<B> = oneshot::Sender<Result<<B as Batch>::Answer, StoreError>>;

pub struct Grouped<B: Batch> {
    store: Store,
    queue: Mutex<Queue<B>>,
}

struct Queue<B: Batch> {
    waiting: Vec<(B::Item, Answer<B>)>,
    /// How many tasks are writing groups (each takes what waits until nothing does).
    writing: usize,
}

impl<B: Batch> Grouped<B> {
    pub fn new(store: Store) -> Arc<Self> {
        Arc::new(Self {
            store,
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                writing: 0,
            }),
        })
    }

    fn queue(&self) -> MutexGuard<'_, Queue<B>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `item` with whatever else is waiting. Resolves once it is committed.
    pub async fn write(self: &Arc<Self>, item: B::Item) -> Result<B::Answer, StoreError> {
        let (done, answer) = oneshot::channel();
        let start = {
            let mut queue = self.queue();
            queue.waiting.push((item, done));
            let start = queue.writing < B::IN_FLIGHT;
            if start {
                queue.writing += 1;
            }
            start
        };
        if start {
            // A task of its own, not the caller's: a caller that goes away (a dropped
            // connection) must not strand the items behind its own.
            tokio::spawn(Arc::clone(self).drain());
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn drain(self: Arc<Self>) {
        loop {
            let group: Vec<(B::Item, Answer<B>)> = {
                let mut queue = self.queue();
                if queue.waiting.is_empty() {
                    queue.writing -= 1;
                    return;
                }
                let n = queue.waiting.len().min(B::MAX_GROUP);
                queue.waiting.drain(..n).collect()
            };
            self.write_group(group).await;
        }
    }

    async fn write_group(&self, group: Vec<(B::Item, Answer<B>)>) {
        let (items, answers): (Vec<B::Item>, Vec<Answer<B>>) = group.into_iter().unzip();
        let items = Arc::new(items);
        let written = {
            let items = Arc::clone(&items);
            self.store.write(move |tx| B::write(tx, &items)).await
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
                tracing::debug!(error = %e, items = answers.len(), "a group failed; writing each alone");
                for (item, answer) in items.iter().cloned().zip(answers) {
                    let one = [item];
                    let result = self
                        .store
                        .write(move |tx| B::write(tx, &one))
                        .await
                        .and_then(|results| {
                            results.into_iter().next().ok_or_else(|| {
                                StoreError::Backend("a group of one gave no answer".into())
                            })
                        });
                    let _ = answer.send(result);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings written in groups; an item named `bad` makes its whole group fail, as a record
    /// PostgreSQL refuses or a deadlock would.
    struct Settings;

    impl Batch for Settings {
        type Item = &'static str;
        type Answer = ();
        const MAX_GROUP: usize = 64;
        const IN_FLIGHT: usize = 1;

        fn write(tx: &mut dyn Tx, items: &[&'static str]) -> StoreResult<Vec<()>> {
            for item in items {
                if *item == "bad" {
                    return Err(StoreError::Backend("refused".into()));
                }
                tx.put_setting(item, "1")?;
            }
            Ok(vec![(); items.len()])
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_group_costs_no_other_item_its_write() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open_sqlite(&dir.path().join("db")).expect("store");
        let grouped = Grouped::<Settings>::new(store.clone());
        // One group holding them all, as a storm would queue them.
        let (group, answers): (Vec<_>, Vec<_>) = ["a", "b", "bad", "c", "d"]
            .into_iter()
            .map(|item| {
                let (done, answer) = oneshot::channel();
                ((item, done), (item, answer))
            })
            .unzip();
        grouped.write_group(group).await;
        for (item, answer) in answers {
            let result = answer.await.expect("answered");
            assert_eq!(result.is_ok(), item != "bad", "{item}: {result:?}");
        }
        for key in ["a", "b", "c", "d"] {
            let stored = store
                .read(move |tx| tx.get_setting(key))
                .await
                .expect("read");
            assert_eq!(stored.as_deref(), Some("1"), "{key}");
        }
    }
}

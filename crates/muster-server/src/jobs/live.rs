//! A job's live followers on this replica, each with its own bounded queue.
//!
//! Output the store keeps is offered to a follower without waiting: one that falls behind is
//! skipped ahead and fills the gap from the store (`follow.rs`), so it loses nothing. Output past
//! the per-job cap is carried by the live stream alone, so it waits for a follower whose queue is
//! full until that follower takes something, for at most [`STALL`]: a follower that keeps reading
//! sees every byte (the job goes at its pace, as a command writing to a slow terminal does), and
//! one that stops reading (a suspended terminal, a dead link) cannot hold the job, or the worker's
//! channel, for longer. That one is skipped ahead without waiting, told how much it missed, and
//! waited for again once it has emptied its queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::LiveEvent;

/// Live events queued per follower.
pub const QUEUE: usize = 256;
/// How long output past the cap waits for a follower that takes nothing. Well under the
/// heartbeat's idle timeout: while it waits, its worker's channel is not read.
pub const STALL: Duration = Duration::from_secs(2);

/// Whether an event waits for followers with a full queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// The store has it: followers that fall behind read it there.
    Offer,
    /// Only the live stream has it: wait (at most [`STALL`]) for each follower still reading.
    Wait,
}

/// The followers of one job.
#[derive(Default)]
pub struct Followers {
    list: Vec<Follower>,
}

/// One follower's end of its queue, cloned out of the scheduler's lock to deliver.
#[derive(Clone)]
pub struct Follower {
    tx: mpsc::Sender<LiveEvent>,
    /// It let [`STALL`] pass without taking anything, and has not emptied its queue since.
    stalled: Arc<AtomicBool>,
}

/// What a follower hears: the job's live events from `first_seq` on.
#[derive(Debug)]
pub struct Subscription {
    events: mpsc::Receiver<LiveEvent>,
    /// The number the job's next output chunk gets; anything before it this follower never
    /// missed, since it was not following yet.
    pub first_seq: u64,
}

impl Subscription {
    /// The next event; `None` once the job is forgotten here (as good as `Ended`).
    pub async fn recv(&mut self) -> Option<LiveEvent> {
        self.events.recv().await
    }
}

impl Followers {
    /// A new follower, hearing events from the next chunk (numbered `first_seq`) on.
    pub fn subscribe(&mut self, first_seq: u64) -> Subscription {
        self.list.retain(|f| !f.tx.is_closed());
        let (tx, events) = mpsc::channel(QUEUE);
        self.list.push(Follower {
            tx,
            stalled: Arc::default(),
        });
        Subscription { events, first_seq }
    }

    /// The followers, to deliver to without holding the scheduler's lock.
    pub fn to_deliver(&self) -> Vec<Follower> {
        self.list.clone()
    }

    /// Tells every follower the job ended here. One whose queue is full learns it when its
    /// queue closes (these are the last senders but for deliveries under way).
    pub fn end(self) {
        for follower in self.list {
            let _ = follower.tx.try_send(LiveEvent::Ended);
        }
    }
}

/// Hands `event` to each follower, as `pace` says.
pub async fn deliver(followers: Vec<Follower>, event: LiveEvent, pace: Pace) {
    let mut waits = Vec::new();
    for follower in followers {
        if follower.stalled.load(Ordering::Relaxed)
            && follower.tx.capacity() == follower.tx.max_capacity()
        {
            // It emptied its queue: reading again.
            follower.stalled.store(false, Ordering::Relaxed);
        }
        match follower.tx.try_send(event.clone()) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(event)) => {
                if pace == Pace::Wait && !follower.stalled.load(Ordering::Relaxed) {
                    waits.push(async move {
                        if tokio::time::timeout(STALL, follower.tx.send(event))
                            .await
                            .is_err()
                        {
                            follower.stalled.store(true, Ordering::Relaxed);
                        }
                    });
                }
            }
        }
    }
    futures_util::future::join_all(waits).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::time::Instant;

    fn output(seq: u64) -> LiveEvent {
        LiveEvent::Output {
            seq,
            stream: 1,
            data: Bytes::from_static(b"x"),
            at: muster_core::Timestamp::from_unix_millis(0),
        }
    }

    fn seq(event: Option<LiveEvent>) -> u64 {
        match event {
            Some(LiveEvent::Output { seq, .. }) => seq,
            other => panic!("expected output, got {other:?}"),
        }
    }

    /// Delivers chunks 1..=n as `pace` says, each after the last was delivered (as a worker's
    /// session hands them over), and says when it was done.
    fn produce(followers: &Followers, n: u64, pace: Pace) -> tokio::task::JoinHandle<Instant> {
        let list = followers.to_deliver();
        tokio::spawn(async move {
            for seq in 1..=n {
                deliver(list.clone(), output(seq), pace).await;
            }
            Instant::now()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_follower_gets_every_chunk_past_the_cap() {
        let mut followers = Followers::default();
        let mut slow = followers.subscribe(1);
        let n = 3 * QUEUE as u64;
        let producer = produce(&followers, n, Pace::Wait);
        for expected in 1..=n {
            // Slower than the producer, but never as slow as `STALL`.
            tokio::time::sleep(STALL / 4).await;
            assert_eq!(seq(slow.recv().await), expected);
        }
        producer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_that_stops_reading_holds_the_output_back_once_for_at_most_the_stall() {
        let mut followers = Followers::default();
        let mut stuck = followers.subscribe(1);
        let start = Instant::now();
        let n = 4 * QUEUE as u64;
        let done = produce(&followers, n, Pace::Wait).await.unwrap();
        assert!(
            done - start <= STALL + Duration::from_millis(10),
            "the output waited {:?} for a follower that reads nothing",
            done - start
        );
        // It has what fit in its queue; the rest it was skipped past.
        for expected in 1..=QUEUE as u64 {
            assert_eq!(seq(stuck.recv().await), expected);
        }
        // Emptied: it is waited for again.
        let more = {
            let list = followers.to_deliver();
            tokio::spawn(async move {
                for seq in n + 1..=n + 2 * QUEUE as u64 {
                    deliver(list.clone(), output(seq), Pace::Wait).await;
                }
            })
        };
        for expected in n + 1..=n + 2 * QUEUE as u64 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(seq(stuck.recv().await), expected);
        }
        more.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn stored_output_never_waits_for_a_follower() {
        let mut followers = Followers::default();
        let _stuck = followers.subscribe(1);
        let start = Instant::now();
        let done = produce(&followers, 2 * QUEUE as u64, Pace::Offer)
            .await
            .unwrap();
        assert_eq!(done, start);
    }

    #[tokio::test(start_paused = true)]
    async fn ending_reaches_followers_even_with_a_full_queue() {
        let mut followers = Followers::default();
        let mut idle = followers.subscribe(1);
        let mut full = followers.subscribe(1);
        for seq in 1..=QUEUE as u64 {
            deliver(
                followers.to_deliver()[1..].to_vec(),
                output(seq),
                Pace::Offer,
            )
            .await;
        }
        followers.end();
        assert!(matches!(idle.recv().await, Some(LiveEvent::Ended)));
        for expected in 1..=QUEUE as u64 {
            assert_eq!(seq(full.recv().await), expected);
        }
        assert!(full.recv().await.is_none(), "its queue closed");
    }
}

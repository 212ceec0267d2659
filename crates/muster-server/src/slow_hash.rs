//! Argon2 checks on a few dedicated threads, each reusing one working buffer.
//!
//! One Argon2id check needs 19 MiB of working memory. Run on tokio's blocking pool, every check
//! allocated it afresh on whichever of up to 512 threads ran it, and glibc kept each thread's
//! freed block: 200 anonymous wrong guesses took the server from 15 MB to 465 MB, for good. Here
//! a fixed number of threads (one per CPU, at most [`MAX_THREADS`]) each hold one buffer for
//! their whole life, so the memory secret checks can ever use is `threads × 19 MiB`, whatever
//! anyone sends.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use muster_core::credentials::{SlowHash, SlowHashMemory};
use tokio::sync::oneshot;

/// More threads than this would only hold more memory: checks are CPU-bound.
pub const MAX_THREADS: usize = 4;

struct Check {
    hash: SlowHash,
    presented: String,
    done: oneshot::Sender<bool>,
}

pub struct SlowHashPool {
    queue: mpsc::Sender<Check>,
    threads: usize,
}

impl SlowHashPool {
    /// One thread per CPU, at most [`MAX_THREADS`]. The threads end when the pool is dropped.
    pub fn new() -> Self {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(MAX_THREADS);
        Self::with_threads(threads)
    }

    pub fn with_threads(threads: usize) -> Self {
        let (queue, checks) = mpsc::channel::<Check>();
        let checks = Arc::new(Mutex::new(checks));
        for n in 0..threads {
            let checks = Arc::clone(&checks);
            let spawned = std::thread::Builder::new()
                .name(format!("muster-argon2-{n}"))
                .spawn(move || run(&checks));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a secret-checking thread");
            }
        }
        Self { queue, threads }
    }

    /// How many checks can run at once.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether `presented` is the secret `hash` was made from. A pool whose threads are gone
    /// answers no.
    pub async fn verify(&self, hash: SlowHash, presented: String) -> bool {
        let (done, answer) = oneshot::channel();
        if self
            .queue
            .send(Check {
                hash,
                presented,
                done,
            })
            .is_err()
        {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

impl Default for SlowHashPool {
    fn default() -> Self {
        Self::new()
    }
}

fn run(checks: &Mutex<mpsc::Receiver<Check>>) {
    let mut memory = SlowHashMemory::default();
    loop {
        // The lock is held only to take the next check, not while running it.
        let next = checks.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(check) = next else {
            return;
        };
        let ok = check.hash.verify_with(&check.presented, &mut memory);
        let _ = check.done.send(ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    #[tokio::test]
    async fn checks_run_on_the_pool_and_answer_right() {
        let pool = SlowHashPool::with_threads(2);
        let secret = "a secret long enough to be a real one";
        let hash = SlowHash::create(secret, &mut OsRng);
        let mut checks = Vec::new();
        for i in 0..6 {
            let presented = if i % 2 == 0 {
                secret.to_owned()
            } else {
                format!("{secret}!")
            };
            checks.push(pool.verify(hash.clone(), presented));
        }
        let answers = futures_util::future::join_all(checks).await;
        assert_eq!(answers, [true, false, true, false, true, false]);
    }
}

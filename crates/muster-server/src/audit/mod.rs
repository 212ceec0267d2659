//! The audit records of unauthenticated attempts the server refuses: aggregated by kind and
//! source ([`Refusals`]), with the summaries of each window written in one transaction when it
//! closes ([`close_windows`], and [`flush`] at shutdown).
//!
//! Accepted attempts and admin actions are not aggregated: each is one record, written in the
//! transaction of its change. Only refusals of callers who proved nothing come through here, so
//! an anonymous flood costs a bounded number of small records however fast it is sent.

mod refusals;

pub use refusals::{Attempt, INVALID_NAME, MAX_KINDS, Refusals, RefusedAttempt, WINDOW};

use std::sync::Arc;

use muster_store::Store;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::clock::Clock;

/// Closes a window of refusals every [`Refusals::window`] and writes its summaries, until
/// `stop`. (The last, partial window is written by [`flush`] at shutdown, once no request is left
/// to add to it.)
pub async fn close_windows(
    refusals: Arc<Refusals>,
    store: Store,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    let period = refusals.window();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        flush(&refusals, &store, clock).await;
    }
}

/// Closes the current window now and writes its summaries, all in one transaction.
pub async fn flush(refusals: &Refusals, store: &Store, clock: Clock) {
    let summaries = refusals.close_window(clock.now());
    if summaries.is_empty() {
        return;
    }
    let written = store
        .write(move |tx| {
            for summary in &summaries {
                muster_store::flows::audit::append(tx, summary)?;
            }
            Ok(())
        })
        .await;
    if let Err(e) = written {
        tracing::error!(error = %e, "cannot write the summaries of refused attempts");
    }
}

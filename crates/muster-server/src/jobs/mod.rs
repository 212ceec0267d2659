//! Jobs on the server: the queue, placement and dispatch, output, and how jobs end.
//!
//! A job is durable from submission. The dispatcher wakes when something changes (a job
//! submitted, a worker connected, a slot freed) or a queue deadline passes; it places every job
//! it can in one pass, starts them in one transaction (`queued → running` only if still queued),
//! and only then tells the workers. A job placed on a worker is tracked by that worker's session.
//! When the session ends because the worker lost its right to be connected (revoked, expired,
//! removed, suspended), its jobs end `lost` at once; when it ends any other way (a dropped
//! connection, a server restart), the worker keeps running them and they wait for it for the
//! grace period: the worker reports them when it reconnects (here or to another replica) and the
//! replica it reports to takes them over; otherwise they end `lost`. Never queued again.
//!
//! - `state.rs`: the queue and the tracked jobs, one struct behind one lock;
//! - `placement.rs`: the pure decision of one round (which job goes where, which expire);
//! - `dispatch.rs`: submission (with its fast path) and the dispatcher, which writes the starts;
//! - `output.rs`: what workers send about their jobs (output frames and results);
//! - `away.rs`: jobs whose worker is away: held at start, detached at a session's end, taken
//!   over when a worker reports them, lost past the grace period;
//! - `live.rs`: a job's live followers, each with its own queue, and how output waits for them;
//! - `follow.rs`: a job's output streamed to a client.

mod away;
pub use away::Departure;
mod dispatch;
pub mod follow;
pub(crate) mod live;
mod output;
mod placement;
mod state;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use muster_core::job::{Ending, JobId, JobState};
use muster_core::{Name, WorkerId};
use muster_proto::control::ServerMessage;
use muster_store::Store;
use muster_store::flows::jobs;
use tokio::sync::{Notify, broadcast};

use crate::clock::Clock;
use crate::control::registry::{Command, Registry};
use state::SchedulerState;

/// Output kept per job, by default. More is streamed live but not stored.
pub const DEFAULT_OUTPUT_CAP: u64 = 1024 * 1024;
/// How long a running job waits for its worker to come back, by default.
pub const DEFAULT_JOB_GRACE: std::time::Duration = std::time::Duration::from_secs(120);

/// What followers of a job hear.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// A piece of output, and when this server received it.
    Output {
        seq: u64,
        stream: u8,
        data: Bytes,
        at: muster_core::Timestamp,
    },
    Ended,
}

pub struct Jobs {
    /// This replica's id, recorded on the jobs it starts.
    server_id: String,
    store: Store,
    registry: Arc<Registry>,
    clock: Clock,
    output_cap: u64,
    /// How long a running job waits for its worker to come back before it is lost.
    grace: std::time::Duration,
    /// The queue and every job tracked here. One lock, never held across an `.await`.
    state: Mutex<SchedulerState>,
    wake: Notify,
    /// The name of each worker whose running jobs here changed (a job started on it or ended),
    /// for the live Workers page. Nobody listening costs nothing; a listener that falls behind
    /// skips ahead.
    activity: broadcast::Sender<Name>,
}

/// Changes of running jobs remembered for a listener that falls behind.
const ACTIVITY_BACKLOG: usize = 256;

impl Jobs {
    pub fn new(
        store: Store,
        registry: Arc<Registry>,
        clock: Clock,
        output_cap: u64,
        server_id: String,
        grace: std::time::Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            server_id,
            store,
            registry,
            clock,
            output_cap,
            grace,
            state: Mutex::new(SchedulerState::default()),
            wake: Notify::new(),
            activity: broadcast::channel(ACTIVITY_BACKLOG).0,
        })
    }

    /// Hears the name of each worker whose running jobs change on this replica, from now on.
    pub fn activity(&self) -> broadcast::Receiver<Name> {
        self.activity.subscribe()
    }

    /// Tells the listeners (if any) that `worker`'s running jobs changed.
    fn busy_changed(&self, worker: &Name) {
        let _ = self.activity.send(worker.clone());
    }

    /// Now, by the server's clock.
    pub fn now(&self) -> muster_core::Timestamp {
        self.clock.now()
    }

    /// This replica's id (what the store records as a running job's holder).
    pub fn replica(&self) -> &str {
        &self.server_id
    }

    /// Running jobs taken over from a replica that died: each waits for its worker for the
    /// grace period, as after a restart. Jobs tracked here already are left as they are.
    pub fn hold_taken_over(&self, held: Vec<muster_store::flows::jobs::Held>) {
        let deadline = self.clock.now().saturating_add(self.grace);
        let mut state = self.state();
        for job in held {
            state.track_away(job, deadline);
        }
    }

    /// Output kept per job.
    pub fn output_cap(&self) -> u64 {
        self.output_cap
    }

    fn state(&self) -> MutexGuard<'_, SchedulerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a restart: jobs this replica held while running wait for their workers to report
    /// them (for the grace period); queued ones wait again.
    pub async fn recover(&self) -> Result<(), muster_store::StoreError> {
        self.hold_again().await?;
        self.load_queued().await
    }

    /// Adds queued jobs this replica does not know yet (submitted through another replica).
    async fn load_queued(&self) -> Result<(), muster_store::StoreError> {
        let queued = self
            .store
            .read(|tx| tx.jobs_in_state(JobState::Queued))
            .await?;
        {
            let mut state = self.state();
            for job in queued {
                state.enqueue(job);
            }
        }
        self.kick();
        Ok(())
    }

    /// Another replica queued jobs: take them into this replica's queue too. Whichever replica
    /// starts a job first wins; the start is conditional on the job still being queued.
    pub async fn pick_up_queued(&self) {
        if let Err(e) = self.load_queued().await {
            tracing::warn!(error = %e, "cannot load jobs queued by another replica");
        }
    }

    /// Something changed that may let a queued job start.
    pub fn kick(&self) {
        self.wake.notify_one();
    }

    /// How many jobs wait in this replica's queue (with replicas, the same queue on each).
    pub fn queued_count(&self) -> usize {
        self.state().queued().count()
    }

    pub fn subscribe(&self, id: &JobId) -> Option<live::Subscription> {
        self.state().subscribe(id)
    }

    /// Ends a job (durably), tells its followers, and forgets it.
    async fn finish(&self, id: &JobId, ending: Ending) {
        let stats = self.state().output_stats(id);
        let now = self.clock.now();
        let job_id = id.clone();
        let result = self
            .store
            .write(move |tx| {
                if let Some((bytes, truncated)) = stats {
                    tx.set_output_stats(&job_id, bytes, truncated)?;
                }
                jobs::end(tx, &job_id, &ending, now)
            })
            .await;
        match result {
            Ok(Some(ended)) => {
                crate::diag::metrics().job(ended.state);
                if let Some(worker) = &ended.worker_name {
                    self.busy_changed(worker);
                }
            }
            // Ended already (by a cancel, another replica): counted where it ended.
            Ok(None) => {}
            Err(e) => tracing::error!(job = %id, error = %e, "cannot record the end of a job"),
        }
        self.state().forget(id);
        self.kick();
    }

    /// Another replica started a job this one had queued too: forget it here. Its followers
    /// here carry on from the store.
    pub fn started_elsewhere(&self, id: &JobId, by: &str) {
        if by != self.server_id {
            self.dequeued(id);
        }
    }

    /// A queued job was cancelled in the store: forget it.
    pub fn dequeued(&self, id: &JobId) {
        self.state().forget(id);
    }

    /// Asks the worker running `id` to kill it (when it is back, if it is away).
    pub fn cancel_running(&self, id: &JobId, worker: &WorkerId) -> bool {
        if self.state().cancel_when_back(id) {
            return true;
        }
        match self.registry.get(worker) {
            Some(session) if session.holds(id) => {
                session.inbox.push(Command::Send(ServerMessage::JobCancel {
                    id: id.to_string(),
                }));
                true
            }
            _ => false,
        }
    }
}

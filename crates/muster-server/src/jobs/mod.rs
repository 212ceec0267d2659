//! Jobs on the server: the queue, placement and dispatch, output, and how jobs end.
//!
//! A job is durable from submission. The dispatcher wakes when something changes (a job
//! submitted, a worker connected, a slot freed) or a queue deadline passes; it places every job
//! it can in one pass, starts them in one transaction (`queued → running` only if still queued),
//! and only then tells the workers. A job placed on a worker is tracked by that worker's session;
//! when the session ends for any reason, its jobs end `lost` — never queued again.

pub mod follow;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use muster_core::WorkerId;
use muster_core::audit::AuditEvent;
use muster_core::job::{Ending, Job, JobId, JobState, place};
use muster_proto::control::{JobExit, JobStart, ServerMessage, WorkerMessage, frame};
use muster_store::Store;
use muster_store::flows::jobs::{self, Assignment};
use tokio::sync::{Notify, broadcast};

use crate::clock::Clock;
use crate::control::registry::{Command, Registry, Session};
use crate::control::session::Inbound;
use crate::events::ReplicaEvent;

/// Output kept per job, by default. More is streamed live but not stored.
pub const DEFAULT_OUTPUT_CAP: u64 = 1024 * 1024;
/// Live events buffered per follower before it is told it skipped some.
const FOLLOW_BUFFER: usize = 256;

/// What followers of a job hear.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    Output { seq: u64, stream: u8, data: Bytes },
    Ended,
}

/// A job that has not ended: who runs it, its output so far, its followers.
struct LiveJob {
    job: Job,
    worker: Option<WorkerId>,
    next_seq: u64,
    total_bytes: u64,
    stored_bytes: u64,
    truncated: bool,
    events: broadcast::Sender<LiveEvent>,
}

pub struct Jobs {
    /// This replica's id, recorded on the jobs it starts.
    server_id: String,
    store: Store,
    registry: Arc<Registry>,
    clock: Clock,
    output_cap: u64,
    /// Queued jobs in submission order.
    queue: Mutex<Vec<JobId>>,
    live: Mutex<HashMap<JobId, LiveJob>>,
    wake: Notify,
}

impl Jobs {
    pub fn new(
        store: Store,
        registry: Arc<Registry>,
        clock: Clock,
        output_cap: u64,
        server_id: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            server_id,
            store,
            registry,
            clock,
            output_cap,
            queue: Mutex::new(Vec::new()),
            live: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        })
    }

    /// Output kept per job.
    pub fn output_cap(&self) -> u64 {
        self.output_cap
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, LiveJob>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<JobId>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn track(&self, job: Job) {
        let (events, _) = broadcast::channel(FOLLOW_BUFFER);
        let entry = LiveJob {
            worker: None,
            next_seq: 0,
            total_bytes: 0,
            stored_bytes: 0,
            truncated: false,
            events,
            job,
        };
        self.live().insert(entry.job.id.clone(), entry);
    }

    /// After a restart: jobs that were running are lost; queued ones wait again.
    pub async fn recover(&self) -> Result<(), muster_store::StoreError> {
        let now = self.clock.now();
        let lost = self
            .store
            .write({
                let server_id = self.server_id.clone();
                move |tx| jobs::lose_running(tx, &server_id, now)
            })
            .await?;
        if !lost.is_empty() {
            tracing::warn!(
                count = lost.len(),
                "jobs that were running when the server stopped are marked lost"
            );
        }
        self.load_queued().await
    }

    /// Adds queued jobs this replica does not know yet (submitted through another replica).
    async fn load_queued(&self) -> Result<(), muster_store::StoreError> {
        let queued = self
            .store
            .read(|tx| tx.jobs_in_state(muster_core::job::JobState::Queued))
            .await?;
        for job in queued {
            if self.live().contains_key(&job.id) {
                continue;
            }
            let id = job.id.clone();
            self.track(job);
            self.queue().push(id);
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

    /// Stores a new job and gets it going. When a matching worker has a free slot right now, the
    /// job is stored already `running` on it — one durable write instead of two (submit, then
    /// start), which is most of the latency from `job run` to the command starting. Otherwise it
    /// is stored `queued` for the dispatcher.
    /// `named` is the worker a `--worker NAME` job is for.
    pub async fn submit(
        &self,
        mut job: Job,
        audit: AuditEvent,
        named: Option<&WorkerId>,
    ) -> Result<Job, muster_store::StoreError> {
        // A job for a named worker looks at that worker's session only, not the whole fleet.
        let sessions = match named {
            Some(id) => self.registry.get(id).into_iter().collect(),
            None => self.registry.all(),
        };
        let target = place(&job.selector, sessions.iter().map(Arc::as_ref))
            .and_then(|t| sessions.iter().find(|s| s.conn_id == t.conn_id))
            .filter(|s| s.reserve(&job.id))
            .cloned();
        let Some(session) = target else {
            let stored = job.clone();
            self.store
                .write(move |tx| {
                    jobs::submit(tx, &stored, &audit)?;
                    tx.notify(&ReplicaEvent::JobsQueued.encode())
                })
                .await?;
            // Tracked before queued: the dispatcher drops a queued id it cannot find tracked.
            self.track(job.clone());
            self.queue().push(job.id.clone());
            self.kick();
            return Ok(job);
        };
        job.state = JobState::Running;
        job.worker_id = Some(session.worker_id.clone());
        job.worker_name = Some(session.name.clone());
        job.started_at = Some(job.created_at);
        job.dispatcher = Some(self.server_id.clone());
        let stored = job.clone();
        if let Err(e) = self
            .store
            .write(move |tx| jobs::submit(tx, &stored, &audit))
            .await
        {
            session.release(&job.id);
            return Err(e);
        }
        self.track(job.clone());
        if let Some(entry) = self.live().get_mut(&job.id) {
            entry.worker = Some(session.worker_id.clone());
        }
        if !session.holds(&job.id) {
            // The session ended while the job was being written: it is lost, like any job
            // whose worker went away.
            self.finish(
                &job.id,
                Ending::Lost("the worker disconnected before the job started".into()),
            )
            .await;
            return Ok(job);
        }
        tracing::debug!(job = %job.id, worker = %session.name, "job started at once");
        session
            .inbox
            .push(Command::Send(ServerMessage::JobStart(start_message(&job))));
        Ok(job)
    }

    /// Something changed that may let a queued job start.
    pub fn kick(&self) {
        self.wake.notify_one();
    }

    pub fn subscribe(&self, id: &JobId) -> Option<broadcast::Receiver<LiveEvent>> {
        self.live().get(id).map(|j| j.events.subscribe())
    }

    /// Runs the dispatcher until the process ends.
    pub async fn dispatch_forever(self: Arc<Self>) {
        loop {
            let next_deadline = {
                let live = self.live();
                self.queue()
                    .iter()
                    .filter_map(|id| live.get(id))
                    .map(|j| j.job.queue_deadline)
                    .min()
            };
            let sleep = match next_deadline {
                Some(at) => tokio::time::sleep_until(self.clock.instant_at(at)),
                None => tokio::time::sleep(Duration::from_secs(3600)),
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = sleep => {}
            }
            if let Err(e) = self.dispatch_round().await {
                tracing::error!(error = %e, "job dispatch failed; retrying shortly");
                tokio::time::sleep(Duration::from_millis(200)).await;
                self.kick();
            }
        }
    }

    /// Places every queued job that can be placed now, and ends those whose queue time is up.
    async fn dispatch_round(&self) -> Result<(), muster_store::StoreError> {
        // Woken by every connection: with nothing queued there is nothing to do, and a snapshot
        // of a large fleet's sessions per connection would make a reconnect storm quadratic.
        if self.queue().is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let sessions = self.registry.all();
        let mut placed: Vec<(Arc<Session>, Job)> = Vec::new();
        let mut expired: Vec<Job> = Vec::new();
        {
            let mut queue = self.queue();
            let live = self.live();
            queue.retain(|id| {
                // Not tracked any more: it was cancelled, or started or ended by another replica.
                let Some(entry) = live.get(id) else {
                    return false;
                };
                let job = &entry.job;
                if now >= job.queue_deadline {
                    expired.push(job.clone());
                    return false;
                }
                match place(&job.selector, sessions.iter().map(Arc::as_ref)) {
                    Some(target) => {
                        let Some(session) = sessions.iter().find(|s| s.conn_id == target.conn_id)
                        else {
                            return true;
                        };
                        if !session.reserve(id) {
                            return true;
                        }
                        placed.push((Arc::clone(session), job.clone()));
                        false
                    }
                    None => true,
                }
            });
        }
        if !placed.is_empty() {
            let assignments: Vec<Assignment> = placed
                .iter()
                .map(|(s, j)| Assignment {
                    job: j.id.clone(),
                    worker: s.worker_id.clone(),
                    worker_name: s.name.clone(),
                    dispatcher: self.server_id.clone(),
                })
                .collect();
            let started = match self
                .store
                .write({
                    let server_id = self.server_id.clone();
                    move |tx| {
                        let started = jobs::start_many(tx, &assignments, now)?;
                        for (a, ok) in assignments.iter().zip(&started) {
                            if *ok {
                                let event = ReplicaEvent::JobStarted {
                                    job: a.job.clone(),
                                    by: server_id.clone(),
                                };
                                tx.notify(&event.encode())?;
                            }
                        }
                        Ok(started)
                    }
                })
                .await
            {
                Ok(started) => started,
                Err(e) => {
                    // Nothing started: put the jobs back as they were.
                    let mut queue = self.queue();
                    for (session, job) in placed.iter().rev() {
                        session.release(&job.id);
                        queue.insert(0, job.id.clone());
                    }
                    return Err(e);
                }
            };
            for ((session, job), started) in placed.into_iter().zip(started) {
                if !started {
                    // Cancelled, or started by another replica, while we placed it.
                    session.release(&job.id);
                    if let Some(entry) = self.live().remove(&job.id) {
                        let _ = entry.events.send(LiveEvent::Ended);
                    }
                    continue;
                }
                if let Some(entry) = self.live().get_mut(&job.id) {
                    entry.worker = Some(session.worker_id.clone());
                }
                tracing::debug!(job = %job.id, worker = %session.name, "job dispatched");
                session
                    .inbox
                    .push(Command::Send(ServerMessage::JobStart(start_message(&job))));
            }
        }
        for job in expired {
            let wait = job.created_at.until(job.queue_deadline);
            self.finish(&job.id, Ending::QueueTimeout(wait)).await;
        }
        Ok(())
    }

    /// Ends a job (durably), tells its followers, and forgets it.
    async fn finish(&self, id: &JobId, ending: Ending) {
        let stats = self.live().get(id).map(|j| (j.total_bytes, j.truncated));
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
        if let Err(e) = result {
            tracing::error!(job = %id, error = %e, "cannot record the end of a job");
        }
        if let Some(entry) = self.live().remove(id) {
            let _ = entry.events.send(LiveEvent::Ended);
        }
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
        self.queue().retain(|q| q != id);
        if let Some(entry) = self.live().remove(id) {
            let _ = entry.events.send(LiveEvent::Ended);
        }
    }

    /// Asks the worker running `id` to kill it.
    pub fn cancel_running(&self, id: &JobId, worker: &WorkerId) -> bool {
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

    /// A session ended: every job it held is lost, with the reason.
    pub async fn session_ended(&self, session: &Session, reason: &str) {
        for id in session.take_jobs() {
            tracing::warn!(job = %id, worker = %session.name, "job lost: {reason}");
            self.finish(&id, Ending::Lost(reason.to_owned())).await;
        }
        self.kick();
    }

    async fn on_output(&self, session: &Session, frame_bytes: Bytes) {
        let Some((stream, raw_id, payload)) = frame::decode(&frame_bytes) else {
            tracing::debug!(worker = %session.name, "ignoring a malformed output frame");
            return;
        };
        let id = JobId::from_bytes(raw_id);
        if !session.holds(&id) {
            return;
        }
        let data = frame_bytes.slice_ref(payload);
        let (seq, keep) = {
            let mut live = self.live();
            let Some(entry) = live.get_mut(&id) else {
                return;
            };
            entry.next_seq += 1;
            entry.total_bytes += data.len() as u64;
            let room = self.output_cap.saturating_sub(entry.stored_bytes);
            let keep = data.slice(..usize::try_from(room).unwrap_or(usize::MAX).min(data.len()));
            entry.stored_bytes += keep.len() as u64;
            if keep.len() < data.len() {
                entry.truncated = true;
            }
            (entry.next_seq, keep)
        };
        if !keep.is_empty() {
            let job_id = id.clone();
            // Awaiting the write is the backpressure: a worker cannot outrun the disk.
            if let Err(e) = self
                .store
                .write(move |tx| tx.append_output(&job_id, seq, stream, &keep))
                .await
            {
                tracing::warn!(job = %id, error = %e, "cannot store job output");
            }
        }
        if let Some(entry) = self.live().get(&id) {
            let _ = entry.events.send(LiveEvent::Output { seq, stream, data });
        }
    }

    async fn on_message(&self, session: &Session, message: WorkerMessage) {
        match message {
            WorkerMessage::JobFinished { id, exit } => {
                let Ok(id) = JobId::parse(&id) else { return };
                if !session.release(&id) {
                    return;
                }
                let ending = match exit {
                    JobExit::Exited { code } => Ending::Exited(code),
                    JobExit::Signalled { signal } => Ending::Signalled(signal),
                    JobExit::TimedOut => {
                        let timeout = self
                            .live()
                            .get(&id)
                            .and_then(|j| j.job.timeout)
                            .unwrap_or_default();
                        Ending::TimedOut(timeout)
                    }
                    JobExit::Cancelled => Ending::Cancelled,
                    JobExit::SpawnFailed { error } => Ending::SpawnFailed(error),
                };
                self.finish(&id, ending).await;
            }
        }
    }
}

impl Inbound for Jobs {
    fn message<'a>(&'a self, session: &'a Session, message: WorkerMessage) -> BoxFuture<'a, ()> {
        Box::pin(self.on_message(session, message))
    }

    fn output<'a>(&'a self, session: &'a Session, frame: Bytes) -> BoxFuture<'a, ()> {
        Box::pin(self.on_output(session, frame))
    }
}

/// What a worker is told to run.
fn start_message(job: &Job) -> JobStart {
    JobStart {
        id: job.id.to_string(),
        command: job.command.clone(),
        env: job.env.clone(),
        timeout_ms: job
            .timeout
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    }
}

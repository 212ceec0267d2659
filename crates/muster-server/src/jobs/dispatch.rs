//! Getting jobs onto workers: submission, with its fast path, and the dispatcher.
//!
//! Either way a job starts through [`muster_core::job::Job::start`] and one durable write, and
//! its worker hears of it only after that write: at submission when a matching worker has a free
//! slot right then (the job is stored already `running`), otherwise from the queue in a dispatch
//! round (the round's starts are written in one transaction, each only if the job is still
//! queued, so a job starts at most once even with several replicas).

use std::sync::Arc;
use std::time::Duration;

use muster_core::audit::AuditEvent;
use muster_core::job::{Ending, Job, JobId, JobState, place};
use muster_core::{Timestamp, WorkerId};
use muster_proto::control::{JobStart, ServerMessage};
use muster_store::StoreError;
use muster_store::flows::jobs::{self, Assignment};

use super::{Jobs, placement};
use crate::control::registry::{Command, Session};
use crate::events::ReplicaEvent;

/// A job a dispatch round took from the queue for a worker, with the slot reserved.
struct Placed {
    session: Arc<Session>,
    assignment: Assignment,
    /// As [`Job::start`] left it: what the worker is told to run once the start is written.
    job: Job,
}

impl Jobs {
    /// Stores a new job and gets it going. When a matching worker has a free slot right now, the
    /// job is stored already `running` on it — one durable write instead of two (submit, then
    /// start), which is most of the latency from `job run` to the command starting. Otherwise it
    /// is stored `queued` for the dispatcher.
    /// `named` is the worker a `--worker NAME` job is for.
    pub async fn submit(
        &self,
        job: Job,
        audit: AuditEvent,
        named: Option<&WorkerId>,
    ) -> Result<Job, StoreError> {
        match self.reserve_now(&job, named) {
            Some(session) => self.submit_started(job, audit, session).await,
            None => self.submit_queued(job, audit).await,
        }
    }

    /// A session with a free slot for `job` right now, with the slot reserved.
    fn reserve_now(&self, job: &Job, named: Option<&WorkerId>) -> Option<Arc<Session>> {
        // A job for a named worker looks at that worker's session only, not the whole fleet.
        let sessions = match named {
            Some(id) => self.registry.get(id).into_iter().collect(),
            None => self.registry.all(),
        };
        let now = self.clock.now();
        place(
            &job.selector,
            sessions
                .iter()
                .map(Arc::as_ref)
                .filter(|s| s.takes_jobs(now)),
        )
        .and_then(|t| sessions.iter().find(|s| s.conn_id == t.conn_id))
        .filter(|s| s.reserve(&job.id))
        .cloned()
    }

    async fn submit_queued(&self, job: Job, audit: AuditEvent) -> Result<Job, StoreError> {
        let stored = job.clone();
        self.store
            .write(move |tx| {
                jobs::submit(tx, &stored, &audit)?;
                tx.notify(&ReplicaEvent::JobsQueued.encode())
            })
            .await?;
        crate::diag::metrics().job(JobState::Queued);
        self.state().enqueue(job.clone());
        self.kick();
        Ok(job)
    }

    async fn submit_started(
        &self,
        job: Job,
        audit: AuditEvent,
        session: Arc<Session>,
    ) -> Result<Job, StoreError> {
        let id = job.id.clone();
        let assignment = self.assignment(id.clone(), &session);
        // Started at submission: it never waited.
        let at = job.created_at;
        let written = self
            .store
            .write(move |tx| jobs::submit_started(tx, &job, &assignment, at, &audit))
            .await;
        let job = match written {
            Ok(Ok(job)) => job,
            Ok(Err(refused)) => {
                // Only a queued job starts: a caller that submits any other broke that rule.
                session.release(&id);
                return Err(StoreError::Conflict(refused.to_string()));
            }
            Err(e) => {
                session.release(&id);
                return Err(e);
            }
        };
        crate::diag::metrics().job(JobState::Running);
        self.state().track_running(job.clone(), session.conn_id);
        self.busy_changed(&session.name);
        self.tell_worker(&session, &job, "job started at once")
            .await;
        Ok(job)
    }

    fn assignment(&self, job: JobId, session: &Session) -> Assignment {
        Assignment {
            job,
            worker: session.worker_id.clone(),
            worker_name: session.name.clone(),
            dispatcher: self.server_id.clone(),
        }
    }

    /// A start is durable: tell the worker. If its session ended meanwhile, taking the job with
    /// it, the job is lost, like any job whose worker went away.
    async fn tell_worker(&self, session: &Session, job: &Job, what: &'static str) {
        if !session.holds(&job.id) {
            self.finish(
                &job.id,
                Ending::Lost("the worker disconnected before the job started".into()),
            )
            .await;
            return;
        }
        tracing::debug!(job = %job.id, worker = %session.name, "{what}");
        session
            .inbox
            .push(Command::Send(ServerMessage::JobStart(start_message(job))));
    }

    /// Runs the dispatcher until the process ends.
    pub async fn dispatch_forever(self: Arc<Self>) {
        loop {
            let next_deadline = self.state().next_deadline();
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
    pub(super) async fn dispatch_round(&self) -> Result<(), StoreError> {
        // Woken by every connection: with nothing queued there is nothing to do, and a snapshot
        // of a large fleet's sessions per connection would make a reconnect storm quadratic.
        if !self.state().has_queued() {
            return Ok(());
        }
        let now = self.clock.now();
        let sessions = self.registry.all();
        let (placed, expired) = self.take_round(&sessions, now);
        let written = if placed.is_empty() {
            Ok(())
        } else {
            self.start(placed, now).await
        };
        // Out of the queue already, so they end even if the starts could not be written.
        for job in expired {
            let wait = job.created_at.until(job.queue_deadline);
            self.finish(&job.id, Ending::QueueTimeout(wait)).await;
        }
        written
    }

    /// Decides a round and takes its jobs out of the queue, in one hold of the lock: the placed
    /// ones with their slots reserved, and the expired ones.
    fn take_round(&self, sessions: &[Arc<Session>], now: Timestamp) -> (Vec<Placed>, Vec<Job>) {
        let mut state = self.state();
        let workers: Vec<placement::Worker<'_>> = sessions
            .iter()
            .map(|s| placement::Worker {
                name: &s.name,
                labels: &s.labels,
                running: s.running(),
                // Closing, or silent: no new job for it.
                slots: if s.takes_jobs(now) { s.slots } else { 0 },
            })
            .collect();
        let plan = placement::plan(state.queued(), &workers, now);
        // A slot can fill between the count and the reservation (a job started at submission):
        // the job then waits for the next round.
        let (reserved, assignments): (Vec<Arc<Session>>, Vec<Assignment>) = plan
            .placed
            .into_iter()
            .filter_map(|(id, index)| {
                let session = &sessions[index];
                session
                    .reserve(&id)
                    .then(|| (Arc::clone(session), self.assignment(id, session)))
            })
            .unzip();
        let (started, expired) = state.take(&assignments, &plan.expired, now);
        let mut placed = Vec::with_capacity(started.len());
        for ((session, assignment), job) in reserved.into_iter().zip(assignments).zip(started) {
            match job {
                Some(job) => placed.push(Placed {
                    session,
                    assignment,
                    job,
                }),
                None => {
                    session.release(&assignment.job);
                }
            }
        }
        (placed, expired)
    }

    /// Writes a round's starts in one transaction, then tells the workers.
    async fn start(&self, placed: Vec<Placed>, at: Timestamp) -> Result<(), StoreError> {
        let assignments: Vec<Assignment> = placed.iter().map(|p| p.assignment.clone()).collect();
        let server_id = self.server_id.clone();
        let written = self
            .store
            .write(move |tx| {
                let started = jobs::start_many(tx, &assignments, at)?;
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
            })
            .await;
        let started = match written {
            Ok(started) => started,
            Err(e) => {
                // Nothing started: the jobs go back to the front of the queue, as they were.
                for p in &placed {
                    p.session.release(&p.job.id);
                }
                let ids: Vec<JobId> = placed.into_iter().map(|p| p.job.id).collect();
                self.state().unstart(&ids);
                return Err(e);
            }
        };
        for (p, started) in placed.into_iter().zip(started) {
            if !started {
                // Cancelled, or started by another replica, while we placed it — or adopted on
                // this very session meanwhile, when its worker reported it: then the session
                // keeps its hold (the worker's end is accepted only from a session holding it).
                let holder = self.state().settle_unstarted(&p.job.id);
                if holder != Some(p.session.conn_id) {
                    p.session.release(&p.job.id);
                }
                continue;
            }
            crate::diag::metrics().job(JobState::Running);
            self.state().started(p.job.clone(), p.session.conn_id);
            self.busy_changed(&p.session.name);
            self.tell_worker(&p.session, &p.job, "job dispatched").await;
        }
        Ok(())
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

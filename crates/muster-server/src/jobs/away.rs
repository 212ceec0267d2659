//! Jobs whose worker is away.
//!
//! A worker that loses its server keeps running its jobs. So a session that ends without cutting
//! its worker off (a dropped connection, this server shutting down, a newer connection of the
//! same worker) does not end its jobs: each waits, [`Holder::Away`](super::state::Holder), for
//! the grace period. The first thing a worker sends on every channel is the list of jobs it holds
//! ([`WorkerMessage::Resume`](muster_proto::control::WorkerMessage::Resume)); the replica it sends
//! it to (this one, after a restart, or any other) takes each over with one conditional update
//! (`running` on this worker), and writes off as `lost` the ones the worker came back without.
//! A job still away at the end of the grace period is `lost`, written only by the replica that
//! holds it (`dispatcher` in the store), so a take-over elsewhere always wins. A job is never
//! queued again: it runs at most once.
//!
//! At start, a replica holds again the jobs it held when it stopped, each away for a full grace
//! period from then.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use muster_core::job::{Ending, JobId};
use muster_proto::control::{JobEnded, JobExit, ServerMessage};
use muster_store::StoreError;
use muster_store::flows::jobs;

use super::Jobs;
use crate::control::registry::{Command, Session};
use crate::events::ReplicaEvent;

/// The most jobs a worker's report is read for; a worker runs a few dozen at most, and the rest
/// of a larger report is ignored.
const MAX_REPORTED: usize = 1024;
/// How often the reaper looks for jobs whose worker stayed away too long.
const REAP_EVERY: Duration = Duration::from_millis(500);

/// How a session ended, as its jobs see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure<'a> {
    /// The worker may come back (its connection dropped, this server is shutting down, a newer
    /// connection of the same worker took over): its jobs wait for it.
    MayReturn,
    /// The worker lost its right to be connected: its jobs end `lost` at once, for this reason
    /// (the worker stops them too).
    CutOff(&'a str),
}

impl Jobs {
    /// At start: the jobs this replica held when it stopped wait for their workers again.
    pub(super) async fn hold_again(&self) -> Result<(), StoreError> {
        let server_id = self.server_id.clone();
        let held = self
            .store
            .write(move |tx| jobs::held_by(tx, &server_id))
            .await?;
        if held.is_empty() {
            return Ok(());
        }
        tracing::info!(
            count = held.len(),
            grace = %humantime::format_duration(self.grace),
            "jobs that were running when the server stopped wait for their workers to report them"
        );
        let deadline = self.clock.now().saturating_add(self.grace);
        let mut state = self.state();
        for job in held {
            state.track_away(job, deadline);
        }
        Ok(())
    }

    /// A session ended: its jobs are lost at once if its worker was cut off, and otherwise wait
    /// for the worker to come back.
    pub async fn session_ended(&self, session: &Session, departure: Departure<'_>) {
        let ids = session.take_jobs();
        match departure {
            Departure::CutOff(reason) => {
                for id in ids {
                    tracing::warn!(job = %id, worker = %session.name, "job lost: {reason}");
                    self.finish(&id, Ending::Lost(reason.to_owned())).await;
                }
            }
            Departure::MayReturn => self.detach(session, ids).await,
        }
        self.kick();
    }

    async fn detach(&self, session: &Session, ids: Vec<JobId>) {
        let deadline = self.clock.now().saturating_add(self.grace);
        let waiting: Vec<(JobId, Option<(u64, bool)>)> = {
            let mut state = self.state();
            let mut waiting = Vec::new();
            for id in ids {
                if state.detach(&id, session.conn_id, deadline) {
                    let stats = state.output_stats(&id);
                    waiting.push((id, stats));
                }
            }
            waiting
        };
        if waiting.is_empty() {
            return;
        }
        tracing::info!(
            jobs = waiting.len(),
            worker = %session.name,
            grace = %humantime::format_duration(self.grace),
            "the worker is away; its jobs keep running there and wait for it"
        );
        // The output counted so far, for whichever replica takes the jobs over.
        let result = self
            .store
            .write(move |tx| {
                for (id, stats) in &waiting {
                    if let Some((bytes, truncated)) = stats {
                        tx.set_output_stats(id, *bytes, *truncated)?;
                    }
                }
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot record the output of jobs whose worker is away");
        }
    }

    /// Runs the reaper until the process ends: jobs whose worker stayed away past the grace
    /// period end `lost`.
    pub async fn reap_forever(self: Arc<Self>) {
        let mut tick = tokio::time::interval(REAP_EVERY);
        loop {
            tick.tick().await;
            self.reap().await;
        }
    }

    /// Ends, as `lost`, every job this replica holds whose worker stayed away too long. A job
    /// another replica took over meanwhile is only forgotten here.
    pub(crate) async fn reap(&self) {
        let now = self.clock.now();
        let overdue = self.state().overdue(now);
        for id in &overdue {
            let stats = self.state().output_stats(id);
            let reason = format!(
                "the worker disconnected and did not come back within {}",
                humantime::format_duration(self.grace)
            );
            let (job_id, server_id) = (id.clone(), self.server_id.clone());
            let written = self
                .store
                .write(move |tx| {
                    let lost = jobs::lose_held(tx, &job_id, &server_id, &reason, now)?;
                    if lost.is_some()
                        && let Some((bytes, truncated)) = stats
                    {
                        tx.set_output_stats(&job_id, bytes, truncated)?;
                    }
                    Ok(lost)
                })
                .await;
            match written {
                Ok(Some(job)) => {
                    crate::diag::metrics().job(job.state);
                    tracing::warn!(job = %id, "job lost: its worker did not come back in time");
                }
                Ok(None) => {
                    tracing::debug!(job = %id, "a job this replica waited for was taken over elsewhere")
                }
                Err(e) => {
                    // Kept: the next round tries again.
                    tracing::warn!(job = %id, error = %e, "cannot write off a job whose worker stayed away");
                    continue;
                }
            }
            self.state().forget(id);
        }
        if !overdue.is_empty() {
            self.kick();
        }
    }

    /// A worker's report of the jobs it holds, first thing on a new channel: the ones still
    /// running on it are taken over by this session, the ones it came back without are lost,
    /// the ones that are not running any more are stopped on the worker. An ending the worker
    /// repeats (its channel may have died before the server read it) is applied.
    pub(super) async fn on_resume(
        &self,
        session: &Arc<Session>,
        running: Vec<String>,
        ended: Vec<JobEnded>,
    ) {
        let mut endings: HashMap<JobId, JobExit> = ended
            .into_iter()
            .take(MAX_REPORTED)
            .filter_map(|e| JobId::parse(&e.id).ok().map(|id| (id, e.exit)))
            .collect();
        let mut reported: Vec<JobId> = running
            .iter()
            .take(MAX_REPORTED)
            .filter_map(|id| JobId::parse(id).ok())
            .chain(endings.keys().cloned())
            .collect();
        reported.sort();
        reported.dedup();

        let keep = Arc::clone(session);
        let (worker, server_id, now) = (
            session.worker_id.clone(),
            self.server_id.clone(),
            self.clock.now(),
        );
        let written = self
            .store
            .write(move |tx| {
                // A job placed on this very connection before the report arrived is not lost.
                let resumed = jobs::resume(
                    tx,
                    &worker,
                    &server_id,
                    &reported,
                    &|id| keep.holds(id),
                    now,
                )?;
                for held in &resumed.adopted {
                    let event = ReplicaEvent::JobStarted {
                        job: held.job.id.clone(),
                        by: server_id.clone(),
                    };
                    tx.notify(&event.encode())?;
                }
                Ok(resumed)
            })
            .await;
        let resumed = match written {
            Ok(resumed) => resumed,
            Err(e) => {
                // The worker comes back and reports again; its jobs wait meanwhile.
                tracing::warn!(error = %e, "cannot take over the jobs a worker reported");
                session.close(
                    muster_proto::control::CloseCode::GoingAway,
                    "the server could not take over this worker's jobs; reconnect",
                );
                return;
            }
        };
        if !resumed.adopted.is_empty() || !resumed.lost.is_empty() {
            tracing::info!(
                taken_over = resumed.adopted.len(),
                lost = resumed.lost.len(),
                "the worker reported its jobs"
            );
        }
        for held in resumed.adopted {
            let id = held.job.id.clone();
            let cancelled_meanwhile = self.state().attach(held, session.conn_id);
            session.adopt(&id);
            if let Some(exit) = endings.remove(&id) {
                session.release(&id);
                let ending = self.ending(&id, exit);
                self.finish(&id, ending).await;
            } else if cancelled_meanwhile {
                session.inbox.push(Command::Send(ServerMessage::JobCancel {
                    id: id.to_string(),
                }));
            }
        }
        for job in resumed.lost {
            crate::diag::metrics().job(job.state);
            tracing::warn!(job = %job.id, "job lost: {}", jobs::CAME_BACK_WITHOUT);
            self.state().forget(&job.id);
        }
        for id in resumed.unknown {
            // Ended, written off, or never this worker's: it must not run on.
            if !endings.contains_key(&id) {
                session.inbox.push(Command::Send(ServerMessage::JobCancel {
                    id: id.to_string(),
                }));
            }
        }
        self.kick();
    }

    /// How a job ended, from what its worker said.
    pub(super) fn ending(&self, id: &JobId, exit: JobExit) -> Ending {
        match exit {
            JobExit::Exited { code } => Ending::Exited(code),
            JobExit::Signalled { signal } => Ending::Signalled(signal),
            JobExit::TimedOut => Ending::TimedOut(self.state().timeout(id).unwrap_or_default()),
            JobExit::Cancelled => Ending::Cancelled,
            JobExit::SpawnFailed { error } => Ending::SpawnFailed(error),
        }
    }
}

//! Events between server replicas that share one PostgreSQL database.
//!
//! Each replica holds its own workers' control channels. When one replica revokes a worker that
//! is connected to another, or queues a job another could run, it says so in the same
//! transaction as the change (`Tx::notify`); every replica hears it (`Store::listen`) and acts on
//! the sessions it holds. With the embedded SQLite database there is one server process and no
//! events: it acts on its own changes directly.

use std::sync::Arc;

use muster_core::WorkerId;
use muster_core::job::JobId;
use muster_proto::control::CloseCode;

use crate::control::registry::Registry;
use crate::jobs::Jobs;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaEvent {
    /// Close this worker's session with this close code, wherever it is.
    Cut { worker: WorkerId, code: CloseCode },
    /// Jobs were queued: replicas pick up queued jobs they do not know yet.
    JobsQueued,
    /// Tell the worker running this job to kill it.
    CancelJob { job: JobId, worker: WorkerId },
    /// Replica `by` started this job: the others forget it.
    JobStarted { job: JobId, by: String },
}

impl ReplicaEvent {
    pub fn encode(&self) -> String {
        match self {
            ReplicaEvent::Cut { worker, code } => format!("cut {worker} {}", u16::from(*code)),
            ReplicaEvent::JobsQueued => "jobs".into(),
            ReplicaEvent::CancelJob { job, worker } => format!("cancel {job} {worker}"),
            ReplicaEvent::JobStarted { job, by } => format!("started {job} {by}"),
        }
    }

    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        let event = match (parts.next()?, parts.next(), parts.next()) {
            ("cut", Some(worker), Some(code)) => ReplicaEvent::Cut {
                worker: WorkerId::parse(worker).ok()?,
                code: CloseCode::from(code.parse::<u16>().ok()?),
            },
            ("jobs", None, None) => ReplicaEvent::JobsQueued,
            ("started", Some(job), Some(by))
                if !by.is_empty() && by.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                ReplicaEvent::JobStarted {
                    job: JobId::parse(job).ok()?,
                    by: by.to_owned(),
                }
            }
            ("cancel", Some(job), Some(worker)) => ReplicaEvent::CancelJob {
                job: JobId::parse(job).ok()?,
                worker: WorkerId::parse(worker).ok()?,
            },
            _ => return None,
        };
        parts.next().is_none().then_some(event)
    }
}

/// Acts on an event heard from the store. Called on a store thread, so async work is spawned.
pub fn handle(text: &str, registry: &Registry, jobs: &Arc<Jobs>, runtime: &tokio::runtime::Handle) {
    match ReplicaEvent::decode(text) {
        Some(ReplicaEvent::Cut { worker, code }) => {
            if registry.close(&worker, code, "cut off by another server replica") {
                tracing::info!(%worker, %code, "worker cut off on another replica's word");
            }
        }
        Some(ReplicaEvent::JobsQueued) => {
            let jobs = Arc::clone(jobs);
            runtime.spawn(async move { jobs.pick_up_queued().await });
        }
        Some(ReplicaEvent::CancelJob { job, worker }) => {
            jobs.cancel_running(&job, &worker);
        }
        Some(ReplicaEvent::JobStarted { job, by }) => jobs.started_elsewhere(&job, &by),
        None => tracing::debug!(event = text, "ignoring an unknown replica event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_garbage_is_ignored() {
        let worker = WorkerId::parse(&"ab".repeat(16)).unwrap();
        let job = JobId::parse("0123456789abcdef").unwrap();
        for event in [
            ReplicaEvent::Cut {
                worker: worker.clone(),
                code: CloseCode::Revoked,
            },
            ReplicaEvent::JobsQueued,
            ReplicaEvent::CancelJob {
                job: job.clone(),
                worker,
            },
            ReplicaEvent::JobStarted {
                job,
                by: "abc123".into(),
            },
        ] {
            assert_eq!(ReplicaEvent::decode(&event.encode()), Some(event));
        }
        for garbage in ["", "cut", "cut x 1", "jobs extra", "cancel 1 2", "boom"] {
            assert_eq!(ReplicaEvent::decode(garbage), None, "{garbage}");
        }
    }
}

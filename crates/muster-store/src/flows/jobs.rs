//! Jobs: submit, start (at most once), end, cancel, and recovery after a server restart.

use muster_core::audit::AuditEvent;
use muster_core::job::{Ending, Job, JobId, JobState};
use muster_core::{Name, Timestamp, WorkerId};

use crate::error::StoreResult;
use crate::tx::{JobEnd, Tx};

pub fn submit(tx: &mut dyn Tx, job: &Job, audit: &AuditEvent) -> StoreResult<()> {
    tx.insert_job(job)?;
    tx.insert_audit(audit)
}

/// One placement decision: this queued job goes to this worker.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub job: JobId,
    pub worker: WorkerId,
    pub worker_name: Name,
    /// The server replica starting it.
    pub dispatcher: String,
}

/// Starts many jobs in one transaction. Each start is conditional on the job still being
/// queued (it may have been cancelled meanwhile); the result says which ones started.
pub fn start_many(
    tx: &mut dyn Tx,
    assignments: &[Assignment],
    at: Timestamp,
) -> StoreResult<Vec<bool>> {
    assignments
        .iter()
        .map(|a| tx.start_job(&a.job, &a.worker, &a.worker_name, &a.dispatcher, at))
        .collect()
}

/// Ends a job that is queued or running, as `ending` says. Returns the job as it now is, or
/// `None` if it had already ended (an end is applied once; later ones are ignored).
pub fn end(
    tx: &mut dyn Tx,
    id: &JobId,
    ending: &Ending,
    at: Timestamp,
) -> StoreResult<Option<Job>> {
    let Some(job) = tx.get_job(id)? else {
        return Ok(None);
    };
    let target = ending.state();
    if !job.state.can_become(target) {
        return Ok(None);
    }
    let end = JobEnd {
        state: target,
        at,
        exit_code: ending.exit_code(),
        reason: ending.reason(),
        ending: ending.kind(),
    };
    if !tx.end_job(id, job.state, &end)? {
        return Ok(None);
    }
    tx.get_job(id)
}

/// What cancelling found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// It was queued and is now cancelled.
    Dequeued(Job),
    /// It is running on this worker: the worker must be told to kill it.
    Running(Job),
    /// It had already ended.
    AlreadyEnded(Job),
    NotFound,
}

pub fn cancel(
    tx: &mut dyn Tx,
    id: &JobId,
    at: Timestamp,
    audit: &AuditEvent,
) -> StoreResult<Cancel> {
    let Some(job) = tx.get_job(id)? else {
        return Ok(Cancel::NotFound);
    };
    let result = match job.state {
        JobState::Queued => match end(tx, id, &Ending::Cancelled, at)? {
            Some(job) => Cancel::Dequeued(job),
            None => return cancel(tx, id, at, audit),
        },
        JobState::Running => Cancel::Running(job),
        _ => return Ok(Cancel::AlreadyEnded(job)),
    };
    tx.insert_audit(audit)?;
    Ok(result)
}

/// At start, no job this replica started can still be running: whatever it was running when it
/// stopped is lost (its workers were disconnected). Jobs other replicas run are theirs to judge,
/// and queued jobs stay queued.
pub fn lose_running(tx: &mut dyn Tx, dispatcher: &str, at: Timestamp) -> StoreResult<Vec<JobId>> {
    let running: Vec<Job> = tx
        .jobs_in_state(JobState::Running)?
        .into_iter()
        .filter(|job| job.dispatcher.as_deref().is_none_or(|d| d == dispatcher))
        .collect();
    let ending = Ending::Lost("the server restarted while the job was running".into());
    let mut lost = Vec::new();
    for job in running {
        if end(tx, &job.id, &ending, at)?.is_some() {
            lost.push(job.id);
        }
    }
    Ok(lost)
}

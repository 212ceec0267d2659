//! Jobs: submit, start (at most once), end, cancel, and recovery after a server restart.

use muster_core::audit::AuditEvent;
use muster_core::job::{Ending, Job, JobId, JobState, TransitionError};
use muster_core::{Name, Timestamp, WorkerId};

use crate::error::StoreResult;
use crate::tx::{JobEnd, Tx};

/// Stores a new job, queued for the scheduler.
pub fn submit(tx: &mut dyn Tx, job: &Job, audit: &AuditEvent) -> StoreResult<()> {
    tx.insert_job(job)?;
    tx.insert_audit(audit)
}

/// Stores a new job already running on the worker the scheduler picked at submission: one
/// durable write instead of two (submit, then start), which is most of the latency from `job
/// run` to the command starting. The job enters `running` through [`Job::start`], like every job;
/// one that is not queued is refused, as a value, and nothing is written. Returns the job as
/// stored.
pub fn submit_started(
    tx: &mut dyn Tx,
    job: &Job,
    assignment: &Assignment,
    at: Timestamp,
    audit: &AuditEvent,
) -> StoreResult<Result<Job, TransitionError>> {
    let mut started = job.clone();
    if let Err(refused) = assignment.start(&mut started, at) {
        return Ok(Err(refused));
    }
    submit(tx, &started, audit)?;
    Ok(Ok(started))
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

impl Assignment {
    /// Applies the decision to the job in memory, through the state machine's one start
    /// transition ([`Job::start`]). The store's copy changes only with [`start_many`] or
    /// [`submit_started`].
    pub fn start(&self, job: &mut Job, at: Timestamp) -> Result<(), TransitionError> {
        debug_assert_eq!(job.id, self.job, "an assignment applies to its own job");
        job.start(
            self.worker.clone(),
            self.worker_name.clone(),
            self.dispatcher.clone(),
            at,
        )
    }
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

#[cfg(test)]
mod tests {
    use muster_core::audit::Outcome;
    use muster_core::job::Selector;

    use super::*;
    use crate::Store;

    fn queued() -> Job {
        Job::queued(
            JobId::parse("00000000000000b1").unwrap(),
            vec!["true".into()],
            Selector::default(),
            Timestamp::from_unix_millis(1_000),
            Timestamp::from_unix_millis(600_000),
        )
    }

    fn assignment(job: &Job) -> Assignment {
        Assignment {
            job: job.id.clone(),
            worker: WorkerId::parse(&"cd".repeat(16)).unwrap(),
            worker_name: Name::parse("runner").unwrap(),
            dispatcher: "replica-a".into(),
        }
    }

    fn audit() -> AuditEvent {
        AuditEvent {
            expected: None,
            at: Timestamp::from_unix_millis(1_000),
            actor: "admin".into(),
            action: "job.submit".into(),
            target: "00000000000000b1".into(),
            remote_addr: None,
            outcome: Outcome::Ok,
            detail: String::new(),
        }
    }

    #[tokio::test]
    async fn the_fast_path_stores_a_job_started_through_the_state_machine() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("muster.db")).unwrap();
        let job = queued();
        let (a, at) = (assignment(&job), Timestamp::from_unix_millis(1_000));
        let mut expected = job.clone();
        expected
            .start(
                a.worker.clone(),
                a.worker_name.clone(),
                a.dispatcher.clone(),
                at,
            )
            .unwrap();

        let started = store
            .write(move |tx| submit_started(tx, &job, &a, at, &audit()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(started, expected);
        let stored = store.read(|tx| tx.get_job(&queued().id)).await.unwrap();
        assert_eq!(stored, Some(expected), "stored as Job::start left it");

        // A job that is not queued is refused, and nothing more is written.
        let mut running = started.clone();
        running.id = JobId::parse("00000000000000b2").unwrap();
        let a = assignment(&running);
        let refused = store
            .write(move |tx| submit_started(tx, &running, &a, at, &audit()))
            .await
            .unwrap();
        assert_eq!(
            refused.map_err(|e| (e.from, e.to)),
            Err((JobState::Running, JobState::Running))
        );
        let id = JobId::parse("00000000000000b2").unwrap();
        assert_eq!(store.read(move |tx| tx.get_job(&id)).await.unwrap(), None);
    }
}

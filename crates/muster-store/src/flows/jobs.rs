//! Jobs: submit, start (at most once), end, cancel, and holding running jobs across a server
//! restart or a failover: held again at start, taken over when their worker reports them,
//! lost when it does not come back.

use muster_core::audit::{AuditEvent, Outcome};
use muster_core::job::{Ending, Job, JobId, JobState, TransitionError};
use muster_core::{Name, Timestamp, WorkerId};

use crate::error::StoreResult;
use crate::tx::{JobEnd, OutputPosition, Tx};

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
    ended(tx, id, at)
}

/// The job as it ended, with its `job.end` record (the `job.ended` event) in the same
/// transaction: a webhook hears of every end, once, whichever way the job ended.
fn ended(tx: &mut dyn Tx, id: &JobId, at: Timestamp) -> StoreResult<Option<Job>> {
    let Some(job) = tx.get_job(id)? else {
        return Ok(None);
    };
    let mut detail = job.state.to_string();
    if let Some(code) = job.exit_code {
        detail.push_str(&format!(", exit code {code}"));
    }
    if let Some(reason) = job.reason.as_ref().filter(|r| **r != detail) {
        detail.push_str(&format!(": {reason}"));
    }
    tx.insert_audit(&AuditEvent {
        at,
        actor: "server".into(),
        action: ENDED.into(),
        target: job.id.to_string(),
        remote_addr: None,
        outcome: Outcome::Ok,
        detail,
        expected: None,
    })?;
    Ok(Some(job))
}

/// The audit action of a job's end (the event `job.ended`).
pub const ENDED: &str = "job.end";

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

/// A running job a replica holds, and where its stored output stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub job: Job,
    pub output: OutputPosition,
}

fn held(tx: &mut dyn Tx, job: Job) -> StoreResult<Held> {
    let output = tx.output_position(&job.id)?;
    Ok(Held { job, output })
}

/// At start: the running jobs this replica held when it stopped (and any that name no replica).
/// Their workers may well still run them: they are held again, awaiting their workers, not
/// ended. Jobs other replicas hold are theirs.
pub fn held_by(tx: &mut dyn Tx, dispatcher: &str) -> StoreResult<Vec<Held>> {
    let running: Vec<Job> = tx
        .jobs_in_state(JobState::Running)?
        .into_iter()
        .filter(|job| job.dispatcher.as_deref().is_none_or(|d| d == dispatcher))
        .collect();
    running.into_iter().map(|job| held(tx, job)).collect()
}

/// Ends a running job as lost, only if this replica still holds it: another replica its worker
/// reported it to may have taken it over meanwhile. Returns the job as it now is if it ended.
pub fn lose_held(
    tx: &mut dyn Tx,
    id: &JobId,
    dispatcher: &str,
    reason: &str,
    at: Timestamp,
) -> StoreResult<Option<Job>> {
    let ending = Ending::Lost(reason.to_owned());
    let end = JobEnd {
        state: ending.state(),
        at,
        exit_code: None,
        reason: ending.reason(),
        ending: ending.kind(),
    };
    if !tx.end_held_job(id, dispatcher, &end)? {
        return Ok(None);
    }
    ended(tx, id, at)
}

/// What a worker's report of the jobs it holds changed.
#[derive(Debug, Default)]
pub struct Resumed {
    /// Reported jobs still running on this worker: now held by the reporting replica.
    pub adopted: Vec<Held>,
    /// Jobs running on this worker that it did not report (and the caller does not keep): the
    /// worker does not have them, so they are lost. Never started again.
    pub lost: Vec<Job>,
    /// Reported jobs that are not running on this worker (ended, written off, unknown): the
    /// worker must stop them.
    pub unknown: Vec<JobId>,
}

/// Why a job is lost when its worker comes back without it.
pub const CAME_BACK_WITHOUT: &str =
    "the worker disconnected and came back without the job (it restarted, or never got it)";

/// A worker that (re)connected reported the jobs it holds: each still running on it is taken
/// over by `dispatcher`; each running on it that it did not report is lost, unless `keep` says
/// the caller placed it on this very connection (a start that raced the report).
pub fn resume(
    tx: &mut dyn Tx,
    worker: &WorkerId,
    dispatcher: &str,
    reported: &[JobId],
    keep: &dyn Fn(&JobId) -> bool,
    at: Timestamp,
) -> StoreResult<Resumed> {
    let mut resumed = Resumed::default();
    let running = tx.running_jobs_of(worker)?;
    for job in running {
        if reported.contains(&job.id) {
            if tx.adopt_job(&job.id, worker, dispatcher)? {
                let mut job = job;
                job.dispatcher = Some(dispatcher.to_owned());
                resumed.adopted.push(held(tx, job)?);
            }
        } else if !keep(&job.id)
            && let Some(ended) = end(tx, &job.id, &Ending::Lost(CAME_BACK_WITHOUT.into()), at)?
        {
            resumed.lost.push(ended);
        }
    }
    resumed.unknown = reported
        .iter()
        .filter(|id| !resumed.adopted.iter().any(|h| &h.job.id == *id))
        .cloned()
        .collect();
    Ok(resumed)
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

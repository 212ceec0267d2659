//! Submitting, listing, showing and cancelling jobs, and finding a job's output.

use std::time::Duration;

use muster_core::Timestamp;
use muster_core::WorkerStatus;
use muster_core::audit::Outcome;
use muster_core::job::{Job, JobId, JobState, Selector};
use muster_proto::ErrorCode;
use muster_proto::api::{JobView, Placement, SubmitJobRequest};
use muster_store::flows::jobs::{self, Cancel};
use muster_store::{JobFilter, OutputChunk};
use rand::rngs::OsRng;

use crate::error::AppError;
use crate::events::ReplicaEvent;
use crate::jobs::follow;
use crate::ops::page::{self, Cursor, Page};
use crate::ops::{Actor, workers};
use crate::state::AppState;
use crate::{validate, views};

/// Stored output chunks read per query.
const OUTPUT_PAGE: u32 = 512;

/// How long a job waits for a matching worker unless told otherwise.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(600);

pub fn job_id(input: &str) -> Result<JobId, AppError> {
    JobId::parse(input).map_err(|e| AppError::bad_request(ErrorCode::BadRequest, e))
}

pub fn no_such_job(id: &JobId) -> AppError {
    AppError::not_found(format!("no job `{id}`")).with_hint("`muster job list` shows recent jobs")
}

/// Checks a job request, stores the job (started at once if a matching worker has a free slot,
/// queued otherwise) and records who asked for it.
pub async fn submit(
    app: &AppState,
    actor: &Actor,
    req: SubmitJobRequest,
) -> Result<JobView, AppError> {
    Job::validate_spec(&req.command, &req.env)
        .map_err(|e| AppError::bad_request(ErrorCode::BadRequest, e))?;
    let worker = req.worker.as_deref().map(validate::name).transpose()?;
    let labels = validate::labels(&req.labels)?;
    let timeout = req.timeout.as_deref().map(validate::duration).transpose()?;
    let queue_wait = req
        .queue_timeout
        .as_deref()
        .map(validate::duration)
        .transpose()?
        .unwrap_or(DEFAULT_QUEUE_TIMEOUT);
    // A job for a named worker is refused at once if there is no such worker, or if it can
    // never run there: the worker is revoked, expired or suspended (waiting would only end in
    // the queue timeout).
    let named = match &worker {
        Some(name) => match workers::find(app, name).await? {
            Some(record) => {
                let status = record.status(app.registry.is_connected(&record.id), app.clock.now());
                if !matches!(status, WorkerStatus::Connected | WorkerStatus::Disconnected) {
                    return Err(AppError::conflict(
                        ErrorCode::Conflict,
                        format!(
                            "worker `{name}` is {}: a job for it would never run",
                            status.as_str()
                        ),
                    )
                    .with_hint("`muster workers list --status connected` shows the workers that can run it"));
                }
                Some(record.id)
            }
            None => return Err(workers::no_such_worker(name)),
        },
        None => None,
    };
    let now = app.clock.now();
    let mut job = Job::queued(
        JobId::generate(&mut OsRng),
        req.command,
        Selector { worker, labels },
        now,
        now.saturating_add(queue_wait),
    );
    job.env = req.env;
    job.timeout = timeout;
    // The audit record names the program, not its arguments: those may carry secrets.
    let detail = format!("runs `{}` on {}", job.command[0], job.selector);
    let event = app.audit_event(
        &actor.name,
        "job.submit",
        job.id.as_str(),
        actor.remote,
        Outcome::Ok,
        detail,
    );
    let selector = job.selector.clone();
    let job = app.jobs.submit(job, event, named.as_ref()).await?;
    let mut view = views::job(&job);
    view.placement = Some(placement(app, &selector, named).await?);
    Ok(view)
}

/// Who could take a job now, so `job run` can say at once that it waits, and for what. This
/// replica's sessions answer first; only when none of them matches are the workers other
/// replicas hold counted too (their presence rows), so the common case costs no query and the
/// "nothing matches" line speaks for the whole fleet.
async fn placement(
    app: &AppState,
    selector: &Selector,
    named: Option<muster_core::WorkerId>,
) -> Result<Placement, AppError> {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    // Answered on every submission, after the job went to its worker but while the worker
    // starts it: a job for a named worker looks at that worker's session alone, and any other
    // counts under the registry's lock instead of copying the fleet's sessions.
    let (connected, here) = match &named {
        Some(id) => (
            app.registry.len(),
            usize::from(
                app.registry
                    .get(id)
                    .is_some_and(|s| selector.matches(&s.name, &s.labels)),
            ),
        ),
        None => app.registry.count(|s| selector.matches(&s.name, &s.labels)),
    };
    if here > 0 {
        return Ok(Placement {
            connected: count(connected),
            matching: count(here),
        });
    }
    let replica = app.jobs.replica().to_owned();
    let labels: Vec<(String, String)> = selector
        .labels
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let (elsewhere, matching) = app
        .store
        .read(move |tx| {
            let elsewhere = tx.count_present_elsewhere(&replica, &[])?;
            let matching = match &named {
                Some(id) => u64::from(tx.presence_of(id)?.is_some_and(|p| p.replica != replica)),
                None => tx.count_present_elsewhere(&replica, &labels)?,
            };
            Ok((elsewhere, matching))
        })
        .await?;
    let count64 = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(Placement {
        connected: count(connected).saturating_add(count64(elsewhere)),
        matching: count64(matching),
    })
}

/// Reads a job state filter (`state=`): empty means any.
pub fn state_filter(given: Option<&str>) -> Result<Option<JobState>, AppError> {
    match given.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => Ok(Some(JobState::parse(s).ok_or_else(|| {
            AppError::bad_request(
                ErrorCode::BadRequest,
                format!("unknown job state `{}`", page::shown(s)),
            )
            .with_hint("states are queued, running, succeeded, failed, cancelled, lost")
        })?)),
    }
}

/// One page of jobs, newest first, after the job `before` names. Empty filters mean "any".
pub async fn page(
    app: &AppState,
    state: Option<JobState>,
    worker: Option<&str>,
    before: Option<(Timestamp, JobId)>,
    order: page::Order,
    limit: u32,
) -> Result<Page<JobView>, AppError> {
    let worker = worker
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(validate::name)
        .transpose()?;
    let filter = JobFilter {
        state,
        worker,
        before,
        limit: limit + 1,
        reverse: order == page::Order::Reverse,
    };
    let jobs = app.store.read(move |tx| tx.list_jobs(&filter)).await?;
    Ok(Page::cut(jobs, limit, views::job, |j| {
        Cursor::Job(j.created_at, j.id.clone())
    }))
}

/// Recent jobs, newest first (the first page). Empty filters mean "any".
pub async fn list(
    app: &AppState,
    state: Option<&str>,
    worker: Option<&str>,
    limit: Option<u32>,
) -> Result<Vec<JobView>, AppError> {
    let state = state_filter(state)?;
    let limit = limit.unwrap_or(50).clamp(1, page::MAX_LIMIT);
    Ok(page(app, state, worker, None, page::Order::Forward, limit)
        .await?
        .items)
}

pub async fn show(app: &AppState, id: &str) -> Result<JobView, AppError> {
    let id = job_id(id)?;
    let key = id.clone();
    let job = app
        .store
        .read(move |tx| tx.get_job(&key))
        .await?
        .ok_or_else(|| no_such_job(&id))?;
    Ok(views::job(&job))
}

/// A job's output as newline-delimited JSON: what is stored after chunk `after`, then (with
/// `follow`) what arrives live until the job ends. The job must exist.
pub async fn output(
    app: &AppState,
    id: &str,
    after: u64,
    follow: bool,
) -> Result<axum::body::Body, AppError> {
    let id = job_id(id)?;
    let key = id.clone();
    if app.store.read(move |tx| tx.get_job(&key)).await?.is_none() {
        return Err(no_such_job(&id));
    }
    Ok(follow::body(app.clone(), id, after, follow))
}

/// Everything stored for a job's output, in order (for a page that shows it whole).
pub async fn stored_output(app: &AppState, id: &str) -> Result<Vec<OutputChunk>, AppError> {
    let id = job_id(id)?;
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let key = id.clone();
        let page = app
            .store
            .read(move |tx| tx.read_output(&key, after, OUTPUT_PAGE))
            .await?;
        let full = page.len() == OUTPUT_PAGE as usize;
        if let Some(last) = page.last() {
            after = last.seq;
        }
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

/// Cancels a queued job at once, or asks the worker running it to kill it.
pub async fn cancel(app: &AppState, actor: &Actor, id: &str) -> Result<JobView, AppError> {
    let id = job_id(id)?;
    let now = app.clock.now();
    let event = app.audit_event(
        &actor.name,
        "job.cancel",
        id.as_str(),
        actor.remote,
        Outcome::Ok,
        "cancel requested",
    );
    let key = id.clone();
    match app
        .store
        .write(move |tx| {
            let found = jobs::cancel(tx, &key, now, &event)?;
            if let Cancel::Running(job) = &found
                && let Some(worker) = &job.worker_id
            {
                let event = ReplicaEvent::CancelJob {
                    job: job.id.clone(),
                    worker: worker.clone(),
                };
                tx.notify(&event.encode())?;
            }
            Ok(found)
        })
        .await?
    {
        Cancel::NotFound => Err(no_such_job(&id)),
        Cancel::Dequeued(job) => {
            crate::diag::metrics().job(job.state);
            app.jobs.dequeued(&id);
            Ok(views::job(&job))
        }
        Cancel::Running(job) => {
            if let Some(worker) = &job.worker_id {
                app.jobs.cancel_running(&id, worker);
            }
            Ok(views::job(&job))
        }
        Cancel::AlreadyEnded(job) => Err(AppError::conflict(
            ErrorCode::Conflict,
            format!("job `{id}` has already ended ({})", job.state),
        )
        .with_hint(format!("`muster job show {id}` tells how it ended"))),
    }
}

//! Listing, showing and cancelling jobs.

use muster_core::audit::Outcome;
use muster_core::job::{JobId, JobState};
use muster_proto::ErrorCode;
use muster_proto::api::JobView;
use muster_store::JobFilter;
use muster_store::flows::jobs::{self, Cancel};

use crate::api::error::AppError;
use crate::api::extract::Admin;
use crate::api::{validate, views};
use crate::events::ReplicaEvent;
use crate::state::AppState;

pub fn job_id(input: &str) -> Result<JobId, AppError> {
    JobId::parse(input).map_err(|e| AppError::bad_request(ErrorCode::BadRequest, e))
}

pub fn no_such_job(id: &JobId) -> AppError {
    AppError::not_found(format!("no job `{id}`")).with_hint("`muster job list` shows recent jobs")
}

/// Recent jobs, newest first. Empty filters mean "any".
pub async fn list(
    app: &AppState,
    state: Option<&str>,
    worker: Option<&str>,
    limit: Option<u32>,
) -> Result<Vec<JobView>, AppError> {
    let state = match state {
        None | Some("") => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            AppError::bad_request(ErrorCode::BadRequest, format!("unknown job state `{s}`"))
                .with_hint("states are queued, running, succeeded, failed, cancelled, lost")
        })?),
    };
    let worker = worker
        .filter(|w| !w.is_empty())
        .map(validate::name)
        .transpose()?;
    let filter = JobFilter {
        state,
        worker,
        limit: limit.unwrap_or(50).clamp(1, 1000),
    };
    let jobs = app.store.read(move |tx| tx.list_jobs(&filter)).await?;
    Ok(jobs.iter().map(views::job).collect())
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

/// Cancels a queued job at once, or asks the worker running it to kill it.
pub async fn cancel(app: &AppState, admin: &Admin, id: &str) -> Result<JobView, AppError> {
    let id = job_id(id)?;
    let now = app.clock.now();
    let event = app.audit_event(
        &admin.actor,
        "job.cancel",
        id.as_str(),
        admin.remote,
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

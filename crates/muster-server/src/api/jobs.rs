//! `/api/v1/jobs`: submit, list, show, follow output, cancel.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use muster_core::audit::Outcome;
use muster_core::job::{Job, JobId, JobState, Selector};
use muster_proto::ErrorCode;
use muster_proto::api::{JobView, SubmitJobRequest};
use muster_store::JobFilter;
use muster_store::flows::jobs::{self, Cancel};
use rand::rngs::OsRng;
use serde::Deserialize;

use crate::api::error::AppError;
use crate::api::extract::{Admin, ApiJson};
use crate::api::{validate, views};
use crate::jobs::follow;
use crate::state::AppState;

/// How long a job waits for a matching worker unless told otherwise.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(600);

fn job_id(input: &str) -> Result<JobId, AppError> {
    JobId::parse(input).map_err(|e| AppError::bad_request(ErrorCode::BadRequest, e))
}

fn no_such_job(id: &JobId) -> AppError {
    AppError::not_found(format!("no job `{id}`")).with_hint("`muster job list` shows recent jobs")
}

pub async fn submit(
    State(app): State<AppState>,
    admin: Admin,
    ApiJson(req): ApiJson<SubmitJobRequest>,
) -> Result<(StatusCode, Json<JobView>), AppError> {
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
    if let Some(name) = &worker {
        let key = name.clone();
        if app
            .store
            .read(move |tx| tx.get_worker_by_name(&key))
            .await?
            .is_none()
        {
            return Err(AppError::not_found(format!("no worker named `{name}`"))
                .with_hint("`muster workers list` shows the workers there are"));
        }
    }
    let now = app.clock.now();
    let job = Job {
        id: JobId::generate(&mut OsRng),
        command: req.command,
        env: req.env,
        selector: Selector { worker, labels },
        timeout,
        queue_deadline: now.saturating_add(queue_wait),
        state: JobState::Queued,
        worker_id: None,
        worker_name: None,
        created_at: now,
        started_at: None,
        finished_at: None,
        exit_code: None,
        reason: None,
        output_bytes: 0,
        truncated: false,
    };
    // The audit record names the program, not its arguments: those may carry secrets.
    let detail = format!("runs `{}` on {}", job.command[0], job.selector);
    let event = app.audit_event(
        &admin.actor,
        "job.submit",
        job.id.as_str(),
        admin.remote,
        Outcome::Ok,
        detail,
    );
    let stored = job.clone();
    app.store
        .write(move |tx| jobs::submit(tx, &stored, &event))
        .await?;
    let view = views::job(&job);
    app.jobs.enqueue(job);
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub state: Option<String>,
    pub worker: Option<String>,
    pub limit: Option<u32>,
}

pub async fn list(
    State(app): State<AppState>,
    _admin: Admin,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<JobView>>, AppError> {
    let Query(query) =
        query.map_err(|e| AppError::bad_request(ErrorCode::BadRequest, e.body_text()))?;
    let state = match query.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            AppError::bad_request(ErrorCode::BadRequest, format!("unknown job state `{s}`"))
                .with_hint("states are queued, running, succeeded, failed, cancelled, lost")
        })?),
    };
    let worker = query
        .worker
        .as_deref()
        .filter(|w| !w.is_empty())
        .map(validate::name)
        .transpose()?;
    let filter = JobFilter {
        state,
        worker,
        limit: query.limit.unwrap_or(50).clamp(1, 1000),
    };
    let jobs = app.store.read(move |tx| tx.list_jobs(&filter)).await?;
    Ok(Json(jobs.iter().map(views::job).collect()))
}

pub async fn show(
    State(app): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<JobView>, AppError> {
    let id = job_id(&id)?;
    let key = id.clone();
    let job = app
        .store
        .read(move |tx| tx.get_job(&key))
        .await?
        .ok_or_else(|| no_such_job(&id))?;
    Ok(Json(views::job(&job)))
}

#[derive(Debug, Deserialize)]
pub struct OutputQuery {
    #[serde(default)]
    pub follow: bool,
    #[serde(default)]
    pub after: u64,
}

pub async fn output(
    State(app): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    query: Result<Query<OutputQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let Query(query) =
        query.map_err(|e| AppError::bad_request(ErrorCode::BadRequest, e.body_text()))?;
    let id = job_id(&id)?;
    let key = id.clone();
    if app.store.read(move |tx| tx.get_job(&key)).await?.is_none() {
        return Err(no_such_job(&id));
    }
    let body = follow::body(app, id, query.after, query.follow);
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

pub async fn cancel(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<JobView>, AppError> {
    let id = job_id(&id)?;
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
        .write(move |tx| jobs::cancel(tx, &key, now, &event))
        .await?
    {
        Cancel::NotFound => Err(no_such_job(&id)),
        Cancel::Dequeued(job) => {
            app.jobs.dequeued(&id);
            Ok(Json(views::job(&job)))
        }
        Cancel::Running(job) => {
            if let Some(worker) = &job.worker_id {
                app.jobs.cancel_running(&id, worker);
            }
            Ok(Json(views::job(&job)))
        }
        Cancel::AlreadyEnded(job) => Err(AppError::conflict(
            ErrorCode::Conflict,
            format!("job `{id}` has already ended ({})", job.state),
        )
        .with_hint(format!("`muster job show {id}` tells how it ended"))),
    }
}

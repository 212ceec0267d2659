//! `/api/v1/jobs`: submit, list, show, follow output, cancel. Listing, showing and cancelling
//! are in [`crate::ops::jobs`], shared with the web UI.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use muster_core::audit::Outcome;
use muster_core::job::{Job, JobId, JobState, Selector};
use muster_proto::ErrorCode;
use muster_proto::api::{JobView, SubmitJobRequest};
use rand::rngs::OsRng;
use serde::Deserialize;

use crate::api::error::AppError;
use crate::api::extract::{Admin, ApiJson};
use crate::api::{validate, views};
use crate::jobs::follow;
use crate::ops;
use crate::state::AppState;

/// How long a job waits for a matching worker unless told otherwise.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(600);

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
    let mut named = None;
    if let Some(name) = &worker {
        let key = name.clone();
        match app
            .store
            .read(move |tx| tx.get_worker_by_name(&key))
            .await?
        {
            Some(record) => named = Some(record.id),
            None => {
                return Err(AppError::not_found(format!("no worker named `{name}`"))
                    .with_hint("`muster workers list` shows the workers there are"));
            }
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
        ending: None,
        output_bytes: 0,
        truncated: false,
        dispatcher: None,
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
    let job = app.jobs.submit(job, event, named.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(views::job(&job))))
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
    let jobs = ops::jobs::list(
        &app,
        query.state.as_deref(),
        query.worker.as_deref(),
        query.limit,
    )
    .await?;
    Ok(Json(jobs))
}

pub async fn show(
    State(app): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<JobView>, AppError> {
    Ok(Json(ops::jobs::show(&app, &id).await?))
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
    let id = ops::jobs::job_id(&id)?;
    let key = id.clone();
    if app.store.read(move |tx| tx.get_job(&key)).await?.is_none() {
        return Err(ops::jobs::no_such_job(&id));
    }
    let body = follow::body(app, id, query.after, query.follow);
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

pub async fn cancel(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<JobView>, AppError> {
    Ok(Json(ops::jobs::cancel(&app, &admin, &id).await?))
}

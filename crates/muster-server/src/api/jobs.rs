//! `/api/v1/jobs`: submit, list, show, follow output, cancel. The work is in
//! [`crate::ops::jobs`], shared with the web UI.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use muster_proto::api::{JobView, SubmitJobRequest};
use serde::Deserialize;

use crate::api::extract::{Admin, ApiJson, ApiQuery};
use crate::api::page::ListQuery;
use crate::error::AppError;
use crate::ops;
use crate::ops::page::{Cursor, CursorKind};
use crate::state::AppState;

pub async fn submit(
    State(app): State<AppState>,
    Admin(actor): Admin,
    ApiJson(req): ApiJson<SubmitJobRequest>,
) -> Result<(StatusCode, Json<JobView>), AppError> {
    let job = ops::jobs::submit(&app, &actor, req).await?;
    Ok((StatusCode::CREATED, Json(job)))
}

/// One page of jobs, newest first: `state`, `worker`, `limit`, `cursor`.
pub async fn list(
    State(app): State<AppState>,
    _: Admin,
    query: ListQuery,
) -> Result<Response, AppError> {
    query.only(&["state", "worker", "limit", "cursor"])?;
    let state = ops::jobs::state_filter(query.one("state"))?;
    let before = match query.cursor(CursorKind::Job)? {
        Some(Cursor::Job(at, id)) => Some((at, id)),
        _ => None,
    };
    let page = ops::jobs::page(&app, state, query.one("worker"), before, query.limit()?).await?;
    Ok(query.respond(page))
}

pub async fn show(
    State(app): State<AppState>,
    _: Admin,
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
    _: Admin,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<OutputQuery>,
) -> Result<Response, AppError> {
    let body = ops::jobs::output(&app, &id, query.after, query.follow).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

pub async fn cancel(
    State(app): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> Result<Json<JobView>, AppError> {
    Ok(Json(ops::jobs::cancel(&app, &actor, &id).await?))
}

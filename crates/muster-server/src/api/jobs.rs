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

#[utoipa::path(post, path = "/api/v1/jobs", request_body = muster_proto::api::SubmitJobRequest, responses((status = 201, body = muster_proto::api::JobView), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody), (status = 404, description = "no such resource", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn submit(
    State(app): State<AppState>,
    Admin(actor): Admin,
    ApiJson(req): ApiJson<SubmitJobRequest>,
) -> Result<(StatusCode, Json<JobView>), AppError> {
    let job = ops::jobs::submit(&app, &actor, req).await?;
    Ok((StatusCode::CREATED, Json(job)))
}

/// One page of jobs, newest first: `state`, `worker`, `limit`, `cursor`.
#[utoipa::path(get, path = "/api/v1/jobs", params(("state" = Option<String>, Query, description = "only jobs in this state"), ("worker" = Option<String>, Query, description = "only jobs on this worker"), ("limit" = Option<u32>, Query, description = "at most this many (1 to 5,000)"), ("cursor" = Option<String>, Query, description = "where the page starts: from the `Link` header of the page before")), responses((status = 200, body = Vec<muster_proto::api::JobView>, headers(("link" = String, description = "the next page: `<URL>; rel=\"next\"`, absent on the last"))), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody)), security(("admin" = [])))]
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
    let page = ops::jobs::page(
        &app,
        state,
        query.one("worker"),
        before,
        ops::page::Order::Forward,
        query.limit()?,
    )
    .await?;
    Ok(query.respond(page))
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", params(("id" = String, Path, description = "the id")), responses((status = 200, body = muster_proto::api::JobView), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody), (status = 404, description = "no such resource", body = muster_proto::ErrorBody)), security(("admin" = [])))]
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

#[utoipa::path(get, path = "/api/v1/jobs/{id}/output", params(("id" = String, Path, description = "the id"), ("follow" = Option<bool>, Query, description = "stream until the job ends"), ("after" = Option<u64>, Query, description = "only chunks after this seq")), responses((status = 200, description = "one JSON job event per line", content_type = "application/x-ndjson", body = muster_proto::api::JobEvent), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody), (status = 404, description = "no such resource", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn output(
    State(app): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<OutputQuery>,
) -> Result<Response, AppError> {
    let body = ops::jobs::output(&app, &id, query.after, query.follow).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", params(("id" = String, Path, description = "the id")), responses((status = 200, body = muster_proto::api::JobView), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody), (status = 404, description = "no such resource", body = muster_proto::ErrorBody), (status = 409, description = "a conflict", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn cancel(
    State(app): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> Result<Json<JobView>, AppError> {
    Ok(Json(ops::jobs::cancel(&app, &actor, &id).await?))
}

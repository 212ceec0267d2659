//! `/api/v1/workers`: the fleet, and creating, revoking and removing workers. The work is in
//! [`crate::ops::workers`], shared with the web UI.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use muster_proto::api::{CreateWorkerRequest, CreatedWorker, WorkerView};

use crate::api::extract::{Admin, ApiJson, host};
use crate::api::license::PreparesWorker;
use crate::api::page::ListQuery;
use crate::error::AppError;
use crate::ops;
use crate::ops::page::{Cursor, CursorKind};
use crate::state::AppState;

/// One page of the fleet in name order: `status`, `label` (`k` or `k=v`, repeatable), `name`
/// (a substring), `limit`, `cursor`.
pub async fn list(
    State(app): State<AppState>,
    _: Admin,
    query: ListQuery,
) -> Result<Response, AppError> {
    query.only(&["status", "label", "name", "limit", "cursor"])?;
    let filter =
        ops::workers::Filter::parse(query.one("status"), query.all("label"), query.one("name"))?;
    let after = match query.cursor(CursorKind::Worker)? {
        Some(Cursor::Worker(name)) => Some(name),
        _ => None,
    };
    let page = ops::workers::page(&app, &filter, after, query.limit()?).await?;
    Ok(query.respond(page))
}

pub async fn show(
    State(app): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<Json<WorkerView>, AppError> {
    Ok(Json(ops::workers::show(&app, &name).await?))
}

/// Creates a worker by hand and returns its API key, this once.
pub async fn create(
    State(app): State<AppState>,
    Admin(actor): Admin,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateWorkerRequest>,
) -> Result<(StatusCode, Extension<PreparesWorker>, Json<CreatedWorker>), AppError> {
    let created = ops::workers::create(&app, &actor, host(&headers), &req).await?;
    Ok((
        StatusCode::CREATED,
        Extension(PreparesWorker),
        Json(created),
    ))
}

pub async fn revoke(
    State(app): State<AppState>,
    Admin(actor): Admin,
    Path(name): Path<String>,
) -> Result<Json<WorkerView>, AppError> {
    Ok(Json(ops::workers::revoke(&app, &actor, &name).await?))
}

pub async fn remove(
    State(app): State<AppState>,
    Admin(actor): Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    ops::workers::remove(&app, &actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

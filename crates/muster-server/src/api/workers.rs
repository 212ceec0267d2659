//! `/api/v1/workers`: the fleet, and creating, revoking and removing workers. The work is in
//! [`crate::ops::workers`], shared with the web UI.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use muster_proto::ErrorCode;
use muster_proto::api::{CreateWorkerRequest, CreatedWorker, WorkerView};

use crate::api::extract::{Admin, ApiJson, host};
use crate::api::license::PreparesWorker;
use crate::api::page::ListQuery;
use crate::error::AppError;
use crate::ops;
use crate::ops::page::{Cursor, CursorKind};
use crate::state::AppState;

/// One page of the fleet: `status`, `label` (`k` or `k=v`, repeatable), `name` (a substring),
/// `sort` (`name`, `created` or `last_seen`, a leading `-` for descending; name by default),
/// `limit`, `cursor` (which belongs to the order it was given in).
#[utoipa::path(get, path = "/api/v1/workers", params(("status" = Option<String>, Query, description = "only workers with this status"), ("label" = Option<Vec<String>>, Query, description = "`key` or `key=value`, repeatable: every one must hold"), ("name" = Option<String>, Query, description = "only names containing this"), ("sort" = Option<String>, Query, description = "`name` (the default), `created` or `last_seen`; a leading `-` sorts descending"), ("limit" = Option<u32>, Query, description = "at most this many (1 to 5,000)"), ("cursor" = Option<String>, Query, description = "where the page starts: from the `Link` header of the page before")), responses((status = 200, body = Vec<muster_proto::api::WorkerView>, headers(("link" = String, description = "the next page: `<URL>; rel=\"next\"`, absent on the last"))), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn list(
    State(app): State<AppState>,
    _: Admin,
    query: ListQuery,
) -> Result<Response, AppError> {
    query.only(&["status", "label", "name", "sort", "limit", "cursor"])?;
    let filter =
        ops::workers::Filter::parse(query.one("status"), query.all("label"), query.one("name"))?;
    let sort = ops::workers::Sort::parse(query.one("sort"))?;
    let after = match query.cursor(CursorKind::Worker)? {
        Some(Cursor::Worker(given, at)) if given == sort => Some(at),
        Some(Cursor::Worker(given, _)) => {
            return Err(AppError::bad_request(
                ErrorCode::BadRequest,
                format!(
                    "`cursor` belongs to the list sorted by `{}`, not `{}`",
                    given.word(),
                    sort.word()
                ),
            )
            .with_hint(
                "follow the `Link: <…>; rel=\"next\"` header, or start again without `cursor`",
            ));
        }
        _ => None,
    };
    let page = ops::workers::page(&app, &filter, sort, after, query.limit()?).await?;
    Ok(query.respond(page))
}

#[utoipa::path(get, path = "/api/v1/workers/{name}", params(("name" = String, Path, description = "the name")), responses((status = 200, body = muster_proto::api::WorkerView), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody), (status = 404, description = "no such resource", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn show(
    State(app): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<Json<WorkerView>, AppError> {
    Ok(Json(ops::workers::show(&app, &name).await?))
}

/// Creates a worker by hand and returns its API key, this once.
#[utoipa::path(post, path = "/api/v1/workers", request_body = muster_proto::api::CreateWorkerRequest, responses((status = 201, body = muster_proto::api::CreatedWorker), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody), (status = 409, description = "a conflict", body = muster_proto::ErrorBody)), security(("admin" = [])))]
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

#[utoipa::path(post, path = "/api/v1/workers/{name}/revoke", params(("name" = String, Path, description = "the name")), responses((status = 200, body = muster_proto::api::WorkerView), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody), (status = 404, description = "no such resource", body = muster_proto::ErrorBody), (status = 409, description = "a conflict", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn revoke(
    State(app): State<AppState>,
    Admin(actor): Admin,
    Path(name): Path<String>,
) -> Result<Json<WorkerView>, AppError> {
    Ok(Json(ops::workers::revoke(&app, &actor, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/workers/{name}", params(("name" = String, Path, description = "the name")), responses((status = 204, description = "removed"), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody), (status = 404, description = "no such resource", body = muster_proto::ErrorBody), (status = 409, description = "a conflict", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn remove(
    State(app): State<AppState>,
    Admin(actor): Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    ops::workers::remove(&app, &actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

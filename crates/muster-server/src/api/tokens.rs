//! `/api/v1/tokens`: create, list, show and revoke enrollment tokens. The work is in
//! [`crate::ops::tokens`], shared with the web UI.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::{Extension, Json};
use muster_proto::api::{CreateTokenRequest, CreatedToken, TokenView};

use crate::api::extract::{Admin, ApiJson};
use crate::api::license::PreparesWorker;
use crate::api::page::ListQuery;
use crate::error::AppError;
use crate::ops;
use crate::ops::page::{Cursor, CursorKind};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/v1/tokens", request_body = muster_proto::api::CreateTokenRequest, responses((status = 201, body = muster_proto::api::CreatedToken), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody), (status = 409, description = "a conflict", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn create(
    State(app): State<AppState>,
    Admin(actor): Admin,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateTokenRequest>,
) -> Result<(StatusCode, Extension<PreparesWorker>, Json<CreatedToken>), AppError> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let created = ops::tokens::create(&app, &actor, host, &req).await?;
    Ok((
        StatusCode::CREATED,
        Extension(PreparesWorker),
        Json(created),
    ))
}

/// One page of tokens, oldest first: `state`, `limit`, `cursor`.
#[utoipa::path(get, path = "/api/v1/tokens", params(("state" = Option<String>, Query, description = "only tokens in this state"), ("limit" = Option<u32>, Query, description = "at most this many (1 to 5,000)"), ("cursor" = Option<String>, Query, description = "where the page starts: from the `Link` header of the page before")), responses((status = 200, body = Vec<muster_proto::api::TokenView>, headers(("link" = String, description = "the next page: `<URL>; rel=\"next\"`, absent on the last"))), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn list(
    State(app): State<AppState>,
    _: Admin,
    query: ListQuery,
) -> Result<Response, AppError> {
    query.only(&["state", "limit", "cursor"])?;
    let state = ops::tokens::state_filter(query.one("state"))?;
    let after = match query.cursor(CursorKind::Token)? {
        Some(Cursor::Token(at, name)) => Some((at, name)),
        _ => None,
    };
    let page = ops::tokens::page(
        &app,
        state,
        after,
        ops::page::Order::Forward,
        query.limit()?,
    )
    .await?;
    Ok(query.respond(page))
}

#[utoipa::path(get, path = "/api/v1/tokens/{name}", params(("name" = String, Path, description = "the name")), responses((status = 200, body = muster_proto::api::TokenView), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody), (status = 404, description = "no such resource", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn show(
    State(app): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<Json<TokenView>, AppError> {
    Ok(Json(ops::tokens::show(&app, &name).await?))
}

#[utoipa::path(post, path = "/api/v1/tokens/{name}/revoke", params(("name" = String, Path, description = "the name")), responses((status = 200, body = muster_proto::api::TokenView), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody), (status = 404, description = "no such resource", body = muster_proto::ErrorBody), (status = 409, description = "a conflict", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn revoke(
    State(app): State<AppState>,
    Admin(actor): Admin,
    Path(name): Path<String>,
) -> Result<Json<TokenView>, AppError> {
    Ok(Json(ops::tokens::revoke(&app, &actor, &name).await?))
}

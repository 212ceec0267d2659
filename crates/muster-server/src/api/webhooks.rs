//! `/api/v1/webhooks`: add, list, remove and test webhooks, and read a webhook's delivery log.
//! The work is in [`crate::ops::webhooks`].

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use muster_proto::api::{CreateWebhookRequest, DeliveryView, WebhookView};
use serde::Deserialize;

use crate::api::extract::{Admin, ApiJson, ApiQuery};
use crate::error::AppError;
use crate::ops;
use crate::state::AppState;

#[utoipa::path(post, path = "/api/v1/webhooks", request_body = muster_proto::api::CreateWebhookRequest, responses((status = 201, body = muster_proto::api::WebhookView), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody), (status = 409, description = "a conflict", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn create(
    State(app): State<AppState>,
    Admin(actor): Admin,
    ApiJson(req): ApiJson<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<WebhookView>), AppError> {
    let created = ops::webhooks::create(&app, &actor, &req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/v1/webhooks", responses((status = 200, body = Vec<muster_proto::api::WebhookView>), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn list(
    State(app): State<AppState>,
    _: Admin,
) -> Result<Json<Vec<WebhookView>>, AppError> {
    Ok(Json(ops::webhooks::list(&app).await?))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", params(("id" = String, Path, description = "the id")), responses((status = 204, description = "removed"), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody), (status = 404, description = "no such resource", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn remove(
    State(app): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    ops::webhooks::remove(&app, &actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", params(("id" = String, Path, description = "the id")), responses((status = 200, body = muster_proto::api::DeliveryView), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody), (status = 404, description = "no such resource", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn test(
    State(app): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> Result<Json<DeliveryView>, AppError> {
    Ok(Json(ops::webhooks::test(&app, &actor, &id).await?))
}

#[derive(Debug, Deserialize)]
pub struct DeliveriesQuery {
    /// At most this many deliveries, newest first (default 100, at most 1000).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", params(("id" = String, Path, description = "the id"), ("limit" = Option<u32>, Query, description = "at most this many")), responses((status = 200, body = Vec<muster_proto::api::DeliveryView>), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody), (status = 404, description = "no such resource", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn deliveries(
    State(app): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> Result<Json<Vec<DeliveryView>>, AppError> {
    Ok(Json(
        ops::webhooks::deliveries(&app, &id, query.limit).await?,
    ))
}

//! `/api/v1/enrollment`: switching auto-enrollment on and off, its write-only secret, and its
//! guard rails. The work is in [`crate::ops::enrollment`], shared with the web UI.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use muster_proto::api::{EnableEnrollmentRequest, EnableEnrollmentResponse, EnrollmentStatus};

use crate::api::extract::{Admin, ApiJson, host};
use crate::api::license::PreparesWorker;
use crate::error::AppError;
use crate::ops;
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/enrollment", responses((status = 200, body = muster_proto::api::EnrollmentStatus), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn status(
    State(app): State<AppState>,
    _: Admin,
) -> Result<Json<EnrollmentStatus>, AppError> {
    Ok(Json(ops::enrollment::status(&app).await?))
}

#[utoipa::path(post, path = "/api/v1/enrollment/enable", request_body = muster_proto::api::EnableEnrollmentRequest, responses((status = 200, body = muster_proto::api::EnableEnrollmentResponse), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn enable(
    State(app): State<AppState>,
    Admin(actor): Admin,
    headers: HeaderMap,
    ApiJson(req): ApiJson<EnableEnrollmentRequest>,
) -> Result<(Extension<PreparesWorker>, Json<EnableEnrollmentResponse>), AppError> {
    let enabled = ops::enrollment::enable(&app, &actor, host(&headers), &req).await?;
    Ok((Extension(PreparesWorker), Json(enabled)))
}

#[utoipa::path(post, path = "/api/v1/enrollment/rotate", request_body = muster_proto::api::EnableEnrollmentRequest, responses((status = 200, body = muster_proto::api::EnableEnrollmentResponse), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn rotate(
    State(app): State<AppState>,
    Admin(actor): Admin,
    headers: HeaderMap,
    ApiJson(req): ApiJson<EnableEnrollmentRequest>,
) -> Result<Json<EnableEnrollmentResponse>, AppError> {
    Ok(Json(
        ops::enrollment::rotate(&app, &actor, host(&headers), &req).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/enrollment/disable", responses((status = 200, body = muster_proto::api::EnrollmentStatus), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn disable(
    State(app): State<AppState>,
    Admin(actor): Admin,
) -> Result<Json<EnrollmentStatus>, AppError> {
    Ok(Json(ops::enrollment::disable(&app, &actor).await?))
}

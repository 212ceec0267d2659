//! `POST /api/v1/enroll`: a machine asks for a worker identity. The work is in
//! [`crate::ops::enroll`].

use axum::Json;
use axum::extract::State;
use muster_proto::api::{Challenge, EnrollRequest, EnrollResponse, Preflight};

use crate::api::extract::ApiJson;
use crate::error::AppError;
use crate::listener::Remote;
use crate::ops;
use crate::state::AppState;

#[utoipa::path(post, path = "/api/v1/enroll", request_body = muster_proto::api::EnrollRequest, responses((status = 200, body = muster_proto::api::EnrollResponse), (status = 400, body = muster_proto::ErrorBody), (status = 401, body = muster_proto::ErrorBody), (status = 403, body = muster_proto::ErrorBody), (status = 409, body = muster_proto::ErrorBody), (status = 429, body = muster_proto::ErrorBody)))]
pub async fn enroll(
    State(app): State<AppState>,
    Remote(remote): Remote,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Result<Json<EnrollResponse>, AppError> {
    Ok(Json(ops::enroll::enroll(&app, remote, &req).await?))
}

/// `GET /api/v1/challenge`: a nonce to sign, good for a minute on every replica.
#[utoipa::path(get, path = "/api/v1/challenge", responses((status = 200, body = muster_proto::api::Challenge)))]
pub async fn challenge(State(app): State<AppState>) -> Json<Challenge> {
    Json(Challenge {
        nonce: app.nonce_key.issue(app.clock.now()),
    })
}

/// `GET /api/v1/preflight`: what `muster worker doctor` checks before a worker joins.
#[utoipa::path(get, path = "/api/v1/preflight", responses((status = 200, body = muster_proto::api::Preflight), (status = 503, body = muster_proto::ErrorBody)))]
pub async fn preflight(State(app): State<AppState>) -> Result<Json<Preflight>, AppError> {
    Ok(Json(ops::enroll::preflight(&app).await?))
}

//! `POST /api/v1/enroll`: a machine asks for a worker identity. The work is in
//! [`crate::ops::enroll`].

use axum::Json;
use axum::extract::State;
use muster_proto::api::{Challenge, EnrollRequest, EnrollResponse};

use crate::api::extract::ApiJson;
use crate::error::AppError;
use crate::listener::Remote;
use crate::ops;
use crate::state::AppState;

pub async fn enroll(
    State(app): State<AppState>,
    Remote(remote): Remote,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Result<Json<EnrollResponse>, AppError> {
    Ok(Json(ops::enroll::enroll(&app, remote, &req).await?))
}

/// `GET /api/v1/challenge`: a nonce to sign, good for a minute on every replica.
pub async fn challenge(State(app): State<AppState>) -> Json<Challenge> {
    Json(Challenge {
        nonce: app.nonce_key.issue(app.clock.now()),
    })
}

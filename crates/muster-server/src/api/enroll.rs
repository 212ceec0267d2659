//! `POST /api/v1/enroll`: a machine asks for a worker identity. The work is in
//! [`crate::ops::enroll`].

use axum::Json;
use axum::extract::State;
use muster_proto::api::{EnrollRequest, EnrollResponse};

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

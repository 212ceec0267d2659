//! The REST API under `/api/v1/`, used by the CLI, the web UI and workers.

pub mod audit;
pub mod enroll;
pub mod enrollment;
pub mod events;
pub mod extract;
pub mod jobs;
pub mod license;
pub mod openapi;
pub mod page;
pub mod tokens;
pub mod webhooks;
pub mod workers;

#[cfg(test)]
mod tests;

use axum::Router;
use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::routing::{get, post};
use muster_proto::ErrorCode;
use muster_proto::api::Health;

use crate::control::connect;
use crate::error::AppError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/tokens", post(tokens::create).get(tokens::list))
        .route("/tokens/{name}", get(tokens::show))
        .route("/tokens/{name}/revoke", post(tokens::revoke))
        .route("/workers", get(workers::list).post(workers::create))
        .route(
            "/workers/{name}",
            get(workers::show).delete(workers::remove),
        )
        .route("/workers/{name}/revoke", post(workers::revoke))
        .route("/audit", get(audit::list))
        .route("/enrollment", get(enrollment::status))
        .route("/enrollment/enable", post(enrollment::enable))
        .route("/enrollment/rotate", post(enrollment::rotate))
        .route("/enrollment/disable", post(enrollment::disable))
        .route("/jobs", post(jobs::submit).get(jobs::list))
        .route("/jobs/{id}", get(jobs::show))
        .route("/jobs/{id}/output", get(jobs::output))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route(
            "/license",
            get(license::show)
                .put(license::install)
                .delete(license::remove),
        )
        .route("/license/trial", post(license::trial))
        .route("/events", get(events::stream))
        .route("/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/webhooks/{id}", axum::routing::delete(webhooks::remove))
        .route("/webhooks/{id}/test", post(webhooks::test))
        .route("/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/enroll", post(enroll::enroll))
        .route("/challenge", get(enroll::challenge))
        .route("/preflight", get(enroll::preflight))
        .route("/connect", get(connect::connect))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
}

#[utoipa::path(get, path = "/api/v1/health", responses((status = 200, body = muster_proto::api::Health)))]
async fn health() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

// The original URI: inside `nest` the request's own has lost its `/api/v1` prefix.
async fn not_found(OriginalUri(uri): OriginalUri) -> AppError {
    AppError::not_found(format!("no API endpoint at `{}`", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, OriginalUri(uri): OriginalUri) -> AppError {
    AppError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::BadRequest,
        format!("`{method}` is not allowed on `{}`", uri.path()),
    )
}

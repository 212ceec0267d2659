//! `GET /api/v1/audit`: the audit log, newest first. The work is in [`crate::ops::audit`],
//! shared with the web UI.

use axum::Json;
use axum::extract::State;
use muster_proto::api::AuditEntry;
use serde::Deserialize;

use crate::api::extract::{Admin, ApiQuery};
use crate::error::AppError;
use crate::ops;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    /// At most this many records (default 100, at most 1000).
    pub limit: Option<u32>,
    /// Only records older than this sequence number.
    pub before: Option<i64>,
    /// Only actions starting with this (`token.`, `enroll.`).
    pub action: Option<String>,
    /// Only records mentioning this text.
    pub q: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/audit", params(("limit" = Option<u32>, Query, description = "at most this many"), ("before" = Option<i64>, Query, description = "older than this seq"), ("action" = Option<String>, Query, description = "action prefix"), ("q" = Option<String>, Query, description = "text")), responses((status = 200, body = Vec<muster_proto::api::AuditEntry>), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn list(
    State(app): State<AppState>,
    _: Admin,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, AppError> {
    let filter = ops::audit::Filter {
        before: query.before,
        action: query.action.as_deref(),
        contains: query.q.as_deref(),
        limit: query.limit,
    };
    Ok(Json(ops::audit::list(&app, filter).await?))
}

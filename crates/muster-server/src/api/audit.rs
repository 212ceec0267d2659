//! `GET /api/v1/audit`: the audit log, newest first.

use axum::Json;
use axum::extract::{Query, State};
use muster_proto::ErrorCode;
use muster_proto::api::AuditEntry;
use muster_store::AuditFilter;
use serde::Deserialize;

use crate::api::error::AppError;
use crate::api::extract::Admin;
use crate::api::views;
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

pub async fn list(
    State(app): State<AppState>,
    _admin: Admin,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, AppError> {
    let Query(query) =
        query.map_err(|e| AppError::bad_request(ErrorCode::BadRequest, e.body_text()))?;
    let filter = AuditFilter {
        before_seq: query.before,
        action_prefix: query.action.filter(|s| !s.is_empty()),
        contains: query.q.filter(|s| !s.is_empty()),
        limit: query.limit.unwrap_or(100).clamp(1, 1000),
    };
    let records = app
        .store
        .read(move |tx| muster_store::flows::audit::list(tx, &filter))
        .await?;
    Ok(Json(records.iter().map(views::audit).collect()))
}

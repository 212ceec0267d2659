//! `GET /api/v1/audit`: the audit log, newest first. The work is in [`crate::ops::audit`],
//! shared with the web UI.

use axum::extract::State;
use axum::response::Response;
use muster_proto::ErrorCode;

use crate::api::extract::Admin;
use crate::api::page::ListQuery;
use crate::error::AppError;
use crate::ops;
use crate::ops::page::{Cursor, CursorKind};
use crate::state::AppState;

/// One page of the audit log, newest first: `action` (a prefix), `q` (text anywhere), `worker`
/// (records about that worker: its name is the target, or it acted), `limit`, `cursor`
/// (`before`, a sequence number, is the older way to say where to start).
#[utoipa::path(get, path = "/api/v1/audit", params(("limit" = Option<u32>, Query, description = "at most this many (1 to 5,000)"), ("cursor" = Option<String>, Query, description = "where the page starts: from the `Link` header of the page before"), ("before" = Option<i64>, Query, description = "older than this sequence number"), ("action" = Option<String>, Query, description = "action prefix"), ("q" = Option<String>, Query, description = "text anywhere"), ("worker" = Option<String>, Query, description = "records about this worker: its name is the target, or it acted")), responses((status = 200, body = Vec<muster_proto::api::AuditEntry>, headers(("link" = String, description = "the next page: `<URL>; rel=\"next\"`, absent on the last"))), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn list(
    State(app): State<AppState>,
    _: Admin,
    query: ListQuery,
) -> Result<Response, AppError> {
    query.only(&["action", "q", "worker", "before", "limit", "cursor"])?;
    let before = match query.cursor(CursorKind::Audit)? {
        Some(Cursor::Audit(seq)) => Some(seq),
        _ => match query.one("before").filter(|b| !b.is_empty()) {
            None => None,
            Some(b) => Some(b.parse::<i64>().map_err(|_| {
                AppError::bad_request(ErrorCode::BadRequest, "`before` must be a sequence number")
                    .with_hint("follow the `Link: <…>; rel=\"next\"` header instead")
            })?),
        },
    };
    let filter = ops::audit::Filter {
        before,
        action: query.one("action"),
        contains: query.one("q"),
        worker: query.one("worker"),
        limit: Some(query.limit()?),
    };
    Ok(query.respond(ops::audit::page(&app, filter).await?))
}

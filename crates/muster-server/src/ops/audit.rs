//! Reading the audit log, newest first.

use muster_proto::api::AuditEntry;
use muster_store::AuditFilter;

use crate::error::AppError;
use crate::ops::page::{self, Cursor, Page};
use crate::state::AppState;
use crate::views;

/// Records per page unless the caller asks for another count.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most records one page holds.
pub const MAX_LIMIT: u32 = 1000;

/// Which records to list. Empty texts mean "any".
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    /// Only records older than this sequence number.
    pub before: Option<i64>,
    /// Only actions starting with this (`token.`, `enroll.`).
    pub action: Option<&'a str>,
    /// Only records mentioning this text.
    pub contains: Option<&'a str>,
    /// Only records about the worker of this name (its target or its own actions).
    pub worker: Option<&'a str>,
    /// At most this many records ([`DEFAULT_LIMIT`] if none, at most [`MAX_LIMIT`]).
    pub limit: Option<u32>,
}

/// One page of the audit log, newest first, after the record `filter.before` names.
pub async fn page(app: &AppState, filter: Filter<'_>) -> Result<Page<AuditEntry>, AppError> {
    let text = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
    let limit = filter
        .limit
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, page::MAX_LIMIT);
    let stored = AuditFilter {
        before_seq: filter.before,
        action_prefix: text(filter.action),
        contains: text(filter.contains),
        worker: text(filter.worker),
        limit: limit + 1,
    };
    let records = app
        .store
        .read(move |tx| muster_store::flows::audit::list(tx, &stored))
        .await?;
    Ok(Page::cut(records, limit, views::audit, |r| {
        Cursor::Audit(r.seq)
    }))
}

pub async fn list(app: &AppState, filter: Filter<'_>) -> Result<Vec<AuditEntry>, AppError> {
    let text = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
    let stored = AuditFilter {
        before_seq: filter.before,
        action_prefix: text(filter.action),
        contains: text(filter.contains),
        worker: text(filter.worker),
        limit: filter.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
    };
    let records = app
        .store
        .read(move |tx| muster_store::flows::audit::list(tx, &stored))
        .await?;
    Ok(records.iter().map(views::audit).collect())
}

//! `GET /api/v1/events`: every audit record as a Server-Sent Event, as it is written.
//!
//! Each SSE event has `id:` the record's sequence number, `event:` its type (`worker.enrolled`,
//! or the audit action for a record that is no webhook event) and `data:` the JSON
//! [`muster_proto::api::Event`]. A client that reconnects with `Last-Event-ID` (or `?after=SEQ`)
//! resumes after that record; without either it starts with the next record written. The
//! stream reads the store, so it carries what every replica writes, not only this one.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use muster_core::audit::AuditRecord;
use serde::Deserialize;

use crate::api::extract::{Admin, ApiQuery};
use crate::error::AppError;
use crate::state::AppState;
use crate::views;

/// How often the stream looks for new records when it has sent all it knows.
const POLL: Duration = Duration::from_millis(500);
/// Records read at once.
const PAGE: u32 = 256;
/// How far behind the newest record sent each read starts again. On PostgreSQL a sequence
/// number is taken when a record is inserted, not when it commits, so a record may become
/// visible after one with a higher number was sent; re-reading this many catches it.
const LOOKBACK: i64 = 64;
/// Sequence numbers remembered as sent, so a re-read sends nothing twice.
const REMEMBERED: usize = 1024;

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Start after this sequence number (as `Last-Event-ID` does).
    pub after: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/events", params(("after" = Option<i64>, Query, description = "resume after this seq"), ("Last-Event-ID" = Option<i64>, Header, description = "resume after this seq")), responses((status = 200, description = "Server-Sent Events, each `data` an event", content_type = "text/event-stream", body = muster_proto::api::Event), (status = 400, description = "a malformed request", body = muster_proto::ErrorBody), (status = 401, description = "no or a wrong admin token", body = muster_proto::ErrorBody)), security(("admin" = [])))]
pub async fn stream(
    State(app): State<AppState>,
    _: Admin,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, AppError> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(query.after);
    let after = match resume {
        Some(seq) => seq.max(0),
        None => app.store.read(|tx| tx.last_audit_seq()).await?,
    };
    let events = futures_util::StreamExt::map(records(app, after), |record| {
        let event = views::event(&record);
        Ok(SseEvent::default()
            .id(record.seq.to_string())
            .event(event.kind.clone())
            .json_data(&event)
            .unwrap_or_else(|_| SseEvent::default().comment("unencodable event")))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The audit records written after sequence number `after`, as they are written (the web UI's
/// live Workers page follows the same records).
pub(crate) fn records(app: AppState, after: i64) -> impl Stream<Item = AuditRecord> {
    let state = Tail {
        app,
        after,
        // Records at or below the starting point count as sent.
        floor: after,
        sent: VecDeque::new(),
        queue: VecDeque::new(),
    };
    futures_util::stream::unfold(state, |mut tail| async move {
        let record = tail.next().await;
        Some((record, tail))
    })
}

/// Where a stream is in the audit log.
struct Tail {
    app: AppState,
    /// The highest sequence number sent.
    after: i64,
    /// Where the stream started: nothing at or below it is sent.
    floor: i64,
    sent: VecDeque<i64>,
    queue: VecDeque<AuditRecord>,
}

impl Tail {
    /// The next record to send, waiting for one.
    async fn next(&mut self) -> AuditRecord {
        loop {
            if let Some(record) = self.queue.pop_front() {
                self.sent.push_back(record.seq);
                if self.sent.len() > REMEMBERED {
                    self.sent.pop_front();
                }
                self.after = self.after.max(record.seq);
                return record;
            }
            let from = self.after.saturating_sub(LOOKBACK).max(self.floor);
            match self
                .app
                .store
                .read(move |tx| tx.audit_after(from, PAGE))
                .await
            {
                Ok(page) => {
                    let full = page.len() == PAGE as usize;
                    self.queue
                        .extend(page.into_iter().filter(|r| !self.sent.contains(&r.seq)));
                    if !self.queue.is_empty() {
                        continue;
                    }
                    if full {
                        // A page of records already sent: move past it.
                        self.floor = self.after;
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the event stream cannot read the audit log"),
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

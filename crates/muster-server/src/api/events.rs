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
use serde::Deserialize;

use crate::api::extract::{Admin, ApiQuery};
use crate::error::AppError;
use crate::state::AppState;
use crate::views;

/// How often the stream looks for new records when it has sent all it knows.
const POLL: Duration = Duration::from_millis(500);
/// Records read at once.
const PAGE: u32 = 256;

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Start after this sequence number (as `Last-Event-ID` does).
    pub after: Option<i64>,
}

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
    let state = (app, after, VecDeque::new());
    let events = futures_util::stream::unfold(state, |(app, mut after, mut queue)| async move {
        loop {
            if let Some(record) = queue.pop_front() {
                let record: muster_core::audit::AuditRecord = record;
                let event = views::event(&record);
                let sse = SseEvent::default()
                    .id(record.seq.to_string())
                    .event(event.kind.clone())
                    .json_data(&event)
                    .unwrap_or_else(|_| SseEvent::default().comment("unencodable event"));
                return Some((Ok(sse), (app, after, queue)));
            }
            let from = after;
            match app.store.read(move |tx| tx.audit_after(from, PAGE)).await {
                Ok(page) if !page.is_empty() => {
                    after = page.last().map_or(after, |r| r.seq);
                    queue.extend(page);
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "the event stream cannot read the audit log"),
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

//! Live Workers page: `GET /workers/events` tells the page which workers changed, as they change,
//! and the page fetches only those rows (`GET /workers/{name}/row`) and the overview's counts.
//! An idle fleet sends nothing but the stream's keep-alive comments.
//!
//! The stream follows the audit log (as `GET /api/v1/events` does, so it hears every replica's
//! workers) and sends, for each record about a worker (`worker.*`, `enroll.*`), an event
//! `worker` whose data is the worker's name and nothing else: the page asks for the rest with the
//! session's own authority. When a job starts or ends on a worker connected here, it sends an
//! event `activity` (the worker's name): the page refreshes that row if it shows it, and
//! nothing else (a running-job count moves no worker in or out of a page, nor any count of the
//! overview). Jobs on workers other replicas hold are not audited at start and reach the page
//! with its next refresh.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::Html;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use muster_core::Name;
use tokio::sync::broadcast::error::RecvError;

use crate::api::events::records;
use crate::ui::UiApp;
use crate::ui::auth::UiAdmin;
use crate::ui::error::UiError;
use crate::ui::workers;
use crate::{ops, validate};

/// What the page is told: a worker changed (an audit record, `worker`), or its running jobs did
/// (`activity`).
enum Change {
    Record(i64, Name),
    Activity(Name),
}

/// The actions whose target is a worker's name.
const WORKER_ACTIONS: [&str; 2] = ["worker.", "enroll."];

pub async fn events(
    State(app): State<UiApp>,
    admin: UiAdmin,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, UiError> {
    let after = app
        .store
        .read(|tx| tx.last_audit_seq())
        .await
        .map_err(crate::error::AppError::from)?;
    let app_state: crate::state::AppState = axum::extract::FromRef::from_ref(&app);
    let session = admin.session.id.clone();
    let heard = app.jobs.activity();
    // The stream ends with the session (sign-out, expiry): the browser then reconnects, is
    // refused, and stops.
    let signed_in = move |_: &Change| {
        let live = app.ui.sessions.get(&session, false).is_some();
        async move { live }
    };
    let audited = records(app_state, after).filter_map(|record| async move {
        let e = &record.event;
        let about_worker = WORKER_ACTIONS.iter().any(|a| e.action.starts_with(a));
        // Only a valid name goes to the page: a refused enrollment may name anything.
        let name = Name::parse(&e.target).ok().filter(|_| about_worker)?;
        Some(Change::Record(record.seq, name))
    });
    let activity = futures_util::stream::unfold(heard, |mut heard| async move {
        loop {
            match heard.recv().await {
                Ok(name) => return Some((Change::Activity(name), heard)),
                // Fell behind: the changes skipped are old news by the next one.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let changed = futures_util::stream::select(audited, activity)
        .take_while(signed_in)
        .map(|change| {
            Ok(match change {
                Change::Record(seq, name) => Event::default()
                    .id(seq.to_string())
                    .event("worker")
                    .data(name.as_str()),
                Change::Activity(name) => Event::default().event("activity").data(name.as_str()),
            })
        });
    Ok(Sse::new(changed).keep_alive(KeepAlive::default()))
}

/// `GET /workers/{name}/row`: one row of the Workers table, as the page has it.
pub async fn row(
    State(app): State<UiApp>,
    _admin: UiAdmin,
    Path(name): Path<String>,
) -> Result<Html<String>, UiError> {
    validate::name(&name)?;
    let worker = ops::workers::show(&app, &name).await?;
    Ok(Html(workers::row(app.clock.now(), &worker).into_string()))
}

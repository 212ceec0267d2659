//! A control channel from upgrade to end: the verdict on a copied state dir, what to do about a
//! live session of the same identity, registering the session (and re-checking the record), the
//! session loop itself in a task of its own, and the teardown.
//!
//! Copies are caught two ways, and neither can mistake a worker that crashed or lost its network
//! for a copy (ARCHITECTURE.md, "Worker identity"):
//! - a ticket its state dir cannot hold (admission found it): a verdict only once the presenter
//!   proves it is alive on this very socket, so a request the server handles after its sender
//!   gave up is never one;
//! - a second live process: a connection from another process than a live session's, while that
//!   session still answers a ping. A session that does not answer belonged to a process that is
//!   gone (killed, rebooted, a half-open socket), and is replaced; so is one of the same process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use muster_core::audit::Outcome;
use muster_core::identity::ProcessNonce;
use muster_core::tickets::Ticket;
use muster_core::{EnrolledVia, Labels, Worker, WorkerStatus};
use muster_proto::control::{CloseCode, WorkerMessage};
use muster_store::flows::identity;
use muster_store::flows::workers;
use tracing::Instrument;

use crate::control::connect::{Decision, address};
use crate::control::registry::Session;
use crate::control::session::{self, Ended, Inbound, SessionParams};
use crate::jobs::Departure;
use crate::ops::cut::{Cut, write_then_cut};
use crate::state::AppState;

/// How long a live session has to answer before it is taken for gone.
const LIVE_SESSION_ANSWERS_WITHIN: Duration = Duration::from_secs(3);
/// How long a connection whose ticket says "copy" has to show it is alive.
const PRESENTER_ANSWERS_WITHIN: Duration = Duration::from_secs(5);
/// How long a connection's first record waits for the worker to say it saved its ticket, to
/// write the confirmation with it. A worker says so within a round trip and an fsync; one that
/// takes longer gets its record now and its confirmation in a write of its own.
const CONFIRMATION_JOINS_RECORD_WITHIN: Duration = Duration::from_secs(2);

/// What admission let through, carried over the upgrade.
pub(super) struct Admitted {
    pub decision: Decision,
    pub labels: Labels,
    pub remote: Option<SocketAddr>,
    pub slots: u32,
    pub confinement: Option<muster_proto::confinement::Confinement>,
    pub cuts_before: u64,
}

/// One control channel from upgrade to end. What stays in memory for the whole session is only
/// what the loop needs; the setup and the teardown run as boxed futures, so their (larger)
/// state is held while they run and not for the life of every idle connection.
pub(super) async fn serve(app: AppState, admitted: Admitted, socket: WebSocket) {
    let Admitted {
        decision,
        labels,
        remote,
        slots,
        confinement,
        cuts_before,
    } = admitted;
    let (worker, issued, process) = match decision {
        Decision::Copied { worker } => {
            Box::pin(judge_copy(&app, worker, remote, socket)).await;
            return;
        }
        Decision::Legacy { worker } => (worker, None, None),
        Decision::Proven {
            worker,
            issued,
            process,
            key_bound,
        } => {
            if key_bound {
                record(&app, &worker, "worker.key_bound", remote,
                    "the worker proved a key for the first time; from now on only that key connects it").await;
            }
            (worker, Some(issued), Some(process))
        }
    };
    if let Some(process) = process
        && worker.enrolled_via != EnrolledVia::Builtin
        && let Some(other) = Box::pin(settle_live_session(&app, &worker, process, remote)).await
    {
        // Two live processes hold one identity.
        Box::pin(suspend(&app, &worker, remote, other)).await;
        Box::pin(close_socket(socket, CloseCode::Suspended, SUSPENDED_REASON)).await;
        return;
    }
    let (session, expires_at, recorded) = Box::pin(open_session(
        &app,
        &worker,
        labels,
        remote,
        (slots, confinement),
        cuts_before,
        process,
        issued.as_ref(),
    ))
    .await;
    let params = SessionParams {
        clock: app.clock,
        heartbeat: app.heartbeat,
        idle_timeout: app.idle_timeout,
        expires_at,
        ticket: issued.as_ref().map(Ticket::encode),
    };
    // The session lives in a task of its own, holding only the loop; this one, with the
    // upgrade's state, ends here. The idle loop holds no span: a span lives in the subscriber's
    // registry as long as anything holds it, hundreds of bytes for every connection. What the
    // session does (a message, output, its end) runs in a `session` span made for it.
    tokio::spawn(async move {
        let inbound = SessionInbound { app: app.clone() };
        let ended = session::run(socket, Arc::clone(&session), params, &inbound).await;
        // The connection's presence row is written before it is cleared (at once, if it still
        // waited for a ticket's confirmation that will not come now).
        drop(session.take_record_waiter());
        let _ = recorded.await;
        let span = session_span(&session);
        Box::pin(close_session(app, session, ended).instrument(span)).await;
    });
}

/// The span a session's work runs in: every log line of it carries the worker.
pub(super) fn session_span(session: &Session) -> tracing::Span {
    span_of(&session.name, &session.worker_id)
}

/// The `session` span for a worker. Not a child of the request's span: the session outlives the
/// request that opened it.
pub(super) fn span_of(name: &muster_core::Name, id: &muster_core::WorkerId) -> tracing::Span {
    tracing::info_span!(parent: None, "session", worker = %name, worker_id = %id)
}

const SUSPENDED_REASON: &str = "this worker's identity was used from two places at once";

/// A connection presented a ticket its state dir cannot hold. If it answers a ping it is alive:
/// the identity is suspended and every copy cut off. Otherwise it is a request handled after its
/// sender went away, and nothing happens.
async fn judge_copy(
    app: &AppState,
    worker: Worker,
    remote: Option<SocketAddr>,
    mut socket: WebSocket,
) {
    let alive = socket.send(Message::Ping(Default::default())).await.is_ok()
        && matches!(
            tokio::time::timeout(PRESENTER_ANSWERS_WITHIN, socket.next()).await,
            Ok(Some(Ok(_)))
        );
    if !alive {
        tracing::info!(
            "a connection presented an outdated ticket and did not answer: not judged (its sender is gone)"
        );
        return;
    }
    let other = app
        .registry
        .get(&worker.id)
        .and_then(|s| s.remote_addr)
        .map(|a| a.ip().to_string())
        .or_else(|| worker.identity.ticket_remote.clone());
    suspend(app, &worker, remote, other).await;
    close_socket(socket, CloseCode::Suspended, SUSPENDED_REASON).await;
}

/// A live session of this identity, if any: the same process coming back replaces it; another
/// process replaces it only if it no longer answers. Returns the live session's address when it
/// does answer (two live processes: a copy).
async fn settle_live_session(
    app: &AppState,
    worker: &Worker,
    process: ProcessNonce,
    remote: Option<SocketAddr>,
) -> Option<Option<String>> {
    let live = app.registry.get(&worker.id)?;
    let live_address = live.remote_addr.map(|a| a.ip().to_string());
    let why = if live.process == Some(process) {
        "the same worker process came back"
    } else if live.answers(LIVE_SESSION_ANSWERS_WITHIN).await {
        return Some(live_address);
    } else {
        "the previous connection's process did not answer"
    };
    record(
        app,
        worker,
        "worker.session_replaced",
        remote,
        &format!(
            "{why}; the connection from {} replaces the one from {}",
            address(remote),
            live_address.as_deref().unwrap_or("an unknown address")
        ),
    )
    .await;
    None
}

/// Suspends the identity (audited `worker.clone_detected` with both addresses, told to every
/// replica) and cuts off its live session here.
async fn suspend(
    app: &AppState,
    worker: &Worker,
    remote: Option<SocketAddr>,
    other: Option<String>,
) {
    let detail = format!(
        "the identity of worker `{}` was used from {} and {} at once (a copied state dir); it is suspended and every copy is cut off",
        worker.name,
        address(remote),
        other.as_deref().unwrap_or("another place")
    );
    tracing::warn!("{detail}");
    let event = app.audit_event(
        &format!("worker:{}", worker.name),
        "worker.clone_detected",
        worker.name.as_str(),
        remote,
        Outcome::Refused,
        detail,
    );
    let (id, now) = (worker.id.clone(), app.clock.now());
    let result = write_then_cut(app, move |tx| identity::suspend(tx, &id, now, &event), {
        let id = worker.id.clone();
        move |_| Some(Cut::new(id, CloseCode::Suspended, SUSPENDED_REASON))
    })
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "cannot record a suspension");
    }
}

/// Sends a close frame and lets the socket go.
async fn close_socket(mut socket: WebSocket, code: CloseCode, reason: &str) {
    let frame = CloseFrame {
        code: u16::from(code),
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        socket.send(Message::Close(Some(frame))),
    )
    .await;
}

async fn record(
    app: &AppState,
    worker: &Worker,
    action: &str,
    remote: Option<SocketAddr>,
    detail: &str,
) {
    let event = app.audit_event(
        &format!("worker:{}", worker.name),
        action,
        worker.name.as_str(),
        remote,
        Outcome::Ok,
        detail,
    );
    app.record(event).await;
}

/// Registers the session. A revocation commits before it looks for the worker's session (and
/// counts as a cut whether it finds one or not); so if no cut happened between admission and
/// registration, admission saw every revocation, and if one did, the record is read again.
#[allow(clippy::too_many_arguments)]
async fn open_session(
    app: &AppState,
    worker: &Worker,
    labels: Labels,
    remote: Option<SocketAddr>,
    (slots, confinement): (u32, Option<muster_proto::confinement::Confinement>),
    cuts_before: u64,
    process: Option<ProcessNonce>,
    issued: Option<&Ticket>,
) -> (
    Arc<Session>,
    Option<muster_core::Timestamp>,
    tokio::sync::oneshot::Receiver<()>,
) {
    save_new_labels(app, worker, &labels).await;
    let mut session = Session::new(
        app.registry.next_conn_id(),
        worker.id.clone(),
        worker.name.clone(),
        remote,
        app.clock.now(),
        slots,
        labels,
    );
    if let Some(process) = process {
        session = session.with_identity(process, issued.map(Ticket::hash));
    }
    // A worker pings every heartbeat: silent for two, it is not handed new jobs.
    let mut session = session
        .with_staleness(app.heartbeat * 2)
        .with_confinement(confinement);
    // With a ticket issued, the connection's first record waits for the worker to say it saved
    // it, so the confirmation is written in the same transaction (see below).
    let mut saved = None;
    if issued.is_some() {
        let (waiter, receiver) = tokio::sync::oneshot::channel();
        session = session.with_record_waiter(waiter);
        saved = Some(receiver);
    }
    let session = Arc::new(session);
    if let Some(old) = app.registry.insert(Arc::clone(&session)) {
        old.close(
            CloseCode::Replaced,
            "a newer connection with this worker's identity took over",
        );
    }
    let id = worker.id.clone();
    let recheck = if app.registry.cuts() == cuts_before {
        Ok(Some(worker.clone()))
    } else {
        app.store.read(move |tx| tx.get_worker(&id)).await
    };
    match recheck {
        Ok(Some(current)) => match current.status(true, app.clock.now()) {
            WorkerStatus::Revoked => session.close(CloseCode::Revoked, "the worker was revoked"),
            WorkerStatus::Expired => {
                session.close(CloseCode::Expired, "the worker's enrollment token expired")
            }
            WorkerStatus::Suspended => session.close(CloseCode::Suspended, SUSPENDED_REASON),
            WorkerStatus::Connected | WorkerStatus::Disconnected => {}
        },
        Ok(None) => session.close(CloseCode::Removed, "the worker was removed"),
        Err(e) => tracing::warn!(error = %e, "cannot re-check a new session"),
    }
    // Record the connection itself, without holding up the welcome: otherwise a worker that
    // connects and then loses the server to a crash before the periodic flush is listed as never
    // seen. (touch only ever moves last_seen_at forward, so the order of writes does not matter.)
    // With it, the presence row every replica reads and the `worker.connected` event: one
    // transaction. A worker that was issued a ticket says it saved it one round trip after the
    // welcome; the record waits for that (at most `CONFIRMATION_JOINS_RECORD_WITHIN`) so the
    // ticket's confirmation is in the same transaction: one durable write per connection after
    // admission's, not two. The confirmation is what it was on its own — written when the worker
    // said it saved the ticket, by `identity::confirm_ticket` — so the ticket rules (ARCHITECTURE.md,
    // "Worker identity") see the same states; if this transaction fails, the ticket stays pending,
    // which the worker's next connection confirms, as after a crash.
    let (app2, session2) = (app.clone(), Arc::clone(&session));
    let event = app.audit_event(
        &format!("worker:{}", worker.name),
        "worker.connected",
        worker.name.as_str(),
        remote,
        Outcome::Ok,
        format!("connected from {}", address(remote)),
    );
    // The session waits on a oneshot, not on the task's JoinHandle: a handle keeps the finished
    // task's whole allocation (sized for this future) alive for the life of every connection.
    let (done, recorded) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let confirmed = match saved {
            Some(saved) => tokio::time::timeout(CONFIRMATION_JOINS_RECORD_WITHIN, saved)
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        let (app, session) = (app2, session2);
        // Made now, not before the wait: the row carries the session's running count as it is.
        let row = crate::replica::presence(&app, &session);
        let seen = vec![(session.worker_id.clone(), session.connected_at)];
        let ticket_remote = session.remote_addr.map(|a| a.ip().to_string());
        drop(session);
        let written = app
            .store
            .write(move |tx| {
                workers::touch_many(tx, &seen)?;
                tx.put_presence(&row)?;
                tx.insert_audit(&event)?;
                if let Some(saved) = &confirmed {
                    identity::confirm_ticket(tx, &row.worker, saved, ticket_remote.as_deref())?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot record when a worker connected");
        }
        let _ = done.send(());
    });
    tracing::info!(
        remote = remote.map(tracing::field::display),
        "worker connected"
    );
    app.jobs.kick();
    (session, worker.expires_at, recorded)
}

/// What a session hears: a saved ticket is confirmed here; jobs' messages and output go on to
/// the scheduler.
struct SessionInbound {
    app: AppState,
}

impl Inbound for SessionInbound {
    fn message<'a>(
        &'a self,
        session: &'a Arc<Session>,
        message: WorkerMessage,
    ) -> BoxFuture<'a, ()> {
        let span = session_span(session);
        match message {
            WorkerMessage::TicketSaved { seq } => {
                Box::pin(confirm_ticket(&self.app, session, seq).instrument(span))
            }
            other => Box::pin(self.app.jobs.message(session, other).instrument(span)),
        }
    }

    fn output<'a>(&'a self, session: &'a Arc<Session>, frame: bytes::Bytes) -> BoxFuture<'a, ()> {
        Box::pin(
            self.app
                .jobs
                .output(session, frame)
                .instrument(session_span(session)),
        )
    }
}

/// The worker saved the ticket this connection was issued: confirm it, with the connection's
/// first record if that still waits for it, or on its own.
async fn confirm_ticket(app: &AppState, session: &Session, seq: u64) {
    let Some(issued) = session.take_issued_ticket() else {
        return;
    };
    let issued = match session
        .take_record_waiter()
        .map(|waiter| waiter.send(issued))
    {
        Some(Ok(())) => {
            tracing::debug!(
                seq,
                "the worker saved its ticket (confirmed with its connection's record)"
            );
            return;
        }
        // The record was written already (it waited long enough): on its own, as before.
        Some(Err(issued)) => issued,
        None => issued,
    };
    let (id, remote) = (
        session.worker_id.clone(),
        session.remote_addr.map(|a| a.ip().to_string()),
    );
    match app
        .store
        .write(move |tx| identity::confirm_ticket(tx, &id, &issued, remote.as_deref()))
        .await
    {
        Ok(true) => tracing::debug!(seq, "the worker saved its ticket"),
        Ok(false) => tracing::debug!(seq, "a saved ticket was settled already"),
        Err(e) => tracing::warn!(error = %e, "cannot confirm a worker's ticket"),
    }
}

/// Unregisters the session, hands its jobs to the scheduler (they wait for the worker, or are
/// lost if it was cut off) and records when the worker was last seen.
async fn close_session(app: AppState, session: Arc<Session>, ended: Ended) {
    app.registry.remove(&session.worker_id, session.conn_id);
    app.jobs.session_ended(&session, departure(&ended)).await;
    let seen = vec![(session.worker_id.clone(), session.last_seen())];
    let event = app.audit_event(
        &format!("worker:{}", session.name),
        "worker.disconnected",
        session.name.as_str(),
        session.remote_addr,
        Outcome::Ok,
        format!("disconnected: {ended}"),
    );
    let (worker, me, conn) = (
        session.worker_id.clone(),
        app.jobs.replica().to_owned(),
        session.conn_id,
    );
    if let Err(e) = app
        .store
        .write(move |tx| {
            workers::touch_many(tx, &seen)?;
            // Only this connection's row: a newer one (here or elsewhere) keeps its own.
            tx.drop_presence(&worker, &me, conn)?;
            tx.insert_audit(&event)
        })
        .await
    {
        tracing::warn!(error = %e, "cannot record when a worker was last seen");
    }
    tracing::info!(how = %ended, "worker disconnected");
}

/// What a session that ended this way means for its jobs: a worker that was cut off stops them
/// (they are lost, with the reason); any other may come back with them.
fn departure(ended: &Ended) -> Departure<'static> {
    match ended {
        Ended::Closed(CloseCode::Revoked) => {
            Departure::CutOff("the worker was revoked while the job ran")
        }
        Ended::Closed(CloseCode::Expired) => {
            Departure::CutOff("the worker's enrollment token expired while the job ran")
        }
        Ended::Closed(CloseCode::Removed | CloseCode::Superseded) => {
            Departure::CutOff("the worker's identity was replaced or removed while the job ran")
        }
        Ended::WorkerStopped => Departure::CutOff("the worker stopped while the job ran"),
        Ended::Closed(CloseCode::Suspended) => Departure::CutOff(
            "the worker's identity was suspended (used from two places at once) while the job ran",
        ),
        // A newer connection of the same worker, a server going away, a dropped or silent
        // connection: the worker keeps its jobs and reports them when it is back.
        Ended::Closed(
            CloseCode::Replaced
            | CloseCode::GoingAway
            | CloseCode::Protocol
            | CloseCode::Idle
            | CloseCode::Other(_),
        )
        | Ended::PeerGone
        | Ended::Idle
        | Ended::Stalled => Departure::MayReturn,
    }
}

/// Saves the worker's labels for placing jobs when the connection added some: the stored ones
/// plus any new keys the worker now asserts (stored values win: they may come from an admin).
async fn save_new_labels(app: &AppState, worker: &Worker, merged: &Labels) {
    if *merged != worker.labels {
        let (id, labels) = (worker.id.clone(), merged.clone());
        if let Err(e) = app
            .store
            .write(move |tx| tx.set_worker_labels(&id, &labels))
            .await
        {
            tracing::warn!(error = %e, "cannot save a worker's new labels");
        }
    }
}

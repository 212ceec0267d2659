//! `GET /api/v1/connect`: a worker opens its control channel with its API key.
//!
//! Credentials are checked before the WebSocket upgrade, so a refused worker gets an ordinary
//! HTTP error with a code it maps to an exit status. Once upgraded, the session registers and
//! then checks its record once more: a revocation that landed between the admission check and
//! the registration is caught there, and one that lands after it finds the session registered.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::HeaderMap;
use axum::response::Response;
use muster_core::audit::Outcome;
use muster_core::worker::AdmitRefusal;
use muster_core::{Labels, MachineId, Worker, WorkerId, WorkerStatus};
use muster_proto::confinement::{self, Confinement};
use muster_proto::control::{CloseCode, close};
use muster_proto::{ErrorCode, PROTOCOL_VERSION, headers};
use muster_store::flows::workers;
use tracing::Instrument;

use crate::control::registry::Session;
use crate::control::session::{self, Ended, SessionParams};
use crate::error::AppError;
use crate::listener::Remote;
use crate::state::AppState;

/// Per-connection WebSocket buffers. Control messages are small; the library's 128 KiB defaults
/// would cost gigabytes across a large fleet. The read buffer grows on demand for a large frame
/// (job output), so this is only what an idle connection keeps.
const READ_BUFFER: usize = 256;
const WRITE_BUFFER: usize = 0;
const MAX_MESSAGE: usize = 1024 * 1024;

struct Credentials {
    worker_id: WorkerId,
    machine: MachineId,
    key: String,
    slots: u32,
    labels: Labels,
    confinement: Option<Confinement>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn credentials(headers: &HeaderMap) -> Result<Credentials, AppError> {
    let protocol = header(headers, headers::PROTOCOL).and_then(|v| v.parse::<u32>().ok());
    if protocol != Some(PROTOCOL_VERSION) {
        let sent = match protocol {
            Some(version) => format!("protocol {version}"),
            None => "no protocol version".to_owned(),
        };
        return Err(AppError::bad_request(
            ErrorCode::UnsupportedProtocol,
            format!(
                "this server speaks control protocol {PROTOCOL_VERSION}, the worker sent {sent}"
            ),
        )
        .with_hint("run the same muster version on the worker and the server"));
    }
    let missing = |what: &str| {
        AppError::unauthorized(
            ErrorCode::UnknownIdentity,
            format!("the connection carries no {what}"),
        )
    };
    let worker_id = header(headers, headers::WORKER_ID).ok_or_else(|| missing("worker id"))?;
    let worker_id = WorkerId::parse(worker_id)
        .map_err(|e| AppError::unauthorized(ErrorCode::UnknownIdentity, e))?;
    let machine = header(headers, headers::MACHINE_ID).ok_or_else(|| missing("machine id"))?;
    let machine =
        MachineId::parse(machine).map_err(|e| AppError::bad_request(ErrorCode::BadRequest, e))?;
    let key = header(headers, "authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or_else(|| missing("API key"))?
        .trim()
        .to_owned();
    let slots = header(headers, headers::MAX_JOBS)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .clamp(1, 1024);
    let labels = Labels::parse_list(header(headers, headers::LABELS).unwrap_or_default())
        .map_err(|e| AppError::bad_request(ErrorCode::InvalidLabel, e))?;
    Ok(Credentials {
        worker_id,
        machine,
        key,
        slots,
        labels,
        confinement: header(headers, confinement::HEADER).and_then(|v| v.parse().ok()),
    })
}

fn admit_refusal(refusal: &AdmitRefusal) -> AppError {
    match refusal {
        AdmitRefusal::UnknownIdentity => AppError::unauthorized(ErrorCode::UnknownIdentity, refusal)
            .with_hint("the cached identity belongs to another server or was removed; start the worker with a fresh state dir to enroll again"),
        AdmitRefusal::OtherMachine(_) => AppError::forbidden(ErrorCode::MachineMismatch, refusal)
            .with_hint("each worker identity belongs to one machine; create or enroll a new worker for this one"),
        AdmitRefusal::Revoked(_) => AppError::forbidden(ErrorCode::WorkerRevoked, refusal)
            .with_hint("an admin revoked this worker; it cannot reconnect"),
        AdmitRefusal::Expired(_) => AppError::forbidden(ErrorCode::WorkerExpired, refusal)
            .with_hint("the worker's enrollment token expired; mint a new token to enroll again"),
    }
}

pub async fn connect(
    State(app): State<AppState>,
    Remote(remote): Remote,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    let creds = credentials(&headers)?;
    // Before admission reads the worker's record: see `open_session`.
    let cuts_before = app.registry.cuts();
    let worker = match admit(&app, &creds).await? {
        Ok(worker) => worker,
        Err(refusal) => {
            let event = app.audit_event(
                &format!("machine:{}", creds.machine),
                "connect",
                creds.worker_id.as_str(),
                remote,
                Outcome::Refused,
                refusal.to_string(),
            );
            app.record(event).await;
            return Err(admit_refusal(&refusal));
        }
    };
    // The labels it will run with, checked before the upgrade: a combination over the limit is
    // refused here, and nothing is stored.
    let labels = match creds.labels.merged_with(&worker.labels) {
        Ok(labels) => labels,
        Err(e) => {
            return Err(AppError::bad_request(ErrorCode::InvalidLabel, e).with_hint(
                "give the worker fewer labels (`--label`, `MUSTER_WORKER_LABELS`): the ones it enrolled with count too",
            ));
        }
    };
    // Every log line of the session carries the worker. Not a child of the request's span: the
    // session outlives the request that opened it.
    let span = tracing::info_span!(
        parent: None,
        "session",
        worker = %worker.name,
        worker_id = %worker.id
    );
    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| {
            serve(app, worker, labels, remote, creds, cuts_before, socket).instrument(span)
        }))
}

/// Admits on a read-only transaction when it can; only a pre-created worker's first connection
/// needs a write (to bind its machine).
async fn admit(
    app: &AppState,
    creds: &Credentials,
) -> Result<Result<Worker, AdmitRefusal>, AppError> {
    let now = app.clock.now();
    let (id, key, machine) = (
        creds.worker_id.clone(),
        creds.key.clone(),
        creds.machine.clone(),
    );
    let read = app
        .store
        .read(move |tx| {
            let found = tx.get_worker(&id)?;
            Ok(match found {
                Some(w) if workers::admission_needs_write(&w) => None,
                _ => Some(workers::admit(tx, &id, &key, &machine, now)?),
            })
        })
        .await?;
    if let Some(result) = read {
        return Ok(result);
    }
    let (id, key, machine) = (
        creds.worker_id.clone(),
        creds.key.clone(),
        creds.machine.clone(),
    );
    Ok(app
        .store
        .write(move |tx| workers::admit(tx, &id, &key, &machine, now))
        .await?)
}

/// One control channel from upgrade to end. What stays in memory for the whole session is only
/// what the loop needs; the setup and the teardown run as boxed futures, so their (larger)
/// state is held while they run and not for the life of every idle connection.
async fn serve(
    app: AppState,
    worker: Worker,
    labels: Labels,
    remote: Option<SocketAddr>,
    creds: Credentials,
    cuts_before: u64,
    socket: axum::extract::ws::WebSocket,
) {
    let (session, expires_at) = Box::pin(open_session(
        &app,
        worker,
        labels,
        remote,
        creds,
        cuts_before,
    ))
    .await;
    let params = SessionParams {
        clock: app.clock,
        heartbeat: app.heartbeat,
        idle_timeout: app.idle_timeout,
        expires_at,
    };
    // The session lives in a task of its own, holding only the loop; this one, with the
    // upgrade's state, ends here.
    tokio::spawn(
        async move {
            let ended = session::run(socket, Arc::clone(&session), params, app.jobs.as_ref()).await;
            Box::pin(close_session(app, session, ended)).await;
        }
        .in_current_span(),
    );
}

/// Registers the session. A revocation commits before it looks for the worker's session (and
/// counts as a cut whether it finds one or not); so if no cut happened between admission and
/// registration, admission saw every revocation, and if one did, the record is read again.
async fn open_session(
    app: &AppState,
    worker: Worker,
    labels: Labels,
    remote: Option<SocketAddr>,
    creds: Credentials,
    cuts_before: u64,
) -> (Arc<Session>, Option<muster_core::Timestamp>) {
    save_new_labels(app, &worker, &labels).await;
    let session = Arc::new(
        Session::new(
            app.registry.next_conn_id(),
            worker.id.clone(),
            worker.name.clone(),
            remote,
            app.clock.now(),
            creds.slots,
            labels,
        )
        .with_confinement(creds.confinement),
    );
    if let Some(old) = app.registry.insert(Arc::clone(&session)) {
        old.close(
            close::REPLACED,
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
            WorkerStatus::Revoked => session.close(close::REVOKED, "the worker was revoked"),
            WorkerStatus::Expired => {
                session.close(close::EXPIRED, "the worker's enrollment token expired")
            }
            WorkerStatus::Connected | WorkerStatus::Disconnected => {}
        },
        Ok(None) => session.close(close::REMOVED, "the worker was removed"),
        Err(e) => tracing::warn!(error = %e, "cannot re-check a new session"),
    }
    // Record the connection itself, without holding up the welcome: otherwise a worker that
    // connects and then loses the server to a crash before the periodic flush is listed as never
    // seen. (touch only ever moves last_seen_at forward, so the order of writes does not matter.)
    let store = app.store.clone();
    let seen = vec![(worker.id.clone(), session.connected_at)];
    tokio::spawn(async move {
        if let Err(e) = store.write(move |tx| workers::touch_many(tx, &seen)).await {
            tracing::warn!(error = %e, "cannot record when a worker connected");
        }
    });
    tracing::info!(
        remote = remote.map(tracing::field::display),
        "worker connected"
    );
    app.jobs.kick();
    (session, worker.expires_at)
}

/// Unregisters the session, writes off its jobs and records when the worker was last seen.
async fn close_session(app: AppState, session: Arc<Session>, ended: Ended) {
    app.registry.remove(&session.worker_id, session.conn_id);
    app.jobs.session_ended(&session, lost_reason(&ended)).await;
    let seen = vec![(session.worker_id.clone(), session.last_seen())];
    if let Err(e) = app
        .store
        .write(move |tx| workers::touch_many(tx, &seen))
        .await
    {
        tracing::warn!(error = %e, "cannot record when a worker was last seen");
    }
    tracing::info!(?ended, "worker disconnected");
}

/// Why the jobs of a session that ended this way are lost.
fn lost_reason(ended: &Ended) -> &'static str {
    match ended {
        Ended::Closed(CloseCode::Revoked) => "the worker was revoked while the job ran",
        Ended::Closed(CloseCode::Expired) => {
            "the worker's enrollment token expired while the job ran"
        }
        Ended::Closed(CloseCode::GoingAway) => "the server shut down while the job ran",
        Ended::Closed(CloseCode::Removed | CloseCode::Superseded | CloseCode::Replaced) => {
            "the worker's identity was replaced or removed while the job ran"
        }
        Ended::Closed(CloseCode::Protocol | CloseCode::Idle | CloseCode::Other(_))
        | Ended::PeerGone => "the worker disconnected while the job ran",
        Ended::Idle => "the worker stopped answering while the job ran",
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

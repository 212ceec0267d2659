//! `GET /api/v1/connect`: a worker opens its control channel.
//!
//! Everything is checked before the WebSocket upgrade, so a refused worker gets an ordinary HTTP
//! error with a code it maps to an exit status: the API key and machine (as before keys), the
//! proof that the worker holds its key on this very connection (`proof`), and its ticket, judged
//! and replaced in one transaction (`muster_store::flows::identity`), shared with the admissions
//! that arrive meanwhile (`super::admissions`). What happens after the upgrade — the verdict on a copied state dir, a live session of the same identity, the session
//! itself — is in [`super::lifecycle`].

use std::net::SocketAddr;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::HeaderMap;
use axum::response::Response;
use muster_core::identity::{ProcessNonce, Proof, ProofSignature, PublicKey, Purpose};
use muster_core::tickets::Ticket;
use muster_core::worker::AdmitRefusal;
use muster_core::{Labels, MachineId, Worker, WorkerId};
use muster_proto::confinement::{self, Confinement};
use muster_proto::{ErrorCode, LEGACY_PROTOCOL_VERSION, PROTOCOL_VERSION, headers};
use muster_store::flows::identity::{self, ConnectRefusal, Connection, GroupedOpen, Opened};
use muster_store::flows::workers;
use tracing::Instrument;

use crate::audit::{Attempt, RefusedAttempt};
use crate::control::lifecycle::{self, Admitted};
use crate::error::AppError;
use crate::lean_tls::ChannelBinding;
use crate::listener::Remote;
use crate::proof::{self, ProofError};
use crate::state::AppState;

/// Per-connection WebSocket buffers. Control messages are small; the library's 128 KiB defaults
/// would cost gigabytes across a large fleet. The read buffer grows on demand for a large frame
/// (job output), so this is only what an idle connection keeps.
const READ_BUFFER: usize = 256;
const WRITE_BUFFER: usize = 0;
const MAX_MESSAGE: usize = 1024 * 1024;

/// What the connect request says.
pub(super) struct Credentials {
    pub worker_id: WorkerId,
    pub machine: MachineId,
    key: String,
    pub slots: u32,
    pub labels: Labels,
    /// How the worker confines its jobs, as it says.
    pub confinement: Option<Confinement>,
    /// `None` for a worker from before keys (protocol 1).
    proof: Option<PresentedProof>,
}

struct PresentedProof {
    public_key: PublicKey,
    signature: ProofSignature,
    ticket: Option<Ticket>,
    process: ProcessNonce,
    nonce: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn proof_error(e: impl std::fmt::Display) -> AppError {
    AppError::unauthorized(ErrorCode::ProofInvalid, e).with_hint(
        "the worker must prove it holds the key in its state dir; run the same muster version on the worker and the server",
    )
}

fn credentials(headers: &HeaderMap) -> Result<Credentials, AppError> {
    let protocol = header(headers, headers::PROTOCOL).and_then(|v| v.parse::<u32>().ok());
    if protocol != Some(PROTOCOL_VERSION) && protocol != Some(LEGACY_PROTOCOL_VERSION) {
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
    // Zero slots: a connection that takes no jobs, such as `muster worker doctor` checking the
    // identity with a short connection that a job sent to it would be lost on.
    let slots = header(headers, headers::MAX_JOBS)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .clamp(0, 1024);
    let labels = Labels::parse_list(header(headers, headers::LABELS).unwrap_or_default())
        .map_err(|e| AppError::bad_request(ErrorCode::InvalidLabel, e))?;
    let proof = if protocol == Some(PROTOCOL_VERSION) {
        Some(presented_proof(headers)?)
    } else {
        None
    };
    Ok(Credentials {
        worker_id,
        machine,
        key,
        slots,
        labels,
        confinement: header(headers, confinement::HEADER).and_then(|v| v.parse().ok()),
        proof,
    })
}

fn presented_proof(headers: &HeaderMap) -> Result<PresentedProof, AppError> {
    let required =
        |name: &str| header(headers, name).ok_or_else(|| proof_error(ProofError::Missing));
    let public_key = PublicKey::parse(required(headers::PUBLIC_KEY)?)
        .map_err(|_| proof_error(ProofError::PublicKey))?;
    let signature = ProofSignature::parse(required(headers::PROOF)?)
        .map_err(|_| proof_error(ProofError::Signature))?;
    let process = ProcessNonce::parse(required(headers::PROCESS)?)
        .ok_or_else(|| proof_error(ProofError::Missing))?;
    let ticket = header(headers, headers::TICKET)
        .map(|t| Ticket::parse(t).map_err(|e| AppError::bad_request(ErrorCode::BadRequest, e)))
        .transpose()?;
    Ok(PresentedProof {
        public_key,
        signature,
        ticket,
        process,
        nonce: header(headers, headers::NONCE).map(str::to_owned),
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
        AdmitRefusal::Suspended(_) => AppError::forbidden(ErrorCode::WorkerSuspended, refusal)
            .with_hint("an admin removes this worker (`muster workers remove NAME`); then each machine enrolls again with a fresh state dir"),
        AdmitRefusal::License(refusal) => crate::license::join_error(refusal),
    }
}

fn connect_refusal(refusal: &ConnectRefusal) -> AppError {
    match refusal {
        ConnectRefusal::Admit(admit) => admit_refusal(admit),
        ConnectRefusal::OtherKey(_) => AppError::forbidden(ErrorCode::MachineMismatch, refusal)
            .with_hint("each worker identity belongs to the state dir it enrolled with; enroll this machine as a new worker"),
    }
}

/// What admission decided, before the upgrade.
pub(super) enum Decision {
    /// A worker that proved its key, with the ticket it will be handed.
    Proven {
        worker: Worker,
        issued: Ticket,
        process: ProcessNonce,
        key_bound: bool,
    },
    /// It proved its key but presented a ticket its state dir cannot hold: a copy, if the
    /// presenter turns out to be alive.
    Copied { worker: Worker },
    /// A worker from before keys (protocol 1), whose record has no key yet.
    Legacy { worker: Worker },
}

#[utoipa::path(get, path = "/api/v1/connect", responses((status = 101, description = "upgraded to the worker's control channel (a WebSocket), after its identity was proven"), (status = 400, body = muster_proto::ErrorBody), (status = 401, body = muster_proto::ErrorBody), (status = 403, body = muster_proto::ErrorBody), (status = 409, body = muster_proto::ErrorBody)))]
pub async fn connect(
    State(app): State<AppState>,
    Remote(remote): Remote,
    binding: Option<axum::Extension<ChannelBinding>>,
    occupancy: Option<axum::Extension<crate::listener::Occupancy>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    if let Some(axum::Extension(occupancy)) = occupancy
        && occupancy.workers_full()
    {
        // The last places are kept for API calls: an operator's command must get through when
        // workers fill the server. Nothing is read or written for a refused channel.
        tracing::warn!(
            worker_cap = occupancy.worker_cap(),
            "control channels fill the connection cap less the places kept for API calls; turning a worker away"
        );
        return Err(crate::listener::full(
            "the server holds as many worker connections as it can",
        ));
    }
    let creds = match credentials(&headers) {
        Ok(creds) => creds,
        Err(error) => {
            // Recorded like any refused attempt (aggregated), naming only what parsed.
            let target = header(&headers, headers::WORKER_ID)
                .and_then(|id| WorkerId::parse(id).ok())
                .map_or_else(|| "-".to_owned(), |id| id.to_string());
            app.record_refusal(RefusedAttempt {
                attempt: Attempt::Connect,
                reason: error.code,
                remote,
                actor: "-".to_owned(),
                target,
                // Fixed words: the message may quote what the client sent.
                detail: format!(
                    "the connect request's headers were refused ({})",
                    serde_json::to_value(error.code)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
            })
            .await;
            return Err(error);
        }
    };
    if app.catch_up.is_behind() {
        // A revocation this replica missed could let the worker in: not before it caught up.
        return Err(AppError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServerBusy,
            "this server replica is catching up on changes it missed",
        )
        .with_hint("the worker retries by itself")
        .with_retry_after(std::time::Duration::from_millis(
            500 + rand::Rng::gen_range(&mut rand::thread_rng(), 0..1500),
        )));
    }
    // Before admission reads the worker's record: see `lifecycle::open_session`.
    let cuts_before = app.registry.cuts();
    let binding = binding.map(|axum::Extension(b)| b);
    let decision = match decide(&app, &creds, binding.as_ref()).await? {
        Ok(decision) => decision,
        Err(error) => {
            app.record_refusal(RefusedAttempt {
                attempt: Attempt::Connect,
                reason: error.code,
                remote,
                actor: format!("machine:{}", creds.machine),
                target: creds.worker_id.to_string(),
                detail: error.message.clone(),
            })
            .await;
            crate::license::refused(&app, &error).await;
            return Err(error);
        }
    };
    let worker = match &decision {
        Decision::Proven { worker, .. }
        | Decision::Copied { worker }
        | Decision::Legacy { worker } => worker,
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
    // Every log line of the session carries the worker (see `lifecycle::span_of`).
    let span = lifecycle::span_of(&worker.name, &worker.id);
    let admitted = Admitted {
        decision,
        labels,
        remote,
        slots: creds.slots,
        confinement: creds.confinement.clone(),
        cuts_before,
    };
    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_MESSAGE)
        // One frame is never larger than one message: a worker cannot make the server buffer
        // 16 MiB (the library's default frame limit) before the message limit applies.
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| lifecycle::serve(app, admitted, socket).instrument(span)))
}

/// Admission: the key proof, then the record (API key, machine, status), the ticket, and the
/// next ticket, in one transaction. `Err` is an error for the worker, already audited by the
/// caller.
async fn decide(
    app: &AppState,
    creds: &Credentials,
    binding: Option<&ChannelBinding>,
) -> Result<Result<Decision, AppError>, AppError> {
    let now = app.clock.now();
    let Some(presented) = &creds.proof else {
        return legacy_admit(app, creds).await;
    };
    let binding =
        match proof::connect_binding(&app.nonce_key, binding, presented.nonce.as_deref(), now) {
            Ok(binding) => binding,
            Err(e) => return Ok(Err(proof_error(e))),
        };
    let statement = Proof {
        purpose: Purpose::Connect,
        binding: &binding,
        subject: creds.worker_id.as_str(),
        public_key: &presented.public_key,
        ticket: presented.ticket.as_ref().map(Ticket::value),
        process: Some(&presented.process),
    };
    if !presented
        .public_key
        .verify(&statement, &presented.signature)
    {
        return Ok(Err(proof_error(ProofError::Signature)));
    }
    let next_seq = presented.ticket.as_ref().map_or(1, |t| t.seq + 1);
    let issued = Ticket::generate(next_seq, &mut rand::rngs::OsRng);
    let connection = Connection {
        worker: creds.worker_id.clone(),
        api_key: creds.key.clone(),
        machine: creds.machine.clone(),
        public_key: presented.public_key,
        presented: presented.ticket.as_ref().map(Ticket::hash),
        issued: issued.hash(),
        now,
    };
    let opened = match app.admissions.write(connection.clone()).await? {
        GroupedOpen::Done(opened) => opened,
        // Undone in its group (a deadlock's victim), or it takes a lock no group may hold: its
        // own transaction. Nothing of it was written, so running it again applies it once.
        GroupedOpen::Failed(_) | GroupedOpen::Alone => {
            app.store
                .write(move |tx| identity::open_session(tx, &connection))
                .await?
        }
    };
    Ok(match opened {
        Ok(Opened::Admitted { worker, key_bound }) => Ok(Decision::Proven {
            worker,
            issued,
            process: presented.process,
            key_bound,
        }),
        Ok(Opened::Copied { worker }) => Ok(Decision::Copied { worker }),
        Err(refusal) => Err(connect_refusal(&refusal)),
    })
}

/// A worker from before keys: admitted as it always was, as long as its record has no key (once
/// one is bound, only a proof gets in).
async fn legacy_admit(
    app: &AppState,
    creds: &Credentials,
) -> Result<Result<Decision, AppError>, AppError> {
    let now = app.clock.now();
    let (id, key, machine) = (
        creds.worker_id.clone(),
        creds.key.clone(),
        creds.machine.clone(),
    );
    let admitted = app
        .store
        .write(move |tx| workers::admit(tx, &id, &key, &machine, now))
        .await?;
    Ok(match admitted {
        Err(refusal) => Err(admit_refusal(&refusal)),
        Ok(worker) if worker.identity.public_key.is_some() => Err(proof_error(
            "this worker proves itself with a key, and this connection (control protocol 1) carries no proof",
        )),
        Ok(worker) => Ok(Decision::Legacy { worker }),
    })
}

/// The address a connection came from, for records.
pub(super) fn address(remote: Option<SocketAddr>) -> String {
    remote.map_or_else(|| "an unknown address".to_owned(), |a| a.ip().to_string())
}

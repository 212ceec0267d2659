//! Enrollment: a machine asks for a worker identity, with an enrollment token or the
//! auto-enrollment secret (`POST /api/v1/enroll`). Every attempt is audited, accepted or
//! refused, with the reason; guessing counts against the source address. An enrollment is
//! recorded with its change; a refusal (anyone can send one) goes through the aggregator of
//! refused attempts, with validated values only (see [`crate::audit`]).

use std::net::SocketAddr;

use muster_core::credentials::generate_id;
use muster_core::identity::{Proof, ProofSignature, PublicKey, Purpose};
use muster_core::token::Refusal;
use std::sync::Arc;

use axum::http::StatusCode;
use muster_core::enrollment::AutoRefusal;
use muster_core::{ApiKey, Labels, MachineId, Name, TokenSecret, WorkerId};
use muster_proto::ErrorCode;
use muster_proto::api::{EnrollRequest, EnrollResponse};
use muster_proto::control::CloseCode;
use muster_store::flows::enrollment::{self, SecretEnrollment};
use muster_store::flows::tokens::{self, TokenEnrollRefusal, TokenEnrollment};
use rand::rngs::OsRng;

use crate::audit::{Attempt, INVALID_NAME, RefusedAttempt};
use crate::error::AppError;
use crate::ops::cut::{self, Cut};
use crate::proof::{self, ProofError};
use crate::secrets::Verdict;
use crate::state::AppState;
use crate::validate;

/// What a worker may learn before it joins (`GET /api/v1/preflight`): the server's clock, the
/// edition and whether it lets external workers join, and whether auto-enrollment is on. Two
/// settings read, nothing written, audited or logged: an anonymous caller learns nothing an
/// enrollment attempt would not tell it, and cannot make the server write.
pub async fn preflight(app: &AppState) -> Result<muster_proto::api::Preflight, AppError> {
    let (settings, grant) = app
        .store
        .read(|tx| {
            Ok((
                enrollment::load(tx)?,
                muster_store::flows::license::grant(tx)?,
            ))
        })
        .await?;
    let now = app.clock.now();
    // The count of a window's enrollments is left out (it is a count over workers): zero
    // here means only the switch, the secret and the window's end are judged.
    let auto_enrollment = !matches!(
        settings.check_open(now, 0),
        Err(AutoRefusal::Disabled | AutoRefusal::WindowClosed(_))
    );
    Ok(muster_proto::api::Preflight {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        server_time: now.to_rfc3339(),
        edition: crate::views::edition(grant.as_ref()),
        joining_open: muster_core::license::may_join(grant.as_ref(), now).is_ok(),
        auto_enrollment,
    })
}

/// Enrolls the machine that sent `req` from `remote`, or says why not. Counted in
/// `muster_enrollments_total`.
pub async fn enroll(
    app: &AppState,
    remote: Option<SocketAddr>,
    req: &EnrollRequest,
) -> Result<EnrollResponse, AppError> {
    let result = attempt(app, remote, req).await;
    crate::diag::metrics::count_enrollment(req, &result);
    result
}

async fn attempt(
    app: &AppState,
    remote: Option<SocketAddr>,
    req: &EnrollRequest,
) -> Result<EnrollResponse, AppError> {
    let machine = MachineId::parse(&req.machine_id)
        .map_err(|e| AppError::bad_request(ErrorCode::BadRequest, e))?;
    let labels = validate::labels(&req.labels)?;
    if let Some(ip) = remote.map(|a| a.ip())
        && let Err(wait) = app.limiter.check(ip)
    {
        // The name is not looked at otherwise: it is recorded only if it is one.
        let target = match req.name.as_deref().map(Name::parse) {
            None => "-".to_owned(),
            Some(Ok(name)) => name.to_string(),
            Some(Err(_)) => INVALID_NAME.to_owned(),
        };
        let error = auto_refusal(&AutoRefusal::RateLimited);
        app.record_refusal(RefusedAttempt {
            attempt: Attempt::Enroll,
            reason: error.code,
            remote,
            actor: format!("machine:{machine}"),
            target,
            detail: AutoRefusal::RateLimited.to_string(),
        })
        .await;
        return Err(error.with_retry_after(wait));
    }
    let public_key = match proven_key(app, req) {
        Ok(key) => key,
        Err(error) => {
            app.record_refusal(RefusedAttempt {
                attempt: Attempt::Enroll,
                reason: error.code,
                remote,
                actor: format!("machine:{machine}"),
                target: "-".to_owned(),
                detail: error.message.clone(),
            })
            .await;
            return Err(error);
        }
    };
    let result = match (&req.token, &req.enrollment_key) {
        (Some(token), None) => {
            enroll_with_token(app, remote, token, machine, labels, public_key).await
        }
        (None, Some(key)) => {
            let name = req.name.as_deref().ok_or_else(|| {
                AppError::bad_request(
                    ErrorCode::InvalidName,
                    "auto-enrollment needs a worker name",
                )
                .with_hint("set `--name` or MUSTER_WORKER_NAME")
            })?;
            let name = validate::name(name)?;
            enroll_with_secret(app, remote, name, key, machine, labels, public_key).await
        }
        (Some(_), Some(_)) => Err(AppError::bad_request(
            ErrorCode::BadRequest,
            "give either an enrollment token or the auto-enrollment secret, not both",
        )),
        (None, None) => Err(AppError::bad_request(
            ErrorCode::BadRequest,
            "no enrollment credential given",
        )
        .with_hint("pass `--token` or `--enrollment-key` with `--name`")),
    };
    // Guessing (an unknown token) counts against the source address. (A wrong secret is
    // counted by the verifier, which holds the attempt against the limit while it checks.)
    if let Err(e) = &result
        && matches!(e.code, ErrorCode::TokenUnknown | ErrorCode::TokenMalformed)
        && let Some(ip) = remote.map(|a| a.ip())
    {
        app.limiter.record_failure(ip);
    }
    result
}

/// The public key the request proves it holds: a signature over a fresh nonce of this fleet's,
/// for the name it enrolls as.
fn proven_key(app: &AppState, req: &EnrollRequest) -> Result<PublicKey, AppError> {
    let refuse = |e: &dyn std::fmt::Display| {
        AppError::unauthorized(ErrorCode::ProofInvalid, e.to_string()).with_hint(
            "the worker proves it holds the key in its state dir when it enrolls; run the same muster version on the worker and the server",
        )
    };
    let (Some(key), Some(signature)) = (req.public_key.as_deref(), req.proof.as_deref()) else {
        return Err(refuse(&ProofError::Missing));
    };
    let public_key = PublicKey::parse(key).map_err(|_| refuse(&ProofError::PublicKey))?;
    let signature = ProofSignature::parse(signature).map_err(|_| refuse(&ProofError::Signature))?;
    let bound_to = proof::enroll_binding(&app.nonce_key, req.nonce.as_deref(), app.clock.now())
        .map_err(|e| refuse(&e))?;
    let subject = match (&req.token, &req.name) {
        (Some(token), _) => token.split('.').next().unwrap_or_default(),
        (None, Some(name)) => name.as_str(),
        (None, None) => "",
    };
    let statement = Proof {
        purpose: Purpose::Enroll,
        binding: &bound_to,
        subject,
        public_key: &public_key,
        ticket: None,
        process: None,
    };
    if !public_key.verify(&statement, &signature) {
        return Err(refuse(&ProofError::Signature));
    }
    Ok(public_key)
}

async fn enroll_with_secret(
    app: &AppState,
    remote: Option<SocketAddr>,
    name: Name,
    presented: &str,
    machine: MachineId,
    labels: Labels,
    public_key: PublicKey,
) -> Result<EnrollResponse, AppError> {
    let now = app.clock.now();
    let actor = format!("machine:{machine}");
    let refuse = async |refusal: AutoRefusal| {
        let error = auto_refusal(&refusal);
        app.record_refusal(RefusedAttempt {
            attempt: Attempt::EnrollSecret,
            reason: error.code,
            remote,
            actor: actor.clone(),
            target: name.to_string(),
            detail: refusal.to_string(),
        })
        .await;
        crate::license::refused(app, &error).await;
        error
    };
    // Cheap checks first: no Argon2 work for a switched-off server, a disallowed name, or a
    // fleet that no external worker may join. (Seats are counted in the enrollment itself.)
    let (settings, enrolled_in_window, grant) = app
        .store
        .read(|tx| {
            let (settings, in_window) = enrollment::gate(tx)?;
            Ok((
                settings,
                in_window,
                muster_store::flows::license::grant(tx)?,
            ))
        })
        .await?;
    let checked = settings
        .check_open(now, enrolled_in_window)
        .and_then(|()| settings.check_name(&name))
        .and_then(|()| {
            muster_core::license::may_join(grant.as_ref(), now)
                .map(|_| ())
                .map_err(AutoRefusal::License)
        });
    let (Some(stored), Some(set_at)) = (settings.secret.clone(), settings.secret_set_at) else {
        return Err(refuse(AutoRefusal::Disabled).await);
    };
    if let Err(refusal) = checked {
        return Err(refuse(refusal).await);
    }
    // A slow check counts against the address while it runs, and a mismatch is recorded by
    // the verifier itself: a burst of concurrent guesses cannot all slip past the limit.
    let limit = remote.map(|a| (&app.limiter, a.ip()));
    match app
        .verifier
        .verify_limited(presented, &stored, set_at, limit)
        .await
    {
        Verdict::Match => {}
        Verdict::Mismatch => return Err(refuse(AutoRefusal::SecretMismatch).await),
        Verdict::RateLimited(wait) => {
            return Err(refuse(AutoRefusal::RateLimited)
                .await
                .with_retry_after(wait));
        }
    }
    let key = ApiKey::generate(&mut OsRng);
    let request = SecretEnrollment {
        name: name.clone(),
        machine,
        labels,
        now,
        verified_secret_set_at: set_at,
        new_worker_id: WorkerId::parse(&generate_id(&mut OsRng)).map_err(AppError::internal)?,
        new_key: key.hash(),
        public_key,
        remote_addr: remote.map(|a| a.ip().to_string()),
    };
    let registry = Arc::clone(&app.registry);
    let enrolled = cut::write_then_cut(
        app,
        move |tx| enrollment::enroll(tx, &request, &|id: &WorkerId| registry.is_connected(id)),
        |result| {
            let old = result.as_ref().ok()?.1.clone()?;
            Some(Cut::new(
                old,
                CloseCode::Superseded,
                "a newer enrollment with this name replaced this identity",
            ))
        },
    )
    .await?;
    let (enrolled, superseded) = match enrolled {
        Ok(enrolled) => enrolled,
        Err(refusal) => return Err(refuse(refusal).await),
    };
    if superseded.is_some() {
        tracing::info!(worker = %enrolled.worker.name, "worker re-enrolled; the previous identity is superseded");
    }
    tracing::info!(worker = %enrolled.worker.name, "worker enrolled with the auto-enrollment secret");
    Ok(EnrollResponse {
        worker_id: enrolled.worker.id.to_string(),
        name: enrolled.worker.name.to_string(),
        api_key: key.expose().to_owned(),
        expires_at: None,
    })
}

fn auto_refusal(refusal: &AutoRefusal) -> AppError {
    match refusal {
        AutoRefusal::Disabled => AppError::forbidden(ErrorCode::EnrollmentDisabled, refusal)
            .with_hint("an admin enables it with `muster enrollment enable`, or use an enrollment token"),
        AutoRefusal::WindowClosed(_) | AutoRefusal::LimitReached(_) => {
            AppError::forbidden(ErrorCode::EnrollmentWindowClosed, refusal)
                .with_hint("an admin opens a new window with `muster enrollment enable`")
        }
        AutoRefusal::SecretMismatch => AppError::forbidden(ErrorCode::SecretMismatch, refusal)
            .with_hint("check MUSTER_AUTO_ENROLLMENT_KEY; after a rotation new workers need the new secret"),
        AutoRefusal::NameNotAllowed { .. } => AppError::forbidden(ErrorCode::NameNotAllowed, refusal)
            .with_hint("choose a name that matches the pattern, or ask an admin to change it"),
        AutoRefusal::NameInUseConnected(_)
        | AutoRefusal::NameJustTaken(_)
        | AutoRefusal::NameTakenOtherKind { .. }
        | AutoRefusal::NameOfToken(_)
        | AutoRefusal::NameReserved(_) => AppError::conflict(ErrorCode::NameInUse, refusal)
            .with_hint("give this worker a unique name (`--name`)"),
        AutoRefusal::Revoked(_) => AppError::forbidden(ErrorCode::WorkerRevoked, refusal)
            .with_hint("`muster workers remove NAME` frees the name"),
        AutoRefusal::RateLimited => AppError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, refusal.to_string())
            .with_hint("check the worker's enrollment credential; it retries by itself after the wait"),
        AutoRefusal::License(refusal) => crate::license::join_error(refusal),
    }
}

async fn enroll_with_token(
    app: &AppState,
    remote: Option<SocketAddr>,
    token: &str,
    machine: MachineId,
    labels: Labels,
    public_key: PublicKey,
) -> Result<EnrollResponse, AppError> {
    let actor = format!("machine:{machine}");
    let presented = match TokenSecret::parse(token) {
        Ok(t) => t,
        Err(e) => {
            app.record_refusal(RefusedAttempt {
                attempt: Attempt::EnrollToken,
                reason: ErrorCode::TokenMalformed,
                remote,
                actor,
                target: "-".into(),
                // Not the error's text: it would quote what was sent.
                detail: "enrollment token is malformed".into(),
            })
            .await;
            return Err(AppError::bad_request(ErrorCode::TokenMalformed, e)
                .with_hint("copy the whole `NAME.SECRET` printed by `muster token create`"));
        }
    };
    let token_name = presented.name.to_string();
    let key = ApiKey::generate(&mut OsRng);
    let id = WorkerId::parse(&generate_id(&mut OsRng)).map_err(AppError::internal)?;
    let request = TokenEnrollment {
        presented,
        machine,
        labels,
        now: app.clock.now(),
        new_worker_id: id,
        new_key: key.hash(),
        public_key,
        remote_addr: remote.map(|a| a.ip().to_string()),
    };
    // The key is on disk (as a hash) before a session still using the previous key is cut off.
    let enrolled = cut::write_then_cut(
        app,
        move |tx| tokens::enroll(tx, &request),
        |result| {
            let enrolled = result.as_ref().ok().filter(|e| e.resumed)?;
            Some(Cut::new(
                enrolled.worker.id.clone(),
                CloseCode::Replaced,
                "the worker enrolled again and has a new key",
            ))
        },
    )
    .await?;
    let enrolled = match enrolled {
        Ok(enrolled) => enrolled,
        Err(refusal) => {
            let detail = refusal.to_string();
            let error = token_refusal(refusal);
            app.record_refusal(RefusedAttempt {
                attempt: Attempt::EnrollToken,
                reason: error.code,
                remote,
                actor,
                target: token_name,
                detail,
            })
            .await;
            crate::license::refused(app, &error).await;
            return Err(error);
        }
    };
    tracing::info!(worker = %enrolled.worker.name, resumed = enrolled.resumed, "worker enrolled with a token");
    Ok(EnrollResponse {
        worker_id: enrolled.worker.id.to_string(),
        name: enrolled.worker.name.to_string(),
        api_key: key.expose().to_owned(),
        expires_at: enrolled.worker.expires_at.map(|t| t.to_rfc3339()),
    })
}

fn token_refusal(refusal: TokenEnrollRefusal) -> AppError {
    match &refusal {
        TokenEnrollRefusal::Unknown(_) => AppError::forbidden(ErrorCode::TokenUnknown, &refusal)
            .with_hint("check the token was copied whole, or mint a new one with `muster token create`"),
        TokenEnrollRefusal::Token(Refusal::BoundToAnotherMachine(_)) => {
            AppError::forbidden(ErrorCode::TokenBoundElsewhere, &refusal).with_hint(
                "a token enrolls one machine; mint a new token for this one, or start the worker with the first machine's state dir",
            )
        }
        TokenEnrollRefusal::Token(Refusal::Expired(_)) => AppError::forbidden(ErrorCode::TokenExpired, &refusal)
            .with_hint("mint a new token with `muster token create`"),
        TokenEnrollRefusal::Token(Refusal::Revoked(_)) => AppError::forbidden(ErrorCode::TokenRevoked, &refusal)
            .with_hint("mint a new token with `muster token create`"),
        TokenEnrollRefusal::WorkerRevoked(_) => AppError::forbidden(ErrorCode::WorkerRevoked, &refusal)
            .with_hint("a revoked worker stays out; an admin can remove it and mint a new token"),
        TokenEnrollRefusal::NameInUse(_) => AppError::conflict(ErrorCode::NameInUse, &refusal)
            .with_hint("mint a token with a name no worker has"),
        TokenEnrollRefusal::Labels(_) => AppError::bad_request(ErrorCode::InvalidLabel, &refusal)
            .with_hint("give the worker fewer labels (`--label`, `MUSTER_WORKER_LABELS`): the token's count too"),
        TokenEnrollRefusal::License(refusal) => crate::license::join_error(refusal),
    }
}

//! `POST /api/v1/enroll`: a machine asks for a worker identity, with an enrollment token or the
//! auto-enrollment secret. Every attempt is audited, accepted or refused, with the reason.

use axum::Json;
use axum::extract::State;
use muster_core::audit::Outcome;
use muster_core::credentials::generate_id;
use muster_core::token::Refusal;
use muster_core::{ApiKey, Labels, MachineId, TokenSecret, WorkerId};
use muster_proto::ErrorCode;
use muster_proto::api::{EnrollRequest, EnrollResponse};
use muster_proto::control::close;
use muster_store::flows::tokens::{self, TokenEnrollRefusal, TokenEnrollment};
use rand::rngs::OsRng;

use crate::api::error::AppError;
use crate::api::extract::{ApiJson, Remote};
use crate::api::validate;
use crate::state::AppState;

pub async fn enroll(
    State(app): State<AppState>,
    Remote(remote): Remote,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Result<Json<EnrollResponse>, AppError> {
    let machine = MachineId::parse(&req.machine_id)
        .map_err(|e| AppError::bad_request(ErrorCode::BadRequest, e))?;
    let labels = validate::labels(&req.labels)?;
    match (&req.token, &req.enrollment_key) {
        (Some(token), None) => enroll_with_token(app, remote, token, machine, labels).await,
        (None, Some(_)) => Err(AppError::forbidden(
            ErrorCode::EnrollmentDisabled,
            "auto-enrollment is disabled on this server",
        )
        .with_hint(
            "an admin enables it with `muster enrollment enable`, or use an enrollment token",
        )),
        (Some(_), Some(_)) => Err(AppError::bad_request(
            ErrorCode::BadRequest,
            "give either an enrollment token or the auto-enrollment secret, not both",
        )),
        (None, None) => Err(AppError::bad_request(
            ErrorCode::BadRequest,
            "no enrollment credential given",
        )
        .with_hint("pass `--token` or `--enrollment-key` with `--name`")),
    }
}

async fn enroll_with_token(
    app: AppState,
    remote: Option<std::net::SocketAddr>,
    token: &str,
    machine: MachineId,
    labels: Labels,
) -> Result<Json<EnrollResponse>, AppError> {
    let presented = match TokenSecret::parse(token) {
        Ok(t) => t,
        Err(e) => {
            let event = app.audit_event(
                &format!("machine:{machine}"),
                "enroll.token",
                "-",
                remote,
                Outcome::Refused,
                e.to_string(),
            );
            app.record(event).await;
            return Err(AppError::bad_request(ErrorCode::TokenMalformed, e)
                .with_hint("copy the whole `NAME.SECRET` printed by `muster token create`"));
        }
    };
    let key = ApiKey::generate(&mut OsRng);
    let id = WorkerId::parse(&generate_id(&mut OsRng)).map_err(AppError::internal)?;
    let request = TokenEnrollment {
        presented,
        machine,
        labels,
        now: app.clock.now(),
        new_worker_id: id,
        new_key: key.hash(),
        remote_addr: remote.map(|a| a.ip().to_string()),
    };
    let enrolled = app
        .store
        .write(move |tx| tokens::enroll(tx, &request))
        .await?
        .map_err(token_refusal)?;
    // The key is on disk (as a hash). A session still using the previous key is stale now.
    if enrolled.resumed {
        app.registry.close(
            &enrolled.worker.id,
            close::REPLACED,
            "the worker enrolled again and has a new key",
        );
    }
    tracing::info!(worker = %enrolled.worker.name, resumed = enrolled.resumed, "worker enrolled with a token");
    Ok(Json(EnrollResponse {
        worker_id: enrolled.worker.id.to_string(),
        name: enrolled.worker.name.to_string(),
        api_key: key.expose().to_owned(),
        expires_at: enrolled.worker.expires_at.map(|t| t.to_rfc3339()),
    }))
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
    }
}

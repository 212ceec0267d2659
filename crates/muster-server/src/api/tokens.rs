//! `/api/v1/tokens`: create, list, show and revoke enrollment tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use muster_core::audit::Outcome;
use muster_core::{Token, TokenSecret};
use muster_proto::ErrorCode;
use muster_proto::api::{CreateTokenRequest, CreatedToken, TokenView};
use muster_proto::control::close;
use muster_store::flows::tokens::{self, CreateTokenRefusal, RevokeTokenRefusal};
use rand::rngs::OsRng;

use crate::api::error::AppError;
use crate::api::extract::{Admin, ApiJson};
use crate::api::{validate, views};
use crate::events::ReplicaEvent;
use crate::state::AppState;

pub async fn create(
    State(app): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), AppError> {
    let name = validate::name(&req.name)?;
    let lifetime = validate::duration(&req.duration)?;
    let labels = validate::labels(&req.labels)?;
    let secret = TokenSecret::generate(name.clone(), &mut OsRng);
    let now = app.clock.now();
    let token = Token::new(name.clone(), secret.hash(), labels, now, lifetime);
    let expires_at = token.expires_at;
    let event = app.audit_event(
        &admin.actor,
        "token.create",
        name.as_str(),
        admin.remote,
        Outcome::Ok,
        format!("expires {}", expires_at.to_rfc3339()),
    );
    app.store
        .write(move |tx| tokens::create(tx, &token, &event))
        .await?
        .map_err(|refusal| match refusal {
            CreateTokenRefusal::TokenExists(_) => {
                AppError::conflict(ErrorCode::TokenExists, refusal)
                    .with_hint("token names are never reused; choose another name")
            }
            CreateTokenRefusal::WorkerExists(_) => {
                AppError::conflict(ErrorCode::NameInUse, refusal)
                    .with_hint("choose a name no worker has")
            }
        })?;
    tracing::info!(token = %name, expires_at = %expires_at, "enrollment token created");
    let plaintext = secret.expose();
    let worker_command = worker_command(&app, &headers, &plaintext);
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            name: name.to_string(),
            token: plaintext,
            expires_at: expires_at.to_rfc3339(),
            worker_command,
        }),
    ))
}

/// A command line that starts a worker against this server, as the admin reached it.
fn worker_command(app: &AppState, headers: &HeaderMap, token: &str) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
        .unwrap_or("SERVER:7443");
    let scheme = if app.tls { "https" } else { "http" };
    let mut command = format!("muster worker --url {scheme}://{host} --token {token}");
    if let Some(fp) = &app.pin_fingerprint {
        command.push_str(&format!(" --ca-fingerprint {fp}"));
    }
    command
}

pub async fn list(
    State(app): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<TokenView>>, AppError> {
    let (tokens, workers) = app
        .store
        .read(|tx| Ok((tx.list_tokens()?, tx.list_workers()?)))
        .await?;
    let now = app.clock.now();
    let views = tokens
        .iter()
        .map(|t| {
            let worker = workers
                .iter()
                .find(|w| w.token_name.as_ref() == Some(&t.name));
            views::token(t, now, worker)
        })
        .collect();
    Ok(Json(views))
}

pub async fn show(
    State(app): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<TokenView>, AppError> {
    let name = validate::name(&name)?;
    let key = name.clone();
    let (token, worker) = app
        .store
        .read(move |tx| Ok((tx.get_token(&key)?, tx.get_worker_by_token(&key)?)))
        .await?;
    let token = token.ok_or_else(|| no_such_token(&name))?;
    Ok(Json(views::token(&token, app.clock.now(), worker.as_ref())))
}

fn no_such_token(name: &muster_core::Name) -> AppError {
    AppError::not_found(format!("no enrollment token named `{name}`"))
        .with_hint("`muster token list` shows the tokens there are")
}

pub async fn revoke(
    State(app): State<AppState>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<TokenView>, AppError> {
    let name = validate::name(&name)?;
    let now = app.clock.now();
    let event = app.audit_event(
        &admin.actor,
        "token.revoke",
        name.as_str(),
        admin.remote,
        Outcome::Ok,
        "revoked",
    );
    let key = name.clone();
    let revoked = app
        .store
        .write(move |tx| {
            let result = tokens::revoke(tx, &key, now, &event)?;
            if let Ok(revoked) = &result
                && let Some(worker) = &revoked.worker
            {
                tx.notify(
                    &ReplicaEvent::Cut {
                        worker: worker.clone(),
                        code: close::REVOKED,
                    }
                    .encode(),
                )?;
            }
            Ok(result)
        })
        .await?
        .map_err(|refusal| match refusal {
            RevokeTokenRefusal::NotFound(n) => no_such_token(&n),
            RevokeTokenRefusal::Expired(e) => AppError::conflict(ErrorCode::TokenExpired, e)
                .with_hint("an expired token already rejects its worker; nothing to revoke"),
        })?;
    // The revocation is on disk: now cut the worker off.
    if let Some(worker) = &revoked.worker {
        app.registry.close(
            worker,
            close::REVOKED,
            "the worker's enrollment token was revoked",
        );
    }
    if revoked.changed {
        tracing::info!(token = %name, "enrollment token revoked");
    }
    show(State(app), admin, Path(name.to_string())).await
}

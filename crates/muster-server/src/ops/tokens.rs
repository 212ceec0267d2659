//! Creating and revoking enrollment tokens.

use muster_core::audit::Outcome;
use muster_core::{Name, Timestamp, Token, TokenSecret, TokenState};
use muster_proto::ErrorCode;
use muster_proto::api::{CreateTokenRequest, CreatedToken, TokenView};
use muster_proto::control::CloseCode;
use muster_store::TokenPage;
use muster_store::flows::tokens::{self, CreateTokenRefusal, RevokeTokenRefusal};
use rand::rngs::OsRng;

use crate::error::AppError;
use crate::ops::Actor;
use crate::ops::cut::{self, Cut};
use crate::ops::page::{self, Cursor, Page};
use crate::state::AppState;
use crate::{validate, views};

/// Mints a token. The answer holds its plaintext: the only time anyone sees it. `host` is the
/// `Host` the admin reached the server at, for the worker command line.
pub async fn create(
    app: &AppState,
    actor: &Actor,
    host: Option<&str>,
    req: &CreateTokenRequest,
) -> Result<CreatedToken, AppError> {
    let name = validate::name(&req.name)?;
    let lifetime = validate::duration(&req.duration)?;
    let labels = validate::labels(&req.labels)?;
    let secret = TokenSecret::generate(name.clone(), &mut OsRng);
    let now = app.clock.now();
    let token = Token::new(name.clone(), secret.hash(), labels, now, lifetime);
    let expires_at = token.expires_at;
    let event = app.audit_event(
        &actor.name,
        "token.create",
        name.as_str(),
        actor.remote,
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
    let worker_command = crate::ops::paste::with_token(app, host, &plaintext);
    Ok(CreatedToken {
        name: name.to_string(),
        token: plaintext,
        expires_at: expires_at.to_rfc3339(),
        worker_command,
    })
}

/// Reads a token state filter (`state=`): empty means any.
pub fn state_filter(given: Option<&str>) -> Result<Option<TokenState>, AppError> {
    match given.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(word) => TokenState::ALL
            .into_iter()
            .find(|s| s.as_str() == word)
            .map(Some)
            .ok_or_else(|| {
                AppError::bad_request(
                    ErrorCode::BadRequest,
                    format!("unknown token state `{}`", page::shown(word)),
                )
                .with_hint("states are unused, enrolled, expired, revoked")
            }),
    }
}

/// One page of tokens, oldest first, in their effective state at `now`, each with the worker it
/// enrolled, if any.
pub async fn page(
    app: &AppState,
    state: Option<TokenState>,
    after: Option<(Timestamp, Name)>,
    order: page::Order,
    limit: u32,
) -> Result<Page<TokenView>, AppError> {
    let now = app.clock.now();
    let query = TokenPage {
        reverse: order == page::Order::Reverse,
        after,
        state,
        now,
        limit: limit + 1,
    };
    let rows = app
        .store
        .read(move |tx| {
            let tokens = tx.page_tokens(&query)?;
            let mut rows = Vec::with_capacity(tokens.len());
            for token in tokens {
                // Only a token a machine bound can have a worker.
                let worker = match token.bound_machine {
                    Some(_) => tx.get_worker_by_token(&token.name)?,
                    None => None,
                };
                rows.push((token, worker));
            }
            Ok(rows)
        })
        .await?;
    Ok(Page::cut(
        rows,
        limit,
        |(t, w)| views::token(t, now, w.as_ref()),
        |(t, _)| Cursor::Token(t.created_at, t.name.clone()),
    ))
}

/// Every token with its effective state and the worker it enrolled, if any, oldest first
/// (every page; each token's worker found through its index, not by scanning the fleet).
pub async fn list(app: &AppState) -> Result<Vec<TokenView>, AppError> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = page(app, None, after, page::Order::Forward, page::MAX_LIMIT).await?;
        all.extend(page.items);
        match page.next {
            Some(Cursor::Token(at, name)) => after = Some((at, name)),
            _ => return Ok(all),
        }
    }
}

pub async fn show(app: &AppState, name: &str) -> Result<TokenView, AppError> {
    let name = validate::name(name)?;
    let key = name.clone();
    let (token, worker) = app
        .store
        .read(move |tx| Ok((tx.get_token(&key)?, tx.get_worker_by_token(&key)?)))
        .await?;
    let token = token.ok_or_else(|| no_such_token(&name))?;
    Ok(views::token(&token, app.clock.now(), worker.as_ref()))
}

fn no_such_token(name: &Name) -> AppError {
    AppError::not_found(format!("no enrollment token named `{name}`"))
        .with_hint("`muster token list` shows the tokens there are")
}

/// Revokes a token and cuts off the worker enrolled with it, once the revocation is on disk.
pub async fn revoke(app: &AppState, actor: &Actor, name: &str) -> Result<TokenView, AppError> {
    let name = validate::name(name)?;
    let now = app.clock.now();
    let event = app.audit_event(
        &actor.name,
        "token.revoke",
        name.as_str(),
        actor.remote,
        Outcome::Ok,
        "revoked",
    );
    let key = name.clone();
    // The revocation is on disk before the worker enrolled with the token is cut off.
    let revoked = cut::write_then_cut(
        app,
        move |tx| tokens::revoke(tx, &key, now, &event),
        |result| {
            let worker = result.as_ref().ok()?.worker.clone()?;
            Some(Cut::new(
                worker,
                CloseCode::Revoked,
                "the worker's enrollment token was revoked",
            ))
        },
    )
    .await?
    .map_err(|refusal| match refusal {
        RevokeTokenRefusal::NotFound(n) => no_such_token(&n),
        RevokeTokenRefusal::Expired(e) => AppError::conflict(ErrorCode::TokenExpired, e)
            .with_hint("an expired token already rejects its worker; nothing to revoke"),
    })?;
    if revoked.changed {
        tracing::info!(token = %name, "enrollment token revoked");
    }
    show(app, name.as_str()).await
}

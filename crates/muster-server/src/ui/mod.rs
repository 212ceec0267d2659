//! The web admin UI, served at `/` next to the API.
//!
//! Server-rendered HTML (maud, compiled templates) with one stylesheet and one small script,
//! both embedded in the binary and served from `/ui/assets/`. Every page works without
//! JavaScript; the script adds copy buttons and refreshes live tables by polling small HTML
//! fragments. Pages are reached only with a signed-in session (see [`auth`]); every POST form
//! carries the session's CSRF token (see [`csrf`]). What a page changes goes through
//! [`crate::ops`], the same code the REST API runs.
//!
//! The UI has state of its own (the account, sessions, the sign-in limiter: [`UiState`]); its
//! handlers see it together with the application's as a [`UiApp`], so the application's state
//! knows nothing of the UI.
//!
//! One module per page (`workers`, `tokens`, `settings`, `license`, `jobs`, `audit`), plus the shell
//! (`layout`, `fmt`), the account and sessions (`account`, `session`, `auth`, `csrf`), errors
//! (`error`) and the static files (`assets`).

pub mod account;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod csrf;
pub mod error;
pub mod fmt;
pub mod jobs;
pub mod layout;
pub mod license;
pub mod live;
pub mod overview;
pub mod page;
pub mod session;
pub mod settings;
pub mod tokens;
pub mod worker;
pub mod workers;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tokio::sync::Semaphore;

use crate::ratelimit::FailureLimiter;
use crate::state::AppState;

/// The largest form the UI accepts. Its biggest field is an enrollment secret (≤ 1024 chars).
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// The policy every UI response carries: nothing but this server's own files, no inline script
/// or style, no framing, no forms posting elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the UI keeps besides the application state.
pub struct UiState {
    pub account: account::Account,
    pub sessions: session::Sessions,
    /// Failed sign-ins per source address.
    pub limiter: FailureLimiter,
    /// Argon2 checks of sign-in passwords, one at a time, so a burst of guesses cannot take
    /// every core from the fleet.
    pub password_checks: Semaphore,
    /// The fleet overview's counts, reused for a few seconds.
    pub overview: overview::Cache,
}

impl UiState {
    pub fn new(account: account::Account) -> Self {
        Self {
            account,
            sessions: session::Sessions::default(),
            // Five wrong passwords a minute per address: plenty for a person, useless for a
            // guesser.
            limiter: FailureLimiter::new(5, 50, Duration::from_secs(60)),
            password_checks: Semaphore::new(1),
            overview: overview::Cache::default(),
        }
    }
}

/// What the UI's handlers reach: the application's state (through `Deref`, so pages call
/// [`crate::ops`] as the API does) and the UI's own.
#[derive(Clone)]
pub struct UiApp {
    app: AppState,
    pub ui: Arc<UiState>,
}

impl UiApp {
    pub fn new(app: AppState, ui: Arc<UiState>) -> Self {
        Self { app, ui }
    }
}

impl std::ops::Deref for UiApp {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.app
    }
}

impl FromRef<UiApp> for AppState {
    fn from_ref(ui: &UiApp) -> AppState {
        ui.app.clone()
    }
}

pub fn routes() -> Router<UiApp> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/workers") }))
        .route("/signin", get(auth::signin_page).post(auth::signin))
        .route("/signout", post(auth::signout))
        .route("/workers", get(workers::page).post(worker::create))
        .route("/workers/live", get(workers::live))
        .route("/workers/events", get(live::events))
        .route("/workers/overview", get(overview::fragment))
        .route("/workers/{name}", get(worker::page))
        .route("/workers/{name}/row", get(live::row))
        .route(
            "/workers/{name}/remove",
            get(worker::confirm_remove).post(worker::remove),
        )
        .route(
            "/workers/{name}/revoke",
            get(workers::confirm_revoke).post(workers::revoke),
        )
        .route("/tokens", get(tokens::page).post(tokens::create))
        .route(
            "/tokens/{name}/revoke",
            get(tokens::confirm_revoke).post(tokens::revoke),
        )
        .route(
            "/settings",
            get(|| async { Redirect::to("/settings/security") }),
        )
        .route("/settings/security", get(settings::page))
        .route("/settings/security/enable", post(settings::enable))
        .route("/settings/security/rotate", post(settings::rotate))
        .route("/settings/security/disable", post(settings::disable))
        .route("/settings/license", get(license::page))
        .route("/settings/license/install", post(license::install))
        .route("/settings/license/trial", post(license::trial))
        .route(
            "/settings/license/remove",
            get(license::confirm_remove).post(license::remove),
        )
        .route("/jobs", get(jobs::list).post(jobs::submit))
        .route("/jobs/{id}", get(jobs::detail))
        .route("/jobs/{id}/live", get(jobs::live))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/audit", get(audit::page))
        .route("/ui/assets/{file}", get(assets::serve))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(middleware::from_fn(security_headers))
}

async fn not_found() -> Response {
    error::UiError::not_found("There is no page at this address.").into_response()
}

/// Adds the browser-side protections to every UI response. Pages are never cached: some show a
/// secret once, and none should come back from the cache after sign-out.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

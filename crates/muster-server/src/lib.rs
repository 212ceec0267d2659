//! The muster server.
//!
//! [`router`] builds the HTTP application (testable without a socket): the REST API under
//! `/api/v1/` and the web UI at `/`. [`run`] is `muster serve`: it opens the data dir and the
//! store, sets up TLS, the admin credential and the web UI account, listens, and runs until
//! `shutdown` resolves, then winds down gracefully.

pub mod api;
pub mod builtin;
pub mod clock;
pub mod config;
pub mod control;
pub mod datadir;
pub mod error;
pub mod events;
pub mod jobs;
pub mod lean_tls;
pub mod listener;
pub mod ops;
pub mod ratelimit;
pub mod secrets;
pub mod serve;
pub mod state;
pub mod tls;
pub mod ui;
pub mod validate;
pub mod views;

use std::sync::Arc;

use axum::Router;

pub use config::{ServeConfig, TlsMode};
pub use serve::{ServeError, Started, run};

use crate::state::AppState;

/// The whole HTTP application: the API under `/api/v1/`, the web UI everywhere else.
pub fn router(app: AppState, ui: Arc<ui::UiState>) -> Router {
    Router::new()
        .nest("/api/v1", api::routes().with_state(app.clone()))
        .merge(ui::routes().with_state(ui::UiApp::new(app, ui)))
}

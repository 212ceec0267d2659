//! The muster server.
//!
//! [`router`] builds the HTTP application (testable without a socket): the REST API under
//! `/api/v1/` and the web UI at `/`. [`run`] is `muster serve`: it opens the data dir and the
//! store, sets up TLS, the admin credential and the web UI account, listens, and runs until
//! `shutdown` resolves, then winds down gracefully.

pub mod api;
pub mod audit;
pub mod backup;
pub mod builtin;
pub mod clock;
pub mod config;
pub mod control;
pub mod datadir;
pub mod diag;
pub mod error;
pub mod events;
pub mod jobs;
/// The TLS server stream, its own crate so the fuzz targets build without the server.
pub use muster_lean_tls as lean_tls;
pub mod license;
pub mod listener;
pub mod ops;
pub mod proof;
pub mod ratelimit;
pub mod replica;
pub mod secrets;
pub mod serve;
pub mod slow_hash;
pub mod sources;
pub mod state;
pub mod tls;
pub mod ui;
pub mod validate;
pub mod views;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

pub use config::{ServeConfig, TlsMode};
pub use serve::{ServeError, Started, run};

use crate::state::AppState;

/// The whole HTTP application: the API under `/api/v1/`, the web UI everywhere else. Every
/// request runs in a span with its method and route, and is counted and logged once answered
/// ([`diag::http`]).
pub fn router(app: AppState, ui: Arc<ui::UiState>) -> Router {
    Router::new()
        .nest(
            "/api/v1",
            api::routes()
                .layer(middleware::from_fn_with_state(
                    app.clone(),
                    api::license::warnings,
                ))
                .with_state(app.clone()),
        )
        .merge(ui::routes().with_state(ui::UiApp::new(app, ui)))
        .layer(compression())
        .layer(middleware::from_fn(deadline))
        .layer(middleware::from_fn(diag::http::track))
}

/// Answers compressed with gzip when the client accepts it: a page of 5,000 workers is a few
/// hundred kilobytes as JSON and a tenth of that compressed. A body that streams as it happens
/// (a job's followed output, server-sent events) is left alone, since compressing it would hold
/// lines back until a compressor's block fills; so is anything too small to gain
/// ([`COMPRESS_ABOVE`]).
fn compression()
-> tower_http::compression::CompressionLayer<impl tower_http::compression::Predicate> {
    use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
    tower_http::compression::CompressionLayer::new()
        .gzip(true)
        .compress_when(
            SizeAbove::new(COMPRESS_ABOVE)
                .and(NotForContentType::GRPC)
                .and(NotForContentType::IMAGES)
                .and(NotForContentType::SSE)
                .and(NotForContentType::const_new("application/x-ndjson")),
        )
}

/// Bodies up to this size go uncompressed. Gzip saves a few dozen bytes on the small answers
/// workers get (a challenge, an enrollment, a job's state), and each compressed answer costs a
/// compressor's setup, hundreds of kilobytes allocated and cleared: measured, that was a large
/// part of an enrollment's CPU.
const COMPRESS_ABOVE: u16 = 1024;

/// How long a request may take to be answered (its response headers; a streamed body such as
/// a job's followed output goes on after): a client that trickles its request body, or a
/// handler stuck behind something, does not hold a connection for longer.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

async fn deadline(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_DEADLINE, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error::AppError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            muster_proto::ErrorCode::BadRequest,
            format!(
                "the request was not completed within {} s",
                REQUEST_DEADLINE.as_secs()
            ),
        )
        .with_hint("send the whole request at once; a client that retries will be answered")
        .into_response(),
    }
}

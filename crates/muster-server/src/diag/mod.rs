//! Diagnostics: the metrics the server keeps ([`metrics`]), what every HTTP request leaves
//! behind ([`http`]), and the diagnostics listener, plain HTTP with no authentication, on its own
//! address (`--diag-listen`, default `127.0.0.1:7444`):
//!
//! - `GET /livez`: 200 while the process serves at all;
//! - `GET /readyz`: 200 only when the store answers a trivial read within [`STORE_ANSWERS_WITHIN`]
//!   and the main listener accepts connections (it is running and below its connection cap);
//!   503 otherwise, also while the server shuts down, so a load balancer stops sending it work.
//!   The body says which check failed;
//! - `GET /metrics`: Prometheus text format.
//!
//! It is on loopback by default because it has no authentication: the metrics name no worker,
//! but they do show the fleet's size and activity.

pub mod http;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::listener::ListenerHealth;
use crate::state::AppState;
pub use metrics::metrics;

/// Where the diagnostics listener listens unless told otherwise. A second server on the host
/// finds it taken and runs without one.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:7444";
/// How long `/readyz` waits for the store.
pub const STORE_ANSWERS_WITHIN: Duration = Duration::from_secs(2);

/// `--diag-listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiagListen {
    /// [`DEFAULT_ADDRESS`], and if it is taken, no listener (with a warning).
    Default,
    /// This address; if it cannot be bound the server does not start.
    Address(String),
    /// No diagnostics listener (`--diag-listen off`).
    Off,
}

impl DiagListen {
    /// Parses the flag's value: `off`, or an address.
    pub fn parse(value: &str) -> Self {
        if value.eq_ignore_ascii_case("off") {
            DiagListen::Off
        } else {
            DiagListen::Address(value.to_owned())
        }
    }
}

/// Why the diagnostics listener named on the command line cannot listen.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for diagnostics on `{listen}`: {source}")]
pub struct DiagBindError {
    pub listen: String,
    pub source: std::io::Error,
}

/// Binds the diagnostics listener. `Ok(None)`: off, or the default address is taken (which this
/// logs as a warning).
pub async fn bind(listen: &DiagListen) -> Result<Option<TcpListener>, DiagBindError> {
    let (address, explicit) = match listen {
        DiagListen::Off => return Ok(None),
        DiagListen::Default => (DEFAULT_ADDRESS, false),
        DiagListen::Address(address) => (address.as_str(), true),
    };
    match TcpListener::bind(address).await {
        Ok(listener) => Ok(Some(listener)),
        Err(source) if explicit => Err(DiagBindError {
            listen: address.to_owned(),
            source,
        }),
        Err(error) => {
            tracing::warn!(
                address,
                error = %error,
                "the default diagnostics address is taken (another muster server on this host?); running without /livez, /readyz and /metrics; give this server its own with `--diag-listen ADDR`"
            );
            Ok(None)
        }
    }
}

/// What the diagnostics endpoints look at.
#[derive(Clone)]
pub struct Diagnostics {
    app: AppState,
    listener: ListenerHealth,
    /// A store check is under way: the next one does not queue another read behind it.
    probing: Arc<AtomicBool>,
}

impl Diagnostics {
    pub fn new(app: AppState, listener: ListenerHealth) -> Self {
        Self {
            app,
            listener,
            probing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The readiness checks, each `Err` with what is wrong.
    async fn readiness(&self) -> [(&'static str, Result<(), String>); 2] {
        [
            ("store", self.store_answers().await),
            ("listener", self.listener.accepting()),
        ]
    }

    /// A trivial read, within [`STORE_ANSWERS_WITHIN`]. The read runs in a task of its own, so a
    /// store that answers late still finishes it, and until then further checks fail at once
    /// instead of piling reads up behind it.
    async fn store_answers(&self) -> Result<(), String> {
        if self.probing.swap(true, Ordering::AcqRel) {
            return Err("the store has not answered the previous check yet".into());
        }
        let (store, probing) = (self.app.store.clone(), Arc::clone(&self.probing));
        let read = tokio::spawn(async move {
            let answer = store.read(|tx| tx.get_setting("readiness-check")).await;
            probing.store(false, Ordering::Release);
            answer
        });
        match tokio::time::timeout(STORE_ANSWERS_WITHIN, read).await {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("the store failed: {e}")),
            Ok(Err(_)) => Err("the store check stopped".into()),
            Err(_) => Err(format!(
                "the store did not answer within {}s",
                STORE_ANSWERS_WITHIN.as_secs()
            )),
        }
    }

    fn live(&self) -> metrics::Live {
        metrics::Live {
            workers_connected: i64::try_from(self.app.registry.len()).unwrap_or(i64::MAX),
            jobs_queued: i64::try_from(self.app.jobs.queued_count()).unwrap_or(i64::MAX),
        }
    }
}

/// The diagnostics endpoints (testable without a socket).
pub fn router(diagnostics: Diagnostics) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(scrape))
        .with_state(diagnostics)
}

async fn readyz(State(d): State<Diagnostics>) -> impl IntoResponse {
    let checks = d.readiness().await;
    let ready = checks.iter().all(|(_, result)| result.is_ok());
    let body: String = checks
        .iter()
        .map(|(name, result)| match result {
            Ok(()) => format!("{name}: ok\n"),
            Err(why) => format!("{name}: {why}\n"),
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

async fn scrape(State(d): State<Diagnostics>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics().render(&d.live()),
    )
}

/// Serves the diagnostics endpoints until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    diagnostics: Diagnostics,
    mut stop: watch::Receiver<bool>,
) {
    let served = axum::serve(listener, router(diagnostics))
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(e) = served {
        tracing::warn!(error = %e, "the diagnostics listener stopped");
    }
}

/// The URL the diagnostics listener is reached at.
pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

#[cfg(test)]
mod tests;

//! Everything a request handler or a session can reach.

use std::sync::Arc;
use std::time::Duration;

use muster_core::SecretHash;
use muster_core::audit::{AuditEvent, Outcome};
use muster_store::Store;

use crate::clock::Clock;
use crate::control::registry::Registry;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Store,
    pub clock: Clock,
    pub registry: Arc<Registry>,
    pub admin_token_hash: SecretHash,
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    /// `sha256:…` of the certificate a self-signed server serves: what a worker must pin.
    pub pin_fingerprint: Option<String>,
    /// Whether the server is reached over TLS (for the worker command line it prints).
    pub tls: bool,
    pub verifier: crate::secrets::SecretVerifier,
    pub limiter: crate::ratelimit::FailureLimiter,
    pub jobs: Arc<crate::jobs::Jobs>,
    /// The web UI's account, sessions and sign-in limiter.
    pub ui: crate::ui::UiState,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// Builds an audit event stamped with the server's clock.
    pub fn audit_event(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        remote_addr: Option<std::net::SocketAddr>,
        outcome: Outcome,
        detail: impl Into<String>,
    ) -> AuditEvent {
        AuditEvent {
            at: self.clock.now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            remote_addr: remote_addr.map(|a| a.ip().to_string()),
            outcome,
            detail: detail.into(),
        }
    }

    /// Writes an audit record on its own (for refusals that change nothing else).
    pub async fn record(&self, event: AuditEvent) {
        if let Err(e) = self
            .store
            .write(move |tx| muster_store::flows::audit::append(tx, &event))
            .await
        {
            tracing::error!(error = %e, "cannot write an audit record");
        }
    }
}

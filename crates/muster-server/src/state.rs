//! Everything a request handler or a session can reach. (The web UI keeps its own state beside
//! this one: see `ui::UiApp`.)

use std::sync::Arc;
use std::time::Duration;

use muster_core::SecretHash;
use muster_core::audit::{AuditEvent, Outcome};
use muster_store::Store;

use crate::audit::RefusedAttempt;
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
    /// `--public-url`: the URL workers and admins elsewhere reach this server by, for the
    /// command lines it prints (see [`crate::ops::paste`]). Normalized: no trailing slash.
    pub public_url: Option<String>,
    pub verifier: crate::secrets::SecretVerifier,
    pub limiter: crate::ratelimit::FailureLimiter,
    /// Refused unauthenticated attempts, counted by kind and source (see [`crate::audit`]).
    pub refusals: Arc<crate::audit::Refusals>,
    pub jobs: Arc<crate::jobs::Jobs>,
    /// What sessions record as they open and close, written in groups.
    pub records: Arc<crate::control::records::Records>,
    /// Admissions of workers' control channels, written in groups.
    pub admissions: Arc<crate::control::admissions::Admissions>,
    /// Whether this replica is behind on events it missed (it admits no worker until not).
    pub catch_up: Arc<crate::replica::CatchUp>,
    /// Makes and checks the nonces workers sign where there is no TLS exporter to bind to.
    pub nonce_key: crate::proof::NonceKey,
    /// The license issuers this server trusts, and its log of refused joins.
    pub licensing: crate::license::Licensing,
    /// Sends webhook deliveries (the HTTP client and the retry schedule).
    pub deliverer: crate::webhooks::Deliverer,
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

    /// Builds an audit event stamped with the server's clock, its fields bounded (see
    /// [`AuditEvent::bounded`]).
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
            expected: None,
            at: self.clock.now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            remote_addr: remote_addr.map(|a| a.ip().to_string()),
            outcome,
            detail: detail.into(),
        }
        .bounded()
    }

    /// Records an unauthenticated attempt the server turned away: written now when it is the
    /// first of its kind from its source in this window, otherwise only counted, for the
    /// window's summary (see [`crate::audit`]).
    pub async fn record_refusal(&self, refusal: RefusedAttempt) {
        if let Some(event) = self.refusals.count(refusal, self.clock.now()) {
            self.record(event).await;
        }
    }

    /// Writes an audit record on its own: an admin's or a signed-in user's action that changes
    /// nothing in the store. (Refused unauthenticated attempts go through
    /// [`AppState::record_refusal`].)
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

#[cfg(test)]
impl AppState {
    /// The state's fields, to change one in a test (only while no other handle exists).
    #[cfg(test)]
    pub fn inner_mut(&mut self) -> &mut Inner {
        Arc::get_mut(&mut self.0).expect("no other handle to the state")
    }

    /// The admin token a state from [`AppState::for_tests`] accepts.
    pub const TEST_ADMIN_TOKEN: &'static str = "ma_test-admin-token";

    /// The one way tests build a state: a fresh SQLite database in a temporary directory (keep
    /// the returned directory as long as the state), the system clock, no TLS, no replicas.
    pub fn for_tests() -> (Self, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open_sqlite(&dir.path().join("muster.db")).expect("a test database");
        let clock = Clock::system();
        let registry = Arc::new(Registry::new());
        let jobs = crate::jobs::Jobs::new(
            store.clone(),
            Arc::clone(&registry),
            clock,
            crate::jobs::DEFAULT_OUTPUT_CAP,
            "test".into(),
            crate::jobs::DEFAULT_JOB_GRACE,
        );
        let app = AppState::new(Inner {
            records: crate::control::records::Records::new(store.clone()),
            admissions: crate::control::admissions::Admissions::new(store.clone()),
            store,
            clock,
            registry,
            admin_token_hash: SecretHash::of(Self::TEST_ADMIN_TOKEN),
            heartbeat: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            pin_fingerprint: None,
            tls: false,
            public_url: None,
            verifier: crate::secrets::SecretVerifier::new(),
            limiter: crate::ratelimit::FailureLimiter::default(),
            refusals: Arc::default(),
            jobs,
            catch_up: Arc::default(),
            nonce_key: crate::proof::NonceKey::from_bytes(&[7; 32]),
            licensing: crate::license::Licensing::new(Self::test_issuers()),
            deliverer: crate::webhooks::Deliverer::new(std::time::Duration::from_secs(1)),
        });
        (app, dir)
    }

    /// The issuer tests sign licenses with: made once per test process, and trusted (beside
    /// muster's own key) by every state from [`AppState::for_tests`].
    pub fn test_issuer() -> &'static muster_license::IssuerSecret {
        static ISSUER: std::sync::OnceLock<muster_license::IssuerSecret> =
            std::sync::OnceLock::new();
        ISSUER.get_or_init(|| muster_license::IssuerSecret::generate().expect("an issuer key"))
    }

    fn test_issuers() -> muster_license::Issuers {
        let mut issuers = muster_license::Issuers::muster();
        issuers.add(Self::test_issuer().public().clone());
        issuers
    }
}

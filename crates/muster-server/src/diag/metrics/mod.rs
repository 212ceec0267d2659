//! The server's metrics: what it counts, and how a scrape renders them (Prometheus text format,
//! by `prometheus-client`).
//!
//! Hot paths pay one atomic increment per event and take no lock: every label combination of a
//! counter they touch is created once, up front, and kept as a handle (a `Counter` is an
//! `Arc<AtomicU64>`; the handle and the family's entry share it). What is cheaper to read than
//! to maintain — the workers connected, the jobs queued — is read when `/metrics` is scraped.
//!
//! Every replica counts only what it does itself; see README.md ("Monitoring") for how to sum.

use std::sync::LazyLock;
use std::time::Duration;

use muster_core::job::JobState;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

mod labels;

pub use labels::{CutReason, EnrollMethod, EnrollOutcome, count_enrollment};
use labels::{EnrollmentLabels, HttpLabels, KindLabel, OutcomeLabel, ReasonLabel, StateLabel};

/// What became of a webhook delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// It did not; the delivery is retried later.
    Retry,
    /// It did not, and the delivery's 24 hours are over: given up.
    Failed,
}

impl WebhookOutcome {
    const ALL: [WebhookOutcome; 3] = [
        WebhookOutcome::Delivered,
        WebhookOutcome::Retry,
        WebhookOutcome::Failed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Delivered => "delivered",
            WebhookOutcome::Retry => "retry",
            WebhookOutcome::Failed => "failed",
        }
    }
}

/// The `Content-Type` of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The process's metrics. One server runs per process, so one set is enough, and a static one
/// spares every hot path a handle to carry.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// The route every worker connection takes, counted without a lookup.
const CONNECT_ROUTE: &str = "/api/v1/connect";
const SWITCHING_PROTOCOLS: u16 = 101;

/// What the process counts. The families are what a scrape renders; the handles beside them
/// are the same counters, for the hot paths.
pub struct Metrics {
    registry: Registry,
    enrollments: [[Counter; EnrollOutcome::ALL.len()]; EnrollMethod::ALL.len()],
    cutoffs: [Counter; CutReason::ALL.len()],
    cutoff_seconds: Histogram,
    jobs: [Counter; JobState::ALL.len()],
    store_commit_seconds: Histogram,
    tls_handshakes_in_flight: Gauge,
    /// Completed TLS handshakes: `[full, resumed]`.
    tls_handshakes: [Counter; 2],
    http_requests: Family<HttpLabels, Counter>,
    /// `http_requests{route="/api/v1/connect",status="101"}`: a worker's channel opened.
    connects_upgraded: Counter,
    webhook_attempts: [Counter; WebhookOutcome::ALL.len()],
}

/// Latency buckets from 100 µs to about 6.5 s, doubling: a cut-off or a commit takes well under
/// a millisecond on a quiet server and tens of milliseconds behind a slow disk or network.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 17)
}

impl Metrics {
    /// A fresh set (tests make their own; the server uses [`metrics`]).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        registry.register(
            "muster_build",
            "The version of muster this server runs",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );

        let enrollment_family = Family::<EnrollmentLabels, Counter>::default();
        let enrollments = EnrollMethod::ALL.map(|method| {
            EnrollOutcome::ALL.map(|outcome| {
                enrollment_family.get_or_create_owned(&EnrollmentLabels {
                    method: method.as_str(),
                    outcome: outcome.as_str(),
                })
            })
        });
        registry.register(
            "muster_enrollments",
            "Enrollment attempts handled by this replica, by method and outcome",
            enrollment_family,
        );

        let cutoff_family = Family::<ReasonLabel, Counter>::default();
        let cutoffs = CutReason::ALL.map(|reason| {
            cutoff_family.get_or_create_owned(&ReasonLabel {
                reason: reason.as_str(),
            })
        });
        registry.register(
            "muster_cutoffs",
            "Live workers this replica cut off, by reason",
            cutoff_family,
        );
        let cutoff_seconds = Histogram::new(latency_buckets());
        registry.register(
            "muster_cutoff_seconds",
            "Time from the decision to cut a worker off to its close frame being sent",
            cutoff_seconds.clone(),
        );

        let job_family = Family::<StateLabel, Counter>::default();
        let jobs = JobState::ALL.map(|state| {
            job_family.get_or_create_owned(&StateLabel {
                state: state.as_str(),
            })
        });
        registry.register(
            "muster_jobs",
            "Jobs this replica moved into each state (queued at submission, running when started, and the state each ended in)",
            job_family,
        );

        let store_commit_seconds = Histogram::new(latency_buckets());
        registry.register(
            "muster_store_commit_seconds",
            "Time a write transaction took to commit (with SQLite, one group of writes, fsync included)",
            store_commit_seconds.clone(),
        );
        let tls_handshakes_in_flight = Gauge::default();
        registry.register(
            "muster_tls_handshakes_in_flight",
            "TLS handshakes under way: waiting for a permit or running",
            tls_handshakes_in_flight.clone(),
        );
        let handshake_family = Family::<KindLabel, Counter>::default();
        let tls_handshakes = ["full", "resumed"]
            .map(|kind| handshake_family.get_or_create_owned(&KindLabel { kind }));
        registry.register(
            "muster_tls_handshakes",
            "TLS handshakes this replica completed, full or resumed (a resumed one skips the certificate and its signature)",
            handshake_family,
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        let connects_upgraded = http_requests.get_or_create_owned(&HttpLabels {
            route: CONNECT_ROUTE.to_owned(),
            status: SWITCHING_PROTOCOLS,
        });
        registry.register(
            "muster_http_requests",
            "HTTP requests this replica answered, by route template and status",
            http_requests.clone(),
        );
        let webhook_family = Family::<OutcomeLabel, Counter>::default();
        let webhook_attempts = WebhookOutcome::ALL.map(|outcome| {
            webhook_family.get_or_create_owned(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
        });
        registry.register(
            "muster_webhook_attempts",
            "Webhook delivery attempts this replica made, by what became of the delivery",
            webhook_family,
        );
        Self {
            registry,
            enrollments,
            cutoffs,
            cutoff_seconds,
            jobs,
            store_commit_seconds,
            tls_handshakes_in_flight,
            tls_handshakes,
            http_requests,
            connects_upgraded,
            webhook_attempts,
        }
    }

    /// A webhook delivery attempt ended this way.
    pub fn webhook_attempt(&self, outcome: WebhookOutcome) {
        if let Some(i) = WebhookOutcome::ALL.iter().position(|o| *o == outcome) {
            self.webhook_attempts[i].inc();
        }
    }

    pub fn enrollment(&self, method: EnrollMethod, outcome: EnrollOutcome) {
        let m = EnrollMethod::ALL.iter().position(|x| *x == method);
        let o = EnrollOutcome::ALL.iter().position(|x| *x == outcome);
        if let (Some(m), Some(o)) = (m, o) {
            self.enrollments[m][o].inc();
        }
    }

    /// A live worker was cut off; `took` is from the decision to the close frame sent (`None`
    /// when the frame could not be sent: the connection was gone already).
    pub fn cutoff(&self, reason: CutReason, took: Option<Duration>) {
        self.cutoffs[reason.index()].inc();
        if let Some(took) = took {
            self.cutoff_seconds.observe(took.as_secs_f64());
        }
    }

    /// A job entered `state` through this replica.
    pub fn job(&self, state: JobState) {
        if let Some(i) = JobState::ALL.iter().position(|s| *s == state) {
            self.jobs[i].inc();
        }
    }

    /// `n` jobs entered `state` at once (jobs lost at start).
    pub fn jobs(&self, state: JobState, n: usize) {
        if let Some(i) = JobState::ALL.iter().position(|s| *s == state) {
            self.jobs[i].inc_by(u64::try_from(n).unwrap_or(u64::MAX));
        }
    }

    pub fn store_commit(&self, took: Duration) {
        self.store_commit_seconds.observe(took.as_secs_f64());
    }

    /// Counts a TLS handshake as under way until the returned guard is dropped.
    pub fn tls_handshake(&self) -> HandshakeInFlight {
        self.tls_handshakes_in_flight.inc();
        HandshakeInFlight(self.tls_handshakes_in_flight.clone())
    }

    /// A TLS handshake completed, resumed from a session ticket or not.
    pub fn tls_handshake_done(&self, resumed: bool) {
        self.tls_handshakes[usize::from(resumed)].inc();
    }

    /// An answered request. The worker's channel (`101` on the connect route) is counted
    /// without a lookup; other requests look their series up in the family (a shared read lock,
    /// a write lock only the first time a route and status meet).
    pub fn http_request(&self, route: &str, status: u16) {
        if status == SWITCHING_PROTOCOLS && route == CONNECT_ROUTE {
            self.connects_upgraded.inc();
            return;
        }
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    /// Everything in Prometheus text format, with the values read at scrape time.
    pub fn render(&self, live: &Live) -> String {
        let mut scraped = Registry::default();
        scraped.register(
            "muster_workers_connected",
            "Workers with a live control channel to this replica",
            Gauge::<i64>::default().with_value(live.workers_connected),
        );
        scraped.register(
            "muster_jobs_queued",
            "Jobs waiting for a worker, as this replica sees the queue (the same on every replica: do not sum)",
            Gauge::<i64>::default().with_value(live.jobs_queued),
        );
        let mut text = String::new();
        // Writing into a `String` cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &scraped);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Values read when `/metrics` is scraped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Live {
    pub workers_connected: i64,
    pub jobs_queued: i64,
}

/// A TLS handshake under way; dropping it ends the count.
pub struct HandshakeInFlight(Gauge);

impl Drop for HandshakeInFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Sets a gauge in one expression.
trait WithValue {
    fn with_value(self, value: i64) -> Self;
}

impl WithValue for Gauge<i64> {
    fn with_value(self, value: i64) -> Self {
        self.set(value);
        self
    }
}

#[cfg(test)]
mod tests;

//! Webhooks' sender: claims due deliveries from the store's outbox, POSTs each event signed with
//! its webhook's secret, and records every attempt.
//!
//! A delivery is claimed with a lease (it is due again only after [`LEASE`]), so replicas sharing
//! a database never send one at once, and a server that stops mid-attempt leaves it to be tried
//! again rather than lost. Once a receiver answers 2xx it is marked delivered and never sent
//! again; if the server stops between that answer and recording it, the receiver sees the event
//! once more, with the same `id` and `Muster-Event-Id` to deduplicate with. A receiver that
//! never answers 2xx is retried with exponential backoff (`muster_core::events::retry_delay`)
//! until 24 hours after the event, then given up (`failed` in the delivery log).
//!
//! What a receiver can do to the server is bounded: connecting and answering each have a time
//! limit, redirects are not followed, and its response body is never read (only the status).

pub mod url;

use std::time::Duration;

use futures_util::StreamExt;
use muster_core::Timestamp;
use muster_core::events::{self, EventType};
use muster_store::{Attempt, AttemptNext, DueDelivery};
use tokio::sync::watch;

use crate::diag::metrics::WebhookOutcome;
use crate::state::AppState;
use crate::views;

/// How long a claimed delivery is reserved for its sender: past the longest attempt.
pub const LEASE: Duration = Duration::from_secs(60);
/// How long a receiver has to accept the connection (TLS included).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole attempt may take, until the response's status line and headers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the outbox is checked for due deliveries when the last look found few.
const POLL: Duration = Duration::from_secs(1);
/// Deliveries claimed at once, and sent concurrently.
const BATCH: u32 = 32;
const CONCURRENT: usize = 8;

/// The HTTP client and the retry schedule.
pub struct Deliverer {
    /// `None` only if TLS could not be set up at all (then every attempt fails, saying so).
    http: Option<reqwest::Client>,
    first_retry: Duration,
}

impl Deliverer {
    /// A client that trusts the system's certificate authorities; `first_retry` is the wait
    /// after the first failed attempt (doubling from there).
    pub fn new(first_retry: Duration) -> Self {
        let http = muster_client::trust::Trust::System
            .client_config()
            .map_err(|e| e.to_string())
            .and_then(|tls| {
                reqwest::Client::builder()
                    .use_preconfigured_tls((*tls).clone())
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(REQUEST_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .pool_max_idle_per_host(2)
                    .user_agent(concat!("muster/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| e.to_string())
            });
        let http = http
            .inspect_err(|e| tracing::error!(error = %e, "cannot build the webhooks' HTTP client"))
            .ok();
        Self { http, first_retry }
    }

    /// Sends one claimed delivery and says what becomes of it.
    pub async fn attempt(&self, app: &AppState, due: &DueDelivery) -> Attempt {
        let Some(record) = &due.event else {
            return Attempt {
                at: app.clock.now(),
                status: None,
                error: Some(
                    "its event was pruned from the audit log before it could be delivered".into(),
                ),
                next: AttemptNext::GiveUp,
            };
        };
        let event = views::event(record);
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let sent_at = app.clock.now();
        let signature = events::signature(due.secret.as_bytes(), unix_seconds(sent_at), &body);
        let Some(http) = &self.http else {
            return Attempt {
                at: sent_at,
                status: None,
                error: Some("the server could not set up its HTTP client (see its log)".into()),
                next: AttemptNext::RetryAt(sent_at.saturating_add(LEASE)),
            };
        };
        let sent = http
            .post(&due.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Muster-Signature", signature)
            .header("Muster-Event-Id", &event.id)
            .header("Muster-Event-Type", &event.kind)
            .body(body)
            .send()
            .await;
        let (status, error) = match sent {
            // The body is dropped unread: its size and pace are the receiver's business.
            Ok(response) if response.status().is_success() => {
                (Some(response.status().as_u16()), None)
            }
            Ok(response) => (
                Some(response.status().as_u16()),
                Some(format!("the receiver answered {}", response.status())),
            ),
            Err(e) => (None, Some(describe(&e))),
        };
        let at = app.clock.now();
        let next = if error.is_none() {
            AttemptNext::Delivered
        } else if at
            >= due
                .delivery
                .created_at
                .saturating_add(events::DELIVERY_WINDOW)
        {
            AttemptNext::GiveUp
        } else {
            let delay = events::retry_delay(self.first_retry, due.delivery.attempts + 1);
            AttemptNext::RetryAt(at.saturating_add(delay))
        };
        Attempt {
            at,
            status,
            error,
            next,
        }
    }
}

fn unix_seconds(at: Timestamp) -> u64 {
    u64::try_from(at.unix_millis() / 1000).unwrap_or(0)
}

/// Why an attempt failed, for the delivery log: never the URL (it may carry a token).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!(
            "the receiver did not answer within {} s",
            REQUEST_TIMEOUT.as_secs()
        )
    } else if e.is_connect() {
        "cannot connect to the receiver".into()
    } else {
        let mut text = String::from("the request failed");
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }
}

/// Sends one claimed delivery and records the attempt.
pub async fn deliver(app: &AppState, due: DueDelivery) -> Option<Attempt> {
    let attempt = app.deliverer.attempt(app, &due).await;
    let id = due.delivery.id;
    let recorded = attempt.clone();
    if let Err(e) = app
        .store
        .write(move |tx| tx.finish_attempt(id, &recorded))
        .await
    {
        tracing::warn!(error = %e, "cannot record a webhook delivery attempt");
        return None;
    }
    let kind = due.delivery.event_type;
    crate::diag::metrics::metrics().webhook_attempt(match attempt.next {
        AttemptNext::Delivered => WebhookOutcome::Delivered,
        AttemptNext::RetryAt(_) => WebhookOutcome::Retry,
        AttemptNext::GiveUp => WebhookOutcome::Failed,
    });
    match (&attempt.next, &attempt.error) {
        (AttemptNext::Delivered, _) => {
            tracing::debug!(webhook = %due.delivery.webhook_id, event = %kind, "webhook delivered");
        }
        (AttemptNext::RetryAt(at), Some(error)) => tracing::info!(
            webhook = %due.delivery.webhook_id, event = %kind, retry_at = %at,
            "webhook delivery failed ({error}); it will be retried"
        ),
        (_, error) => tracing::warn!(
            webhook = %due.delivery.webhook_id, event = %kind,
            "webhook delivery given up after 24 hours ({})",
            error.as_deref().unwrap_or("no answer")
        ),
    }
    if kind == EventType::WebhookTest {
        tracing::info!(webhook = %due.delivery.webhook_id, "test event sent");
    }
    Some(attempt)
}

/// Sends due deliveries until told to stop.
pub async fn run(app: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        let now = app.clock.now();
        let lease_until = now.saturating_add(LEASE);
        let claimed = app
            .store
            .write(move |tx| tx.claim_deliveries(now, lease_until, BATCH, None))
            .await;
        let full = match claimed {
            Ok(batch) => {
                let n = batch.len();
                let sending =
                    futures_util::stream::iter(batch).for_each_concurrent(CONCURRENT, |due| {
                        let app = app.clone();
                        async move {
                            deliver(&app, due).await;
                        }
                    });
                // A stop abandons attempts in flight: their lease runs out and they are tried
                // again by whoever runs next.
                tokio::select! {
                    () = sending => {}
                    _ = stop.wait_for(|stop| *stop) => return,
                }
                n == BATCH as usize
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim webhook deliveries");
                false
            }
        };
        if full {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

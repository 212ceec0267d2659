//! Events: what happened in the fleet, as the event stream and webhooks name it.
//!
//! Every event is an audit record (the audit log is the event log); [`EventType::of`] says which
//! records are events a webhook can subscribe to, under the names receivers rely on
//! (`worker.enrolled`, not the audit log's `enroll.secret`). The rest of this module is the
//! rules of a webhook delivery: how long it is retried, how far apart, and how it is signed.

use std::fmt;
use std::time::Duration;

use crate::audit::Outcome;

/// The events a webhook can subscribe to. The wire names ([`EventType::as_str`]) never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    WorkerEnrolled,
    WorkerConnected,
    WorkerDisconnected,
    WorkerRevoked,
    WorkerRemoved,
    WorkerCreated,
    WorkerSuperseded,
    WorkerCloneDetected,
    EnrollmentRefused,
    EnrollmentChanged,
    TokenCreated,
    TokenRevoked,
    TokenExpired,
    LicenseChanged,
    JobSubmitted,
    JobCancelled,
    JobEnded,
    /// `muster webhooks test`: sent only to the webhook tested, never fanned out.
    WebhookTest,
}

impl EventType {
    pub const ALL: [EventType; 18] = [
        EventType::WorkerEnrolled,
        EventType::WorkerConnected,
        EventType::WorkerDisconnected,
        EventType::WorkerRevoked,
        EventType::WorkerRemoved,
        EventType::WorkerCreated,
        EventType::WorkerSuperseded,
        EventType::WorkerCloneDetected,
        EventType::EnrollmentRefused,
        EventType::EnrollmentChanged,
        EventType::TokenCreated,
        EventType::TokenRevoked,
        EventType::TokenExpired,
        EventType::LicenseChanged,
        EventType::JobSubmitted,
        EventType::JobCancelled,
        EventType::JobEnded,
        EventType::WebhookTest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::WorkerEnrolled => "worker.enrolled",
            EventType::WorkerConnected => "worker.connected",
            EventType::WorkerDisconnected => "worker.disconnected",
            EventType::WorkerRevoked => "worker.revoked",
            EventType::WorkerRemoved => "worker.removed",
            EventType::WorkerCreated => "worker.created",
            EventType::WorkerSuperseded => "worker.superseded",
            EventType::WorkerCloneDetected => "worker.clone_detected",
            EventType::EnrollmentRefused => "enrollment.refused",
            EventType::EnrollmentChanged => "enrollment.changed",
            EventType::TokenCreated => "token.created",
            EventType::TokenRevoked => "token.revoked",
            EventType::TokenExpired => "token.expired",
            EventType::LicenseChanged => "license.changed",
            EventType::JobSubmitted => "job.submitted",
            EventType::JobCancelled => "job.cancelled",
            EventType::JobEnded => "job.ended",
            EventType::WebhookTest => "webhook.test",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == input)
    }

    /// The event an audit record is, if it is one. Refused admin actions (revoking an expired
    /// token) changed nothing and are not events; refused enrollments are.
    pub fn of(action: &str, outcome: Outcome) -> Option<Self> {
        let ok = outcome == Outcome::Ok;
        Some(match action {
            "enroll" | "enroll.token" | "enroll.secret" if ok => EventType::WorkerEnrolled,
            "enroll" | "enroll.token" | "enroll.secret" => EventType::EnrollmentRefused,
            "worker.clone_detected" => EventType::WorkerCloneDetected,
            "worker.connected" if ok => EventType::WorkerConnected,
            "worker.disconnected" if ok => EventType::WorkerDisconnected,
            "worker.revoke" if ok => EventType::WorkerRevoked,
            "worker.remove" if ok => EventType::WorkerRemoved,
            "worker.create" if ok => EventType::WorkerCreated,
            "worker.superseded" if ok => EventType::WorkerSuperseded,
            "enrollment.enable" | "enrollment.disable" | "enrollment.rotate" if ok => {
                EventType::EnrollmentChanged
            }
            "token.create" if ok => EventType::TokenCreated,
            "token.revoke" if ok => EventType::TokenRevoked,
            "token.expired" => EventType::TokenExpired,
            "license.changed" if ok => EventType::LicenseChanged,
            "job.submit" if ok => EventType::JobSubmitted,
            "job.cancel" if ok => EventType::JobCancelled,
            "job.end" => EventType::JobEnded,
            "webhook.test" => EventType::WebhookTest,
            _ => return None,
        })
    }

    /// Whether every webhook subscribed to this type gets it. A test event goes only to the
    /// webhook tested.
    pub fn fans_out(self) -> bool {
        self != EventType::WebhookTest
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long a delivery is retried before it is given up.
pub const DELIVERY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// The first retry's delay by default; each further one doubles it, up to [`RETRY_CAP`].
pub const FIRST_RETRY: Duration = Duration::from_secs(10);
/// The longest wait between two attempts.
pub const RETRY_CAP: Duration = Duration::from_secs(60 * 60);

/// The wait after the `attempts`-th failed attempt (1 for the first), starting at `first`
/// ([`FIRST_RETRY`]: 10 s, 20 s, 40 s, …) up to an hour. Exponential, so a receiver that is
/// down for a minute gets its events within seconds of coming back, and one down for a day is
/// asked about once an hour.
pub fn retry_delay(first: Duration, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    first.saturating_mul(1 << doublings).min(RETRY_CAP)
}

/// The `Muster-Signature` header's value for `body` sent at `unix_seconds`:
/// `t=UNIX_SECONDS,v1=HEX`, where `v1` is HMAC-SHA256 of `"{t}.{body}"` keyed with the
/// webhook's secret. The time is signed too, so a receiver can refuse a replayed old request.
pub fn signature(secret: &[u8], unix_seconds: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(unix_seconds.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={unix_seconds},v1={}", hex::encode(ctx.sign().as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_back_from_its_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("worker.exploded"), None);
    }

    #[test]
    fn audit_records_map_to_the_contract_names() {
        let cases = [
            (
                "enroll.secret",
                Outcome::Ok,
                Some(EventType::WorkerEnrolled),
            ),
            ("enroll.token", Outcome::Ok, Some(EventType::WorkerEnrolled)),
            (
                "enroll.token",
                Outcome::Refused,
                Some(EventType::EnrollmentRefused),
            ),
            ("token.revoke", Outcome::Ok, Some(EventType::TokenRevoked)),
            ("token.revoke", Outcome::Refused, None),
            (
                "worker.clone_detected",
                Outcome::Refused,
                Some(EventType::WorkerCloneDetected),
            ),
            ("ui.signin", Outcome::Ok, None),
            ("retention.prune", Outcome::Ok, None),
        ];
        for (action, outcome, want) in cases {
            assert_eq!(EventType::of(action, outcome), want, "{action}");
        }
    }

    #[test]
    fn retries_double_from_ten_seconds_up_to_an_hour() {
        assert_eq!(retry_delay(FIRST_RETRY, 1), Duration::from_secs(10));
        assert_eq!(retry_delay(FIRST_RETRY, 2), Duration::from_secs(20));
        assert_eq!(retry_delay(FIRST_RETRY, 3), Duration::from_secs(40));
        assert_eq!(retry_delay(FIRST_RETRY, 10), RETRY_CAP);
        assert_eq!(retry_delay(FIRST_RETRY, u32::MAX), RETRY_CAP);
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // Computed independently:
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        let sig = signature(b"secret", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            sig,
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
        assert_ne!(sig, signature(b"other", 1_700_000_000, br#"{"a":1}"#));
        assert_ne!(sig, signature(b"secret", 1_700_000_001, br#"{"a":1}"#));
    }
}

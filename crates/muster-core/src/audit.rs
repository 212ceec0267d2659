//! Audit records: who did what, when, from where, and with what outcome.
//!
//! An audit record never holds a secret. The fields are plain descriptions; callers build them
//! from names and ids, never from presented credentials, and never from text a caller sent
//! that did not validate. Whatever they hold, a record is [`AuditEvent::bounded`] before it is
//! stored: no control characters, and every field capped, so no request can make one large.

use crate::text;
use crate::time::Timestamp;

/// The longest actor, target or source address a record keeps, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// The longest action a record keeps, in characters.
pub const MAX_ACTION_CHARS: usize = 64;
/// The longest detail a record keeps, in characters.
pub const MAX_DETAIL_CHARS: usize = 1024;

/// Whether the audited action happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        match input {
            "ok" => Some(Outcome::Ok),
            "refused" => Some(Outcome::Refused),
            _ => None,
        }
    }
}

/// An audit record to be written. `actor` is `admin`, `worker:NAME`, or `anonymous` for an
/// unauthenticated caller; `action` is a dotted verb such as `token.create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub remote_addr: Option<String>,
    pub outcome: Outcome,
    pub detail: String,
    /// On a worker's enrollment through the auto-enrollment secret while an expected-name
    /// pattern is set (`muster enrollment enable --expect`): whether its name matched. `false`
    /// flags an unfamiliar worker on its `worker.enrolled` event. `None` everywhere else.
    pub expected: Option<bool>,
}

impl AuditEvent {
    /// The record as it may be stored: every field with its control characters escaped and cut
    /// to its maximum length (ending `…` when cut).
    pub fn bounded(self) -> Self {
        Self {
            at: self.at,
            actor: text::bounded(&self.actor, MAX_NAME_CHARS),
            action: text::bounded(&self.action, MAX_ACTION_CHARS),
            target: text::bounded(&self.target, MAX_NAME_CHARS),
            remote_addr: self.remote_addr.map(|a| text::bounded(&a, MAX_NAME_CHARS)),
            outcome: self.outcome,
            detail: text::bounded(&self.detail, MAX_DETAIL_CHARS),
            expected: self.expected,
        }
    }
}

/// A stored audit record, with its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub event: AuditEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_record_has_short_fields_and_no_control_characters() {
        let event = AuditEvent {
            expected: None,
            at: Timestamp::from_unix_millis(0),
            actor: "machine:\x1b]0;owned\x07".into(),
            action: "enroll".into(),
            target: "x".repeat(60_000),
            remote_addr: Some("10.0.0.1".into()),
            outcome: Outcome::Refused,
            detail: "line one\r\n2026-01-01 admin token.create fake".repeat(100),
        }
        .bounded();
        assert_eq!(event.actor, "machine:\\x1b]0;owned\\x07");
        assert_eq!(event.target.chars().count(), MAX_NAME_CHARS);
        assert_eq!(event.detail.chars().count(), MAX_DETAIL_CHARS);
        assert!(!event.detail.chars().any(char::is_control));
        assert_eq!(event.remote_addr.as_deref(), Some("10.0.0.1"));
    }
}

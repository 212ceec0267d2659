//! Audit records: who did what, when, from where, and with what outcome.
//!
//! An audit record never holds a secret. The fields are plain descriptions; callers build them
//! from names and ids, never from presented credentials.

use crate::time::Timestamp;

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
}

/// A stored audit record, with its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub event: AuditEvent,
}

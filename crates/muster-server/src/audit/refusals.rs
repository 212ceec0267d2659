//! [`Refusals`]: unauthenticated attempts the server turned away, recorded by kind and source
//! rather than one record per request.
//!
//! Anyone can send an enrollment or a connection attempt, and each used to become its own durable
//! audit record: 400 requests took the database from 4 KB to 24 MB. Here an attempt's *kind* is
//! what was attempted ([`Attempt`]), from which source (an IPv4 address or an IPv6 /64, as the
//! rate limiter counts them) and why it was refused (its [`ErrorCode`]). The first refusal of a
//! kind in a window is recorded at once, with its details; the rest only add to a count, which
//! becomes one summary record when the window closes. So a source costs at most two records per
//! kind per window, however fast it sends.
//!
//! Memory is bounded too: a window tracks at most `max_kinds` kinds. Beyond that, refusals are
//! counted under one overflow kind per [`Attempt`], whatever their source and reason.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use muster_core::Timestamp;
use muster_core::audit::{AuditEvent, Outcome};
use muster_proto::ErrorCode;

use crate::sources::SourceKey;

/// What an unauthenticated caller attempted; each is an audit action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attempt {
    /// An enrollment refused before its credential was looked at (the address is rate-limited).
    Enroll,
    EnrollToken,
    EnrollSecret,
    /// A worker opening its control channel.
    Connect,
    /// A web UI sign-in.
    SignIn,
}

impl Attempt {
    pub fn action(self) -> &'static str {
        match self {
            Attempt::Enroll => "enroll",
            Attempt::EnrollToken => "enroll.token",
            Attempt::EnrollSecret => "enroll.secret",
            Attempt::Connect => "connect",
            Attempt::SignIn => "ui.signin",
        }
    }
}

/// One refused attempt, described with validated values only: `actor` and `target` are names
/// and ids that parsed (or a placeholder such as [`INVALID_NAME`]), never the caller's raw text.
#[derive(Debug, Clone)]
pub struct RefusedAttempt {
    pub attempt: Attempt,
    pub reason: ErrorCode,
    pub remote: Option<SocketAddr>,
    pub actor: String,
    pub target: String,
    pub detail: String,
}

/// What a refusal records in place of a name that did not validate.
pub const INVALID_NAME: &str = "(invalid name)";

/// The kinds one window tracks, at most, before counting the rest per attempt.
pub const MAX_KINDS: usize = 1000;
/// How long a window lasts.
pub const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// `None` when the caller's address is unknown (a test, a Unix socket).
    Of {
        attempt: Attempt,
        source: Option<SourceKey>,
        reason: ErrorCode,
    },
    /// Everything past [`Refusals::max_kinds`] of one attempt.
    Overflow(Attempt),
}

pub struct Refusals {
    window: Duration,
    max_kinds: usize,
    /// Per kind seen in this window: how many more came after the first (which was recorded).
    counts: Mutex<HashMap<Kind, u64>>,
}

impl Default for Refusals {
    fn default() -> Self {
        Self::new(WINDOW, MAX_KINDS)
    }
}

impl Refusals {
    pub fn new(window: Duration, max_kinds: usize) -> Self {
        Self {
            window,
            max_kinds,
            counts: Mutex::new(HashMap::new()),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Counts `refusal`. Returns its audit record when it is the first of its kind in this
    /// window (to be written now); `None` when it only added to a count.
    pub fn count(&self, refusal: RefusedAttempt, now: Timestamp) -> Option<AuditEvent> {
        let kind = Kind::Of {
            attempt: refusal.attempt,
            source: refusal.remote.map(|a| SourceKey::of(a.ip())),
            reason: refusal.reason,
        };
        let first = {
            let mut counts = self.lock();
            let kind = if counts.contains_key(&kind) || counts.len() < self.max_kinds {
                kind
            } else {
                Kind::Overflow(refusal.attempt)
            };
            match counts.get_mut(&kind) {
                Some(more) => {
                    *more += 1;
                    false
                }
                None => {
                    counts.insert(kind, 0);
                    true
                }
            }
        };
        first.then(|| {
            AuditEvent {
                expected: None,
                at: now,
                actor: refusal.actor,
                action: refusal.attempt.action().into(),
                target: refusal.target,
                remote_addr: refusal.remote.map(|a| a.ip().to_string()),
                outcome: Outcome::Refused,
                detail: refusal.detail,
            }
            .bounded()
        })
    }

    /// Ends the window: one summary record for each kind that was refused more than once in it,
    /// and a fresh window. The old window's map is dropped outside the lock.
    pub fn close_window(&self, now: Timestamp) -> Vec<AuditEvent> {
        let ended = std::mem::take(&mut *self.lock());
        let mut summaries: Vec<AuditEvent> = ended
            .into_iter()
            .filter(|(_, more)| *more > 0)
            .map(|(kind, more)| self.summary(kind, more, now))
            .collect();
        // A stable order, so the records of one window read the same way every time.
        summaries.sort_by(|a, b| (&a.action, &a.remote_addr).cmp(&(&b.action, &b.remote_addr)));
        summaries
    }

    fn summary(&self, kind: Kind, more: u64, now: Timestamp) -> AuditEvent {
        let within = within(self.window);
        let (attempt, remote_addr, detail) = match kind {
            Kind::Of {
                attempt,
                source,
                reason,
            } => {
                let from = source.map_or("an unknown address".to_owned(), |s| s.to_string());
                (
                    attempt,
                    source.map(|s| s.to_string()),
                    format!(
                        "{more} more refused ({}) from {from} {within}",
                        code_name(reason)
                    ),
                )
            }
            Kind::Overflow(attempt) => (
                attempt,
                None,
                format!(
                    "{more} more refused from other sources {within} (past {} kinds of refusal, counted together)",
                    self.max_kinds
                ),
            ),
        };
        AuditEvent {
            expected: None,
            at: now,
            actor: "anonymous".into(),
            action: attempt.action().into(),
            target: "-".into(),
            remote_addr,
            outcome: Outcome::Refused,
            detail,
        }
    }

    /// Kinds tracked in the current window.
    #[cfg(test)]
    fn kinds(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Kind, u64>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `in the last minute`, or `in the last 10s` for another window.
fn within(window: Duration) -> String {
    if window == Duration::from_secs(60) {
        "in the last minute".into()
    } else {
        format!("in the last {}", muster_core::format_duration(window))
    }
}

/// The error code as the API spells it (`secret_mismatch`).
fn code_name(code: ErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "unknown".into(),
    }
}

#[cfg(test)]
mod tests;

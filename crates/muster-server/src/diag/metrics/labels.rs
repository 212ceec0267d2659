//! The labels the metrics carry: closed sets, each value a fixed word, so no series is ever
//! made from a name, an id or a path.

use muster_proto::control::CloseCode;
use prometheus_client::encoding::EncodeLabelSet;

use super::metrics;

/// Counts an enrollment attempt by what it asked with and how it ended.
pub fn count_enrollment<T>(
    request: &muster_proto::api::EnrollRequest,
    result: &Result<T, crate::error::AppError>,
) {
    let method = match (&request.token, &request.enrollment_key) {
        (Some(_), None) => EnrollMethod::Token,
        (None, Some(_)) => EnrollMethod::Secret,
        _ => EnrollMethod::Unknown,
    };
    let outcome = match result {
        Ok(_) => EnrollOutcome::Enrolled,
        Err(e) if e.code == muster_proto::ErrorCode::RateLimited => EnrollOutcome::RateLimited,
        Err(e) if e.status.is_server_error() => EnrollOutcome::Error,
        Err(_) => EnrollOutcome::Refused,
    };
    metrics().enrollment(method, outcome);
}

/// How a machine asked to enroll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollMethod {
    Token,
    /// The auto-enrollment secret.
    Secret,
    /// Neither, or both: refused before a method applies.
    Unknown,
}

impl EnrollMethod {
    pub(super) const ALL: [EnrollMethod; 3] = [
        EnrollMethod::Token,
        EnrollMethod::Secret,
        EnrollMethod::Unknown,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            EnrollMethod::Token => "token",
            EnrollMethod::Secret => "secret",
            EnrollMethod::Unknown => "unknown",
        }
    }
}

/// How an enrollment attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollOutcome {
    Enrolled,
    /// Turned away for a reason the caller can fix (a wrong, used or expired credential...).
    Refused,
    /// Too many failed attempts from its address.
    RateLimited,
    /// The server failed (the store, most likely).
    Error,
}

impl EnrollOutcome {
    pub(super) const ALL: [EnrollOutcome; 4] = [
        EnrollOutcome::Enrolled,
        EnrollOutcome::Refused,
        EnrollOutcome::RateLimited,
        EnrollOutcome::Error,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            EnrollOutcome::Enrolled => "enrolled",
            EnrollOutcome::Refused => "refused",
            EnrollOutcome::RateLimited => "rate_limited",
            EnrollOutcome::Error => "error",
        }
    }
}

/// Why the server cut a live worker off: the close codes that end a session by a decision
/// (a shutdown's `going away`, the worker leaving, or a protocol error are not cut-offs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutReason {
    Revoked,
    Expired,
    Superseded,
    Removed,
    Replaced,
    Suspended,
    /// Nothing heard within the idle timeout.
    Idle,
}

impl CutReason {
    pub(super) const ALL: [CutReason; 7] = [
        CutReason::Revoked,
        CutReason::Expired,
        CutReason::Superseded,
        CutReason::Removed,
        CutReason::Replaced,
        CutReason::Suspended,
        CutReason::Idle,
    ];

    /// The reason a close with `code` records, if it is a cut-off.
    pub fn of(code: CloseCode) -> Option<Self> {
        Some(match code {
            CloseCode::Revoked => CutReason::Revoked,
            CloseCode::Expired => CutReason::Expired,
            CloseCode::Superseded => CutReason::Superseded,
            CloseCode::Removed => CutReason::Removed,
            CloseCode::Replaced => CutReason::Replaced,
            CloseCode::Suspended => CutReason::Suspended,
            CloseCode::Idle => CutReason::Idle,
            CloseCode::GoingAway | CloseCode::Protocol | CloseCode::Other(_) => return None,
        })
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            CutReason::Revoked => "revoked",
            CutReason::Expired => "expired",
            CutReason::Superseded => "superseded",
            CutReason::Removed => "removed",
            CutReason::Replaced => "replaced",
            CutReason::Suspended => "suspended",
            CutReason::Idle => "idle",
        }
    }

    pub(super) fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct EnrollmentLabels {
    pub(super) method: &'static str,
    pub(super) outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabel {
    pub(super) reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabel {
    pub(super) kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StateLabel {
    pub(super) state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OutcomeLabel {
    pub(super) outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct HttpLabels {
    /// The matched route's template (`/api/v1/tokens/{name}`), never the path: names and ids
    /// would make a series per token.
    pub(super) route: String,
    pub(super) status: u16,
}

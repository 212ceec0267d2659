//! Errors on the wire: every non-2xx response carries an [`ErrorBody`] whose `code` a program can
//! match on and whose `message` and `hint` a person can read.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// For refusals that will pass by themselves (rate limits, a full server): when to try again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Machine-readable error codes. Workers map these to their exit codes, so their names are part
/// of the protocol: add new ones, never rename.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // Request problems.
    BadRequest,
    InvalidName,
    InvalidLabel,
    InvalidDuration,
    InvalidSecret,
    PayloadTooLarge,
    NotFound,
    Conflict,
    Unauthorized,
    // Token lifecycle.
    TokenExists,
    TokenExpired,
    TokenRevoked,
    // Enrollment refusals.
    TokenUnknown,
    TokenMalformed,
    TokenBoundElsewhere,
    SecretMismatch,
    EnrollmentDisabled,
    EnrollmentWindowClosed,
    NameNotAllowed,
    NameInUse,
    RateLimited,
    // Connection refusals.
    UnknownIdentity,
    MachineMismatch,
    WorkerRevoked,
    WorkerExpired,
    /// The connection or enrollment does not prove the worker holds its key.
    ProofInvalid,
    /// The worker's identity was used from two places at once; it is suspended.
    WorkerSuspended,
    UnsupportedProtocol,
    // Editions and licenses.
    /// The server runs Community Edition (or its license ended, grace included): external
    /// workers cannot join.
    LicenseRequired,
    /// Every seat of the license is taken.
    LicenseSeatsExhausted,
    /// A license offered for installation was refused (signature, issuer, format, dates).
    LicenseInvalid,
    /// The fleet's trial already ran, or a license is installed.
    LicenseTrialUnavailable,
    // The server's side.
    ServerBusy,
    ShuttingDown,
    Internal,
    // Catch-all for codes added by a newer server.
    #[serde(other)]
    Unknown,
}

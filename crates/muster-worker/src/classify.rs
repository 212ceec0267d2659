//! The worker's decisions, all here: whether a failure is worth retrying or stops the worker,
//! and which of the contract's exit codes (PRODUCT.md, "The worker") a stop means. Decisions
//! are taken on types — the server's error code, the close code, the kind of local failure —
//! never on the words of a message.

use std::time::Duration;

use muster_client::ClientError;
use muster_proto::ErrorCode;
use muster_proto::control::CloseCode;

use crate::error::{Cause, WorkerError};

/// The contract's exit codes.
pub mod code {
    pub const GRACEFUL: u8 = 0;
    /// Not in the contract's table: the channel closed and `--no-reconnect` was given, or an
    /// unexpected local failure.
    pub const OTHER: u8 = 1;
    pub const CONFIG: u8 = 2;
    pub const ENROLLMENT_REFUSED: u8 = 3;
    pub const IDENTITY_MISMATCH: u8 = 4;
    pub const REVOKED: u8 = 5;
    pub const EXPIRED: u8 = 6;
    pub const TLS: u8 = 7;
    pub const SUSPENDED: u8 = 8;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Transient: the server is down, busy, or restarting. `after` is the server's own
    /// suggestion, when it gave one.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Permanent: retrying cannot help.
    Stop(WorkerError),
}

/// The exit code a stop with this cause means.
pub fn exit_code(cause: Cause) -> u8 {
    match cause {
        Cause::Config => code::CONFIG,
        // Only refusals `from_api` stops on are built, and those all have a code.
        Cause::Refused(error) => exit_code_for(error).unwrap_or(code::OTHER),
        Cause::Closed(close) => close_exit_code(close).unwrap_or(code::OTHER),
        Cause::UntrustedCertificate => code::TLS,
        Cause::ChannelClosed => code::OTHER,
    }
}

/// The exit code a server error code means, or `None` when it is worth retrying.
pub fn exit_code_for(error: ErrorCode) -> Option<u8> {
    use ErrorCode::*;
    Some(match error {
        TokenUnknown
        | TokenMalformed
        | SecretMismatch
        | EnrollmentDisabled
        | EnrollmentWindowClosed
        | NameNotAllowed
        | NameInUse
        | Unauthorized
        | LicenseRequired
        | LicenseSeatsExhausted => code::ENROLLMENT_REFUSED,
        TokenBoundElsewhere | UnknownIdentity | MachineMismatch | ProofInvalid => {
            code::IDENTITY_MISMATCH
        }
        WorkerSuspended => code::SUSPENDED,
        TokenRevoked | WorkerRevoked => code::REVOKED,
        TokenExpired | WorkerExpired => code::EXPIRED,
        BadRequest | InvalidName | InvalidLabel | InvalidDuration | InvalidSecret
        | UnsupportedProtocol | PayloadTooLarge | NotFound => code::CONFIG,
        // Answers to an admin's license commands; a worker never asks for them.
        LicenseInvalid | LicenseTrialUnavailable => code::CONFIG,
        RateLimited | ServerBusy | ShuttingDown | Internal | Conflict | TokenExists | Unknown => {
            return None;
        }
    })
}

/// The exit code a close code from the server means, or `None` when the worker reconnects.
pub fn close_exit_code(close: CloseCode) -> Option<u8> {
    match close {
        CloseCode::Revoked => Some(code::REVOKED),
        CloseCode::Expired => Some(code::EXPIRED),
        CloseCode::Superseded | CloseCode::Removed | CloseCode::Replaced => {
            Some(code::IDENTITY_MISMATCH)
        }
        CloseCode::Suspended => Some(code::SUSPENDED),
        // Shutdowns, protocol slips, silence, and codes muster does not send may all pass.
        CloseCode::GoingAway | CloseCode::Protocol | CloseCode::Idle | CloseCode::Other(_) => None,
    }
}

/// Classifies an error answer from the server.
pub fn from_api(
    error: ErrorCode,
    message: &str,
    hint: Option<&str>,
    retry_after_ms: Option<u64>,
) -> Failure {
    match exit_code_for(error) {
        Some(_) => Failure::Stop(WorkerError::with_optional_hint(
            Cause::Refused(error),
            message,
            hint.map(str::to_owned),
        )),
        None => Failure::Retry {
            reason: message.to_owned(),
            after: retry_after_ms.map(Duration::from_millis),
        },
    }
}

/// Classifies the server's close frame (`reason` is its text, possibly empty). The codes that
/// stop the worker here are the ones [`close_exit_code`] gives an exit code.
pub fn from_close(close: CloseCode, reason: &str) -> Failure {
    let (message, hint) = match close {
        CloseCode::Revoked => (
            "this worker was revoked by the server",
            "an admin revoked it (or its token); it stays out — enroll a new worker if that was a mistake",
        ),
        CloseCode::Expired => (
            "this worker's enrollment token expired",
            "mint a new token with `muster token create` and start the worker with a fresh state dir",
        ),
        CloseCode::Superseded => (
            "a newer enrollment with this worker's name replaced this identity",
            "start this worker with a fresh state dir to enroll it again",
        ),
        CloseCode::Removed => (
            "an admin removed this worker",
            "start it with a fresh state dir to enroll it again",
        ),
        CloseCode::Replaced => (
            "another connection with this worker's identity took over",
            "use each state dir for one worker process on one machine",
        ),
        CloseCode::Suspended => (
            "this worker's identity was used from two places at once (a copied state dir), and the server suspended it",
            "each copy of a state dir is another machine with a stolen identity: an admin removes this worker (`muster workers remove NAME`), then each machine enrolls with a fresh state dir",
        ),
        CloseCode::GoingAway | CloseCode::Protocol | CloseCode::Idle | CloseCode::Other(_) => {
            return Failure::Retry {
                reason: if reason.is_empty() {
                    format!("the server closed the channel (code {close})")
                } else {
                    reason.to_owned()
                },
                after: None,
            };
        }
    };
    Failure::Stop(WorkerError::new(Cause::Closed(close), message, hint))
}

pub fn untrusted_certificate(url: &str) -> WorkerError {
    WorkerError::new(
        Cause::UntrustedCertificate,
        format!("the server at `{url}` presented a certificate this worker does not trust"),
        "pass `--ca-file` with the CA certificate, or `--ca-fingerprint` with the `sha256:` fingerprint `muster serve` printed",
    )
}

/// Classifies a failed REST call (enrollment).
pub fn from_client(error: &ClientError) -> Failure {
    match error {
        ClientError::Api { detail, .. } => from_api(
            detail.code,
            &detail.message,
            detail.hint.as_deref(),
            detail.retry_after_ms,
        ),
        ClientError::Unreachable { .. } | ClientError::Protocol(_) => Failure::Retry {
            reason: error.to_string(),
            after: None,
        },
        ClientError::UntrustedCertificate { url } => Failure::Stop(untrusted_certificate(url)),
        ClientError::PlainHttpToHttps { .. }
        | ClientError::NotTls { .. }
        | ClientError::BadUrl(_)
        | ClientError::Trust(_) => Failure::Stop(WorkerError::with_optional_hint(
            Cause::Config,
            error.to_string(),
            error.hint(),
        )),
    }
}

#[cfg(test)]
mod tests;

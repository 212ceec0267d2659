//! Sorting failures into "try again" and "stop now, with this exit code". The table here is the
//! worker's half of the contract's exit codes.

use std::time::Duration;

use muster_client::ClientError;
use muster_proto::ErrorCode;

use crate::exit::{Exit, code};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Transient: the server is down, busy, or restarting. `after` is the server's own
    /// suggestion, when it gave one.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Permanent: retrying cannot help.
    Stop(Exit),
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
        | Unauthorized => code::ENROLLMENT_REFUSED,
        TokenBoundElsewhere | UnknownIdentity | MachineMismatch => code::IDENTITY_MISMATCH,
        TokenRevoked | WorkerRevoked => code::REVOKED,
        TokenExpired | WorkerExpired => code::EXPIRED,
        BadRequest | InvalidName | InvalidLabel | InvalidDuration | InvalidSecret
        | UnsupportedProtocol | PayloadTooLarge | NotFound => code::CONFIG,
        RateLimited | ServerBusy | ShuttingDown | Internal | Conflict | TokenExists | Unknown => {
            return None;
        }
    })
}

/// Classifies an error answer from the server.
pub fn from_api(
    error: ErrorCode,
    message: &str,
    hint: Option<&str>,
    retry_after_ms: Option<u64>,
) -> Failure {
    match exit_code_for(error) {
        Some(exit) => Failure::Stop(Exit {
            code: exit,
            message: message.to_owned(),
            hint: hint.map(str::to_owned),
        }),
        None => Failure::Retry {
            reason: message.to_owned(),
            after: retry_after_ms.map(Duration::from_millis),
        },
    }
}

pub fn untrusted_certificate(url: &str) -> Exit {
    Exit::new(
        code::TLS,
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
        | ClientError::Trust(_) => Failure::Stop(Exit {
            code: code::CONFIG,
            message: error.to_string(),
            hint: error.hint(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_documented_exit_code() {
        let cases = [
            (ErrorCode::SecretMismatch, Some(3)),
            (ErrorCode::EnrollmentDisabled, Some(3)),
            (ErrorCode::NameInUse, Some(3)),
            (ErrorCode::TokenUnknown, Some(3)),
            (ErrorCode::TokenBoundElsewhere, Some(4)),
            (ErrorCode::UnknownIdentity, Some(4)),
            (ErrorCode::TokenRevoked, Some(5)),
            (ErrorCode::WorkerRevoked, Some(5)),
            (ErrorCode::TokenExpired, Some(6)),
            (ErrorCode::WorkerExpired, Some(6)),
            (ErrorCode::InvalidLabel, Some(2)),
            (ErrorCode::ServerBusy, None),
            (ErrorCode::RateLimited, None),
            (ErrorCode::Internal, None),
        ];
        for (error, expected) in cases {
            assert_eq!(exit_code_for(error), expected, "{error:?}");
        }
    }

    #[test]
    fn retry_keeps_the_servers_suggestion() {
        assert_eq!(
            from_api(ErrorCode::ServerBusy, "full", None, Some(3000)),
            Failure::Retry {
                reason: "full".into(),
                after: Some(Duration::from_secs(3))
            }
        );
    }
}

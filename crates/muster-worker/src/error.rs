//! Why a worker stops for good: what happened, as a type ([`Cause`]), and the one line and hint
//! the operator reads. The exit code a cause means is decided in [`crate::classify`], the one
//! place that knows the contract's exit codes.

use std::fmt;

use muster_proto::ErrorCode;
use muster_proto::control::CloseCode;

/// What stopped the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The configuration is wrong: flags, environment, the URL, the state dir.
    Config,
    /// The server refused to enroll or connect this worker, for good, with this error code.
    Refused(ErrorCode),
    /// The server closed the control channel, for good, with this close code.
    Closed(CloseCode),
    /// The server's TLS certificate is not trusted.
    UntrustedCertificate,
    /// The control channel closed and the worker was told not to reconnect.
    ChannelClosed,
}

/// A permanent failure of the worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct WorkerError {
    cause: Cause,
    message: String,
    hint: Option<String>,
}

impl WorkerError {
    pub fn new(cause: Cause, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            cause,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// An error whose hint may be missing (the server's refusals carry their own, or none).
    pub fn with_optional_hint(
        cause: Cause,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        Self {
            cause,
            message: message.into(),
            hint,
        }
    }

    pub fn config(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(Cause::Config, message, hint)
    }

    pub fn cause(&self) -> Cause {
        self.cause
    }

    /// What happened, in one line.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The process exit code this failure means (PRODUCT.md, "The worker").
    pub fn exit_code(&self) -> u8 {
        crate::classify::exit_code(self.cause)
    }
}

impl fmt::Display for WorkerError {
    /// `what happened; hint: the fix`, as one line for a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.hint {
            Some(hint) => write!(f, "{}; hint: {hint}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

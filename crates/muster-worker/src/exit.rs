//! How a worker ends: the exit codes of the contract, each with one line and a hint.

use std::fmt;

/// Exit codes (see PRODUCT.md, "The worker").
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
}

/// Why the worker stopped. Permanent failures carry the one line the operator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
}

impl Exit {
    pub fn new(code: u8, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn graceful() -> Self {
        Self {
            code: code::GRACEFUL,
            message: "stopped".into(),
            hint: None,
        }
    }

    pub fn config(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(code::CONFIG, message, hint)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.hint {
            Some(hint) => write!(f, "{}; hint: {hint}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

//! The wire format shared by the server, the worker, the admin client and the CLI.
//!
//! Only serde types and constants live here. Times are RFC 3339 strings in UTC; the server is
//! the one place that converts between these types and the domain's.

pub mod api;
pub mod confinement;
pub mod control;
pub mod error;
pub mod identity;
pub mod local;
pub mod words;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};

/// The control-channel protocol version. A worker sends it when it connects; the server refuses
/// versions it does not speak with a clear error instead of misreading messages.
pub const PROTOCOL_VERSION: u32 = 2;

/// The protocol of workers from before worker keys: accepted only for a worker that has no key
/// bound yet, so an un-upgraded worker keeps working until it upgrades (and binds one).
pub const LEGACY_PROTOCOL_VERSION: u32 = 1;

/// Headers a worker sends when it opens its control channel.
pub mod headers {
    pub const PROTOCOL: &str = "x-muster-protocol";
    pub const WORKER_ID: &str = "x-muster-worker-id";
    pub const MACHINE_ID: &str = "x-muster-machine-id";
    /// Labels as the worker is configured now, `k=v,k=v`.
    pub const LABELS: &str = "x-muster-labels";
    /// How many jobs the worker runs at once.
    pub const MAX_JOBS: &str = "x-muster-max-jobs";
    /// The worker's Ed25519 public key, base64url.
    pub const PUBLIC_KEY: &str = "x-muster-public-key";
    /// Its signature over the connection's proof (`muster_core::identity::Proof`), base64url.
    pub const PROOF: &str = "x-muster-proof";
    /// The ticket it presents (`SEQ.VALUE`), if it holds one.
    pub const TICKET: &str = "x-muster-ticket";
    /// A random value per worker process: tells the same process coming back from a copy.
    pub const PROCESS: &str = "x-muster-process";
    /// A server nonce (from `GET /api/v1/challenge`), where the connection has no TLS to bind to.
    pub const NONCE: &str = "x-muster-nonce";
}

/// Paths of the API.
pub mod paths {
    pub const ENROLL: &str = "/api/v1/enroll";
    pub const CONNECT: &str = "/api/v1/connect";
    pub const HEALTH: &str = "/api/v1/health";
    pub const CHALLENGE: &str = "/api/v1/challenge";
    pub const PREFLIGHT: &str = "/api/v1/preflight";
}

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
pub const PROTOCOL_VERSION: u32 = 1;

/// Headers a worker sends when it opens its control channel.
pub mod headers {
    pub const PROTOCOL: &str = "x-muster-protocol";
    pub const WORKER_ID: &str = "x-muster-worker-id";
    pub const MACHINE_ID: &str = "x-muster-machine-id";
    /// Labels as the worker is configured now, `k=v,k=v`.
    pub const LABELS: &str = "x-muster-labels";
    /// How many jobs the worker runs at once.
    pub const MAX_JOBS: &str = "x-muster-max-jobs";
}

/// Paths of the API.
pub mod paths {
    pub const ENROLL: &str = "/api/v1/enroll";
    pub const CONNECT: &str = "/api/v1/connect";
    pub const HEALTH: &str = "/api/v1/health";
}

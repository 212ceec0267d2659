//! Load tools for muster, built on muster's own protocol code.
//!
//! - [`swarm`]: thousands of simulated workers in one process. Each is a tokio task that enrolls
//!   with `muster_client::Client::enroll` (or uses a pre-created identity) and holds its control
//!   channel with `muster_worker::channel::{connect, run}` and the real backoff. What happens to
//!   each is written as JSON lines ([`events`]).
//! - [`floor`]: a bare tokio-tungstenite echo server with muster's buffer and TLS settings, the
//!   memory floor muster's server is compared with.
//! - [`fsync`]: the disk's ceiling for one-at-a-time durable SQLite transactions.
//! - [`bench`]: the benchmark that starts a real `muster serve` and runs every scenario.

pub mod addrs;
pub mod bench;
pub mod clock;
pub mod creds;
pub mod events;
pub mod floor;
pub mod fsync;
pub mod stats;
pub mod swarm;
pub mod sys;

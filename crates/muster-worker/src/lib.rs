//! The muster worker.
//!
//! [`run`] is `muster worker`. The pieces it is made of are public so that other programs (the
//! swarm load generator, tests) drive exactly the same protocol code: [`channel::connect`] and
//! [`channel::run`] for one control channel, [`maintain`] for the reconnect loop, and
//! [`backoff::Backoff`] for the delays.

pub mod backoff;
pub mod channel;
pub mod classify;
pub mod config;
pub mod confine;
pub mod doctor;
pub mod error;
pub mod failover;
pub mod identity;
pub mod jobs;
pub mod runner;
pub mod state_dir;

pub use config::WorkerConfig;
pub use error::{Cause, WorkerError};
pub use runner::{enroll, maintain, maintain_any, run};

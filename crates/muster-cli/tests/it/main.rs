//! Real-process integration tests: `muster serve`, `muster worker` and the admin commands run as
//! the binaries users run, in temp dirs, on free ports, with short heartbeats
//! (`--heartbeat 1s --idle-timeout 3s --reconnect-spread 1s`). See `harness` for the building
//! blocks, including the TCP proxy that breaks connections on demand.
//!
//! Run with `cargo test -p muster-cli --test it`. A failing test prints the stdout and stderr
//! of every process it started.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod backup;
mod cached_identity;
mod capacity;
mod confinement;
mod doctor;
pub mod enrollment;
mod fleet;
mod hostile;
mod http_api;
mod identity;
mod install;
mod job_refusals;
mod jobs;
mod json_output;
mod license;
mod lists;
mod operations;
mod paste;
mod precreated;
mod refusals;
mod replicas;
mod restarts;
mod scenarios;
mod server;
mod tls_failover;
mod tls_resumption;
mod tokens;
mod webhooks;

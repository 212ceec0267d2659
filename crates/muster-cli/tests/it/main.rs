//! Real-process integration tests: `muster serve`, `muster worker` and the admin commands run as
//! the binaries users run, in temp dirs, on free ports. See `harness` for the building blocks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod fleet;
mod http_api;
mod refusals;
mod scenarios;
mod server;
mod tokens;

//! A typed client for muster's REST API: the admin operations the CLI (and tests, and load tools)
//! use, and the enrollment call a worker makes (`api.rs`, the `http` feature, on by default).
//! Also where TLS trust is decided, for both, and how a followed job's output is split into lines.
//!
//! Without `http` (no reqwest, no HTTP stack) the crate is only `trust` and `lines`, which is
//! all the fuzz targets need: `fuzz/` builds them with the sanitizer, and every dependency it
//! does not pull in is one it does not compile.

#[cfg(feature = "http")]
mod api;
pub mod lines;
pub mod links;
pub mod local;
pub mod trust;

#[cfg(feature = "http")]
pub use api::*;
pub use trust::{Trust, TrustError};

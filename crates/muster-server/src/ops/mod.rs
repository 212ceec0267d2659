//! Operations that both the REST API and the web UI perform.
//!
//! Each one takes already-authenticated input (an [`Admin`](crate::api::extract::Admin) and the
//! wire request), validates it, applies it through the store's flows, cuts off whoever must be
//! cut off, and answers with the wire view or an [`AppError`](crate::api::error::AppError). The
//! API handlers and the UI pages are thin wrappers around these, so the two cannot drift apart:
//! the same rules, the same audit records, the same refusals.

pub mod enrollment;
pub mod jobs;
pub mod tokens;
pub mod workers;

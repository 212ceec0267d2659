//! Every admin action, and the worker's enrollment: the rules, the store flows, the audit
//! records and the cut-offs, written once.
//!
//! `ops` is the bottom of the request path. The front ends sit on top of it: `api` (REST) and
//! `ui` (web pages) authenticate the caller into an [`Actor`], parse the request, call one
//! function here, and render what it returns: the wire view, or an
//! [`AppError`](crate::error::AppError). So the two cannot drift apart: the same rules, the same
//! audit records, the same refusals. `ops` reaches only down: the state, the store, the
//! registry and the scheduler, plus [`crate::validate`] (input → domain) and [`crate::views`]
//! (domain → wire). It knows neither axum's extractors nor the UI.

pub mod audit;
pub mod cut;
pub mod enroll;
pub mod enrollment;
pub mod jobs;
pub mod license;
pub mod page;
pub mod paste;
pub mod tokens;
pub mod webhooks;
pub mod workers;

use std::net::SocketAddr;

/// Who asks for an admin action: the name the audit log records, and where the request came
/// from. The API makes one from the admin token, the UI from a signed-in session.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub remote: Option<SocketAddr>,
}

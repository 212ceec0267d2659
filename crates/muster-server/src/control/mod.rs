//! Live worker sessions: admitting a control channel, the registry of who is connected, and the
//! per-session loop that enforces heartbeats, expiry and revocation.
//!
//! Cutting a worker off never scans the fleet: whoever revokes looks the session up by worker id
//! in the [`registry::Registry`] and drops a command in its inbox; the session's own task wakes at
//! once and closes the socket. Expiry is a timer owned by each session.

pub mod admissions;
pub mod connect;
pub mod group;
pub mod lifecycle;
pub mod records;
pub mod registry;
pub mod session;

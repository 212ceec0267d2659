//! The multi-step procedures of the store, written once against [`crate::Tx`].
//!
//! Each flow runs inside one transaction: either everything it wrote is committed (and on disk)
//! together, or nothing is. Refusals are returned as values so that what must be recorded about
//! them (an audit record) is committed too; only a [`crate::StoreError`] rolls a flow back. The
//! exception is a machine's enrollment: its refusals come from unauthenticated callers, so the
//! flow returns them unrecorded and the server records them through its aggregator of refused
//! attempts (one record per kind and source per minute, not one per request).

pub mod audit;
pub mod enrollment;
pub mod group;
pub mod identity;
pub mod jobs;
pub mod license;
pub mod replicas;
pub mod retention;
pub mod sessions;
pub mod tokens;
pub mod webhooks;
pub mod workers;

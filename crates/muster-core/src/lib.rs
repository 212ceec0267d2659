//! The muster domain.
//!
//! Everything here is pure: no IO, no async, no serialization. The rules of the system live in
//! this crate and nowhere else — what a valid name is, which token transitions exist, how a
//! secret is checked, who may enroll — so that the store, the server and the CLI only *apply*
//! decisions made here.

pub mod audit;
pub mod credentials;
pub mod duration;
pub mod enrollment;
pub mod events;
pub mod identity;
pub mod job;
pub mod labels;
pub mod license;
pub mod name;
pub mod span;
pub mod text;
pub mod tickets;
pub mod time;
pub mod token;
pub mod worker;

pub use credentials::{ApiKey, KeyHash, MachineId, SecretHash, TokenSecret};
pub use duration::{format_duration, parse_duration};
pub use labels::Labels;
pub use name::Name;
pub use time::Timestamp;
pub use token::{Token, TokenState};
pub use worker::{EnrolledVia, Worker, WorkerId, WorkerStatus};

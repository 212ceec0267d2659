//! Job confinement: what keeps a job away from its worker's credentials, and what makes every
//! process a job starts end with it.
//!
//! Each job starts through the launcher ([`launcher`], `muster __job-exec`): a child subreaper
//! outside the sandbox that applies Landlock ([`sandbox`], with the rules [`plan`] computes) and
//! the job user to the command, waits, then ends every descendant ([`reaper`]). [`setup`] decides,
//! when a worker starts, how its jobs will run and whether Landlock works here.

pub mod launcher;
pub mod plan;
mod reaper;
pub mod sandbox;
pub mod service;
pub mod setup;
mod spec;

pub use service::LaunchService;
pub use setup::JobSetup;
pub use spec::{JobUser, LaunchSpec, Protection};

/// The hidden `muster` subcommand that runs the launcher.
pub const SUBCOMMAND: &str = "__job-exec";

/// How the worker names its own binary to start the launcher: unlike the path it was started
/// from, this still names the running binary after an upgrade replaced the file.
pub const SELF_EXE: &str = "/proc/self/exe";

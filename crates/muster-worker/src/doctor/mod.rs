//! `muster worker doctor`: the troubleshooting table run by itself. Each check is one function
//! that turns what it finds into a [`Finding`] (a verdict, what was found, and the fix); [`run`]
//! runs them in the order a person would look, against the configuration `muster worker` would
//! run with, through the worker's own code (its URL parsing and trust, its state dir, its
//! connection with proof of its key).
//!
//! The doctor changes nothing it does not have to: it never creates a state dir or a key, and
//! it checks the cached identity the one way the server answers that question, by opening the
//! control channel once and closing it at once (which the server records as a connection).

mod identity;
mod local;
mod server;

use std::time::Duration;

use serde::Serialize;

use crate::config::WorkerConfig;

/// What each check is about, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// The URL's scheme and host, and whether the scheme is the one the server speaks.
    Url,
    /// A TCP connection to the host and port, within a bound.
    Reachability,
    /// The server's certificate against the trust the worker was given.
    Tls,
    /// This machine's clock against the server's.
    Clock,
    /// The state dir's owner and permissions.
    StateDir,
    /// Whether the server knows the identity cached in the state dir.
    Identity,
    /// The server's edition and licence: may external workers join.
    License,
    /// Whether auto-enrollment is on, for a worker configured with the secret.
    AutoEnrollment,
}

impl Check {
    pub fn word(self) -> &'static str {
        match self {
            Check::Url => "url",
            Check::Reachability => "reachability",
            Check::Tls => "tls",
            Check::Clock => "clock",
            Check::StateDir => "state-dir",
            Check::Identity => "identity",
            Check::License => "license",
            Check::AutoEnrollment => "auto-enrollment",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// Works now, but deserves attention.
    Warn,
    /// The worker will not work until this is fixed.
    Fail,
    /// Not checked: not relevant to this configuration, or an earlier check failed.
    Skip,
}

impl Verdict {
    /// As printed for people: a failure stands out.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: Check,
    pub verdict: Verdict,
    /// What was found, in one line.
    pub detail: String,
    /// What to do about it, when there is something to do.
    pub fix: Option<String>,
}

impl Finding {
    fn new(check: Check, verdict: Verdict, detail: impl Into<String>) -> Self {
        Self {
            check,
            verdict,
            detail: detail.into(),
            fix: None,
        }
    }

    fn ok(check: Check, detail: impl Into<String>) -> Self {
        Self::new(check, Verdict::Ok, detail)
    }

    fn skip(check: Check, detail: impl Into<String>) -> Self {
        Self::new(check, Verdict::Skip, detail)
    }

    fn fail(check: Check, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(check, Verdict::Fail, detail).with_fix(fix)
    }

    fn warn(check: Check, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(check, Verdict::Warn, detail).with_fix(fix)
    }

    fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// The finding of a worker error: its message, and its hint as the fix.
    fn from_error(check: Check, verdict: Verdict, error: &crate::WorkerError) -> Self {
        Self {
            check,
            verdict,
            detail: error.message().to_owned(),
            fix: error.hint().map(str::to_owned),
        }
    }
}

/// How the doctor runs, besides the worker's configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Added to this machine's clock before it is compared with the server's (negative: behind).
    /// For tests, which cannot move the system clock; zero otherwise.
    pub clock_offset_ms: i64,
}

/// The bound on each network step (resolving, connecting, a handshake, a request).
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs every check against `config`, in order. Never fails: a problem is a finding.
pub async fn run(config: &WorkerConfig, options: Options) -> Vec<Finding> {
    let mut findings = Vec::new();
    let reached = server::check(config, options, &mut findings).await;
    let state = local::check_state_dir(config);
    findings.push(state.finding.clone());
    let identity = identity::check(config, &state, reached.as_ref()).await;
    let has_identity = identity.has_identity;
    findings.push(identity.finding);
    findings.push(server::license(reached.as_ref(), has_identity));
    findings.push(server::auto_enrollment(
        config,
        reached.as_ref(),
        has_identity,
    ));
    // The rows come out in the order of `Check`, whatever order they were found in.
    findings.sort_by_key(|f| f.check as u8);
    findings
}

/// Whether any check failed: `muster worker doctor` then exits non-zero.
pub fn failed(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.verdict == Verdict::Fail)
}

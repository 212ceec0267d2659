//! Why a command failed, as a type, and the one place that decides the process exit code for
//! each failure. Every failure reads as one line (`message()`) with a fix (`hint()`); `main`
//! prints them as `error: …; hint: …`.

use muster_client::ClientError;
use muster_client::local::DiscoverError;
use muster_proto::api::{JobEnding, JobState, JobView};
use muster_worker::WorkerError;

/// Exit codes of the admin commands (the worker has its own table, in `muster_worker`).
mod code {
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    /// `muster job run` stopped following its job on a second Ctrl-C (128 + SIGINT).
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug)]
pub enum CliError {
    /// The arguments are wrong; nothing was sent.
    Usage { message: String, hint: String },
    /// Something the command needs is missing or broken.
    Failed {
        message: String,
        hint: Option<String>,
    },
    /// The server could not be reached, or refused.
    Client(ClientError),
    /// No local server was found through the data dir.
    Discover(DiscoverError),
    /// `muster serve` stopped with an error.
    Serve {
        message: String,
        hint: Option<String>,
    },
    /// `muster worker` stopped for good.
    Worker(WorkerError),
    /// `muster job run`: the job ended, and not with success.
    JobEnded(Box<JobView>),
    /// `muster job run`: a second Ctrl-C left the job running.
    StoppedFollowing { job: String },
}

/// What `muster job run` exits with once its job has ended, decided from the job's typed ending
/// (and, from a server that sends none, its state) — never from the words of its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobExit {
    Success,
    /// The command exited with this code: passed on silently, as `ssh` does.
    Command(u8),
    /// muster ended the job or it never ran: this code, and a line saying why.
    Muster(u8),
    /// The server did not say how it ended: exit 1 with a line saying so.
    Unclassified,
}

impl JobExit {
    /// 124 timed out, 125 never started (no worker in time), 127 could not be started,
    /// 130 cancelled, 128+N killed by signal N, 255 lost (its worker went away).
    pub fn of(job: &JobView) -> JobExit {
        match job.ending {
            Some(JobEnding::Exited { code: 0 }) => JobExit::Success,
            Some(JobEnding::Exited { code }) => {
                JobExit::Command(u8::try_from(code.rem_euclid(256)).unwrap_or(1).max(1))
            }
            Some(JobEnding::Signalled { signal }) => {
                JobExit::Muster(u8::try_from(128 + i64::from(signal)).unwrap_or(255))
            }
            Some(JobEnding::TimedOut) => JobExit::Muster(124),
            Some(JobEnding::NoWorker) => JobExit::Muster(125),
            Some(JobEnding::SpawnFailed) => JobExit::Muster(127),
            Some(JobEnding::Cancelled) => JobExit::Muster(130),
            Some(JobEnding::Lost) => JobExit::Muster(255),
            // An older server sends no ending, a newer one may send one we do not know: the
            // state still tells the endings that need nothing more.
            None | Some(JobEnding::Unknown) => match job.state {
                JobState::Succeeded => JobExit::Success,
                JobState::Cancelled => JobExit::Muster(130),
                JobState::Lost => JobExit::Muster(255),
                JobState::Queued | JobState::Running | JobState::Failed | JobState::Unknown => {
                    JobExit::Unclassified
                }
            },
        }
    }

    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            JobExit::Success => 0,
            JobExit::Command(code) | JobExit::Muster(code) => code,
            JobExit::Unclassified => code::FAILED,
        }
    }
}

impl CliError {
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError::Usage {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn failed(message: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError::Failed {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// What happened, in one line; `None` for a failure that is passed on silently (a job's
    /// command exiting non-zero).
    pub fn message(&self) -> Option<String> {
        Some(match self {
            CliError::Usage { message, .. }
            | CliError::Failed { message, .. }
            | CliError::Serve { message, .. } => message.clone(),
            CliError::Client(error) => error.to_string(),
            CliError::Discover(error) => error.to_string(),
            CliError::Worker(error) => error.message().to_owned(),
            CliError::JobEnded(job) => match JobExit::of(job) {
                JobExit::Success | JobExit::Command(_) => return None,
                JobExit::Muster(_) => format!(
                    "job {} {}: {}",
                    job.id,
                    job.state,
                    job.reason.as_deref().unwrap_or("no reason given")
                ),
                JobExit::Unclassified => {
                    format!("job {} ended in state `{}`", job.id, job.state)
                }
            },
            CliError::StoppedFollowing { job } => {
                format!("stopped following job {job}; it may still be running")
            }
        })
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            CliError::Usage { hint, .. } => Some(hint.clone()),
            CliError::Failed { hint, .. } | CliError::Serve { hint, .. } => hint.clone(),
            CliError::Client(error) => error.hint(),
            CliError::Discover(error) => Some(error.hint()),
            CliError::Worker(error) => error.hint().map(str::to_owned),
            CliError::JobEnded(job) => match JobExit::of(job) {
                JobExit::Unclassified => Some("`muster job show` has the details".into()),
                _ => Some(format!("`muster job show {}` has the details", job.id)),
            },
            CliError::StoppedFollowing { job } => Some(format!(
                "`muster job logs --follow {job}` picks it up again"
            )),
        }
    }

    /// The process exit code: the one place it is decided.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage { .. } => code::USAGE,
            CliError::Client(ClientError::BadUrl(_) | ClientError::Trust(_)) => code::USAGE,
            CliError::Client(_)
            | CliError::Failed { .. }
            | CliError::Discover(_)
            | CliError::Serve { .. } => code::FAILED,
            CliError::Worker(error) => error.exit_code(),
            CliError::JobEnded(job) => JobExit::of(job).code(),
            CliError::StoppedFollowing { .. } => code::INTERRUPTED,
        }
    }

    /// What kind of failure this is, for the JSON error object: the server's own code when it
    /// refused, or one of the CLI's.
    pub fn code(&self) -> Code {
        use ClientError as C;
        match self {
            CliError::Client(C::Api { detail, .. }) => Code::Server(detail.code),
            CliError::Client(C::Unreachable { .. }) => Code::Cli(LocalCode::Unreachable),
            CliError::Client(C::UntrustedCertificate { .. } | C::Trust(_)) => {
                Code::Cli(LocalCode::UntrustedCertificate)
            }
            CliError::Client(C::PlainHttpToHttps { .. } | C::NotTls { .. } | C::BadUrl(_)) => {
                Code::Cli(LocalCode::BadUrl)
            }
            CliError::Client(C::Protocol(_)) => Code::Cli(LocalCode::Protocol),
            CliError::Usage { .. } => Code::Cli(LocalCode::Usage),
            CliError::Failed { .. } | CliError::Serve { .. } | CliError::Worker(_) => {
                Code::Cli(LocalCode::Failed)
            }
            CliError::Discover(_) => Code::Cli(LocalCode::NoLocalServer),
            CliError::JobEnded(_) => Code::Cli(LocalCode::JobFailed),
            CliError::StoppedFollowing { .. } => Code::Cli(LocalCode::StoppedFollowing),
        }
    }

    /// The failure as scripts read it with `--json`, on stdout: `{"error": {"code", "message",
    /// "hint"}}`, the shape of the API's error body. `None` when it is passed on silently, or
    /// when the command already printed what it is about (`job run --json` prints the job as
    /// it ended, which says how).
    pub fn json(&self) -> Option<serde_json::Value> {
        if matches!(self, CliError::JobEnded(_)) {
            return None;
        }
        let message = self.message()?;
        let mut detail = serde_json::json!({ "code": self.code(), "message": message });
        if let Some(hint) = self.hint() {
            detail["hint"] = hint.into();
        }
        Some(serde_json::json!({ "error": detail }))
    }
}

/// The `code` of a JSON error: the server's, or the CLI's for what failed before or without an
/// answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Code {
    Server(muster_proto::ErrorCode),
    Cli(LocalCode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalCode {
    /// The command line is wrong; nothing was sent.
    Usage,
    /// The server did not answer.
    Unreachable,
    /// The server's certificate is not trusted (or the trust flags are malformed).
    UntrustedCertificate,
    /// The URL is malformed or names the wrong scheme.
    BadUrl,
    /// The server answered something this CLI does not understand.
    Protocol,
    /// No local server was found through the data dir.
    NoLocalServer,
    /// Something the command needs is missing or broken.
    Failed,
    /// The job ended, and not with success.
    JobFailed,
    /// A second Ctrl-C left the job running.
    StoppedFollowing,
}

impl From<ClientError> for CliError {
    fn from(error: ClientError) -> Self {
        CliError::Client(error)
    }
}

impl From<DiscoverError> for CliError {
    fn from(error: DiscoverError) -> Self {
        CliError::Discover(error)
    }
}

impl From<WorkerError> for CliError {
    fn from(error: WorkerError) -> Self {
        CliError::Worker(error)
    }
}

/// `error: what happened; hint: the fix` — one line, so it reads well in a journal.
pub fn line(message: &str, hint: Option<&str>) -> String {
    match hint {
        Some(hint) => format!("error: {message}; hint: {hint}"),
        None => format!("error: {message}"),
    }
}

#[cfg(test)]
mod tests;

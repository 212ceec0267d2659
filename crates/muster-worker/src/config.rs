//! What `muster worker` is told, before any of it is checked.

use std::fmt;
use std::path::PathBuf;

/// Raw worker configuration, as flags and environment variables give it. [`crate::run`] checks
/// all of it before making any network call.
#[derive(Clone, Default)]
pub struct WorkerConfig {
    pub url: Option<String>,
    pub name: Option<String>,
    pub token: Option<String>,
    pub enrollment_key: Option<String>,
    pub worker_id: Option<String>,
    pub api_key: Option<String>,
    pub state_dir: PathBuf,
    /// `key=value` labels, each already split (from repeated `--label` or the env list).
    pub labels: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub ca_fingerprint: Option<String>,
    pub reconnect: bool,
    /// Jobs run at once; `None` means the CPU count.
    pub max_jobs: Option<u32>,
    /// A plain `http://` URL to another host is allowed (credentials in clear text).
    pub allow_plaintext: bool,
    /// Run jobs as this user (the worker must run as root).
    pub job_user: Option<String>,
    /// Paths jobs may write besides their own directory, `/tmp` and `/dev`.
    pub job_writable: Vec<PathBuf>,
}

impl fmt::Debug for WorkerConfig {
    /// Secrets are never printed, not even in debug logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("WorkerConfig")
            .field("url", &self.url)
            .field("name", &self.name)
            .field("token", &redact(&self.token))
            .field("enrollment_key", &redact(&self.enrollment_key))
            .field("worker_id", &self.worker_id)
            .field("api_key", &redact(&self.api_key))
            .field("state_dir", &self.state_dir)
            .field("labels", &self.labels)
            .field("ca_file", &self.ca_file)
            .field("ca_fingerprint", &self.ca_fingerprint)
            .field("reconnect", &self.reconnect)
            .field("max_jobs", &self.max_jobs)
            .field("allow_plaintext", &self.allow_plaintext)
            .field("job_user", &self.job_user)
            .field("job_writable", &self.job_writable)
            .finish()
    }
}

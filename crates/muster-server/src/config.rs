//! How `muster serve` is configured. Built by the CLI from flags and env vars.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum TlsMode {
    /// Generate (first start) or reuse a self-signed certificate in the data dir.
    SelfSigned,
    /// Certificate chain and private key from PEM files.
    Files { cert: PathBuf, key: PathBuf },
    /// Plain HTTP (`--no-tls`).
    Disabled,
}

#[derive(Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    /// `host:port`; port 0 picks a free port (the chosen address is written to the data dir).
    pub listen: String,
    pub tls: TlsMode,
    /// Allows `--no-tls` on a non-loopback address (a TLS proxy sits in front).
    pub allow_plaintext: bool,
    /// `None` means the embedded SQLite database in the data dir.
    pub database_url: Option<String>,
    pub builtin_worker: bool,
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    /// How long a graceful shutdown may take before connections are dropped.
    pub shutdown_grace: Duration,
    /// Workers told to come back after a graceful shutdown spread their return over this long.
    pub reconnect_spread: Duration,
    /// Output kept per job; more is streamed live but not stored.
    pub job_output_cap: u64,
    /// How long a running job waits for its worker to come back before it ends `lost`.
    pub job_grace: Duration,
    /// Audit records older than this are deleted.
    pub audit_retention: Duration,
    /// Jobs that ended longer ago than this are deleted, with their output.
    pub job_retention: Duration,
    /// Files of license issuer public keys trusted besides muster's own.
    pub license_issuer_keys: Vec<PathBuf>,
    /// Where `/livez`, `/readyz` and `/metrics` are served.
    pub diag_listen: crate::diag::DiagListen,
    /// The wait after a webhook delivery's first failed attempt; it doubles from there.
    pub webhook_first_retry: Duration,
    /// `--public-url`: the URL others reach this server by (a load balancer, a host name), for
    /// every command line the server prints. `None`: the address the admin reached it at.
    pub public_url: Option<String>,
}

/// A year of audit records: long enough to answer "who did this, and when" at the next yearly
/// review.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(365 * 24 * 3600);
/// A month of ended jobs and their output.
pub const DEFAULT_JOB_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Written by hand so that a PostgreSQL password in `database_url` never reaches a log.
impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let database = self.database_url.as_deref().map(|url| {
            if url.starts_with("sqlite:") {
                url
            } else {
                "<postgres URL, redacted>"
            }
        });
        f.debug_struct("ServeConfig")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("tls", &self.tls)
            .field("allow_plaintext", &self.allow_plaintext)
            .field("database_url", &database)
            .field("builtin_worker", &self.builtin_worker)
            .field("heartbeat", &self.heartbeat)
            .field("idle_timeout", &self.idle_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("reconnect_spread", &self.reconnect_spread)
            .field("job_output_cap", &self.job_output_cap)
            .field("job_grace", &self.job_grace)
            .field("audit_retention", &self.audit_retention)
            .field("job_retention", &self.job_retention)
            .field("license_issuer_keys", &self.license_issuer_keys)
            .field("diag_listen", &self.diag_listen)
            .field("webhook_first_retry", &self.webhook_first_retry)
            .field("public_url", &self.public_url)
            .finish()
    }
}

impl ServeConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            listen: "127.0.0.1:7443".into(),
            tls: TlsMode::SelfSigned,
            allow_plaintext: false,
            database_url: None,
            builtin_worker: true,
            heartbeat: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(10),
            reconnect_spread: Duration::from_secs(10),
            job_output_cap: crate::jobs::DEFAULT_OUTPUT_CAP,
            job_grace: crate::jobs::DEFAULT_JOB_GRACE,
            audit_retention: DEFAULT_AUDIT_RETENTION,
            job_retention: DEFAULT_JOB_RETENTION,
            license_issuer_keys: Vec::new(),
            diag_listen: crate::diag::DiagListen::Default,
            webhook_first_retry: muster_core::events::FIRST_RETRY,
            public_url: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_a_database_password() {
        let mut config = ServeConfig::new(PathBuf::from("/tmp/x"));
        config.database_url = Some("postgres://muster:s3cret@db/fleet".into());
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}

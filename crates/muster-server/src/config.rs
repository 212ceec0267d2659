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

#[derive(Debug, Clone)]
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
        }
    }
}

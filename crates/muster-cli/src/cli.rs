//! The command line, declared once: every flag with its environment variable. (Over 400 lines:
//! every command and flag of `muster`, each with its help; that is what "declared once" costs.)

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "muster",
    version = crate::VERSION,
    about = "A control plane for worker fleets",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log lines on stderr look: `text` for people, `json` (one object per line) for log
    /// collectors. `MUSTER_LOG` sets which lines are logged.
    #[arg(
        long,
        env = "MUSTER_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Run a worker: enroll (once), then keep a live control channel to the server.
    Worker(WorkerCli),
    /// Mint, list, show and revoke enrollment tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The fleet: list, show, create, revoke and remove workers.
    #[command(subcommand)]
    Workers(WorkersCommand),
    /// Run commands on workers: run, list, show, logs, cancel.
    #[command(subcommand)]
    Job(JobCommand),
    /// Auto-enrollment with a shared secret: status, enable, disable, rotate.
    #[command(subcommand)]
    Enrollment(EnrollmentCommand),
    /// The audit log: who did what, when, from where.
    Audit(AuditArgs),
    /// Write a backup of the server (database, certificate, credentials) into one archive.
    Backup(BackupArgs),
    /// Unpack a backup into a new data dir that `muster serve --data-dir DIR` starts on.
    Restore(RestoreArgs),
    /// Print shell completions (`muster completions bash > /etc/bash_completion.d/muster`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (`muster.1`, `muster-serve.1`, ...) into a directory.
    Man {
        /// The directory to write them in (created if needed).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// The job launcher: the worker starts it for every job (internal, not for people).
    #[command(name = muster_worker::confine::SUBCOMMAND, hide = true)]
    JobExec(JobExecArgs),
    /// Editions and licenses: show, install, trial, remove.
    #[command(subcommand)]
    License(LicenseCommand),
    /// Webhooks: every event POSTed, signed, to a URL: add, list, remove, test, deliveries.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Send events to URL (`https://`, or `http://` to a receiver on this host).
    Add {
        /// The receiver's URL.
        #[arg(value_name = "URL")]
        receiver: String,
        /// Send only this event type (repeatable; default: every event).
        #[arg(long = "event", value_name = "TYPE")]
        events: Vec<String>,
        /// The file holding the secret that signs each request (`Muster-Signature`); `-` reads
        /// standard input.
        #[arg(long, value_name = "FILE")]
        secret_file: PathBuf,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The webhooks, with the events they get.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove a webhook and its delivery log.
    Remove {
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Send a `webhook.test` event now, and show what the receiver answered.
    Test {
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// A webhook's delivery log, newest first.
    Deliveries {
        id: String,
        /// Show at most this many (at most 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The archive to write, owner-only (an existing file is replaced once the new one is
    /// complete).
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// The data dir of the server to back up.
    #[arg(long, env = "MUSTER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print what was archived as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive `muster backup` wrote.
    #[arg(value_name = "FILE")]
    pub archive: PathBuf,
    /// The new data dir: it must not exist, or be empty.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// For a backup of a server on PostgreSQL: the database, already restored with
    /// `pg_restore`, whose workers are then recognised by their keys.
    #[arg(long = "database", env = "MUSTER_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
}

#[derive(Debug, Args)]
pub struct JobExecArgs {
    /// Confine this process as a job would be and print the result.
    #[arg(long)]
    pub probe: bool,
    /// Serve the worker as its launch service: fork a launcher per job it sends.
    #[arg(long, conflicts_with = "probe")]
    pub serve: bool,
}

#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// The edition, the license in force, its seats and expiry.
    Show {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Verify a license and install it, at once on every replica.
    Install {
        /// The license file; `-` reads standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Start the 30-day trial, without a worker limit (once per fleet).
    Trial {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove the license (or end the trial): workers that joined stay, new ones are refused.
    Remove {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Run a command on a worker, stream its output, and exit with its exit code (with `--json`,
    /// print the job as it ended with its output as lines).
    Run {
        /// Run on this worker.
        #[arg(long, conflicts_with = "labels")]
        worker: Option<String>,
        /// Run on a worker with this label (repeatable: all must match).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Kill the command after this long.
        #[arg(long)]
        timeout: Option<String>,
        /// Give up if no matching worker has a free slot within this long (default 10m).
        #[arg(long)]
        queue_timeout: Option<String>,
        /// An environment variable for the command (repeatable).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Print the job and return at once instead of waiting.
        #[arg(long)]
        detach: bool,
        /// The command and its arguments, after `--`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "COMMAND"
        )]
        command: Vec<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List recent jobs, newest first.
    List {
        /// Only jobs in this state.
        #[arg(long)]
        state: Option<String>,
        /// Only jobs that ran on this worker.
        #[arg(long)]
        worker: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show one job.
    Show {
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print a job's output (stdout to stdout, stderr to stderr; with `--json`, one JSON object
    /// a line: each line of output with its stream and time, then the job's end).
    Logs {
        id: String,
        /// Keep printing until the job ends.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Cancel a queued or running job (its whole process group is killed).
    Cancel {
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Args, Clone)]
pub struct SecretArgs {
    /// Generate a random secret and print it, this once.
    #[arg(long, conflicts_with = "secret_file")]
    pub generate: bool,
    /// Read the secret (at least 32 characters) from this file; `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum EnrollmentCommand {
    /// Whether auto-enrollment is on, when the secret was set, how many workers used it.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Switch auto-enrollment on, setting the secret (or keeping the current one).
    Enable {
        #[command(flatten)]
        secret: SecretArgs,
        /// Switch it off by itself after this long (`2h`).
        #[arg(long = "for", value_name = "DURATION")]
        window: Option<String>,
        /// Switch it off by itself after this many enrollments.
        #[arg(long)]
        max_enrollments: Option<u64>,
        /// Only names matching this pattern may enroll (`ingest-*`).
        #[arg(long)]
        name_pattern: Option<String>,
        /// Names you expect (`ingest-*`): others still enroll, and their `worker.enrolled`
        /// event says `"expected": false`, so an unfamiliar worker can raise an alert.
        #[arg(long, value_name = "PATTERN")]
        expect: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Block new enrollments now; enrolled workers keep working.
    Disable {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Replace the secret; enrolled workers keep working, new ones need the new secret.
    Rotate {
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the server keeps its database, certificate and admin credential.
    #[arg(long, env = "MUSTER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "MUSTER_LISTEN", default_value = "127.0.0.1:7443")]
    pub listen: String,
    /// The URL workers and admins on other machines reach this server by (a host name, a load
    /// balancer), e.g. `https://muster.example.com:7443`: every command line the server prints
    /// for pasting elsewhere names it.
    #[arg(long, env = "MUSTER_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// TLS certificate chain (PEM). Without it a self-signed certificate is made in the data dir.
    #[arg(long, env = "MUSTER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "MUSTER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP (loopback only, unless --allow-plaintext).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub no_tls: bool,
    /// Allow --no-tls on a non-loopback address: a TLS proxy sits in front.
    #[arg(long, requires = "no_tls")]
    pub allow_plaintext: bool,
    /// Database URL; the default is the embedded SQLite database in the data dir.
    #[arg(long = "database", env = "MUSTER_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Do not run the built-in worker.
    #[arg(long, env = "MUSTER_NO_BUILTIN_WORKER")]
    pub no_builtin_worker: bool,
    /// Where `/livez`, `/readyz` and `/metrics` are served (plain HTTP, no authentication), or
    /// `off` [default: 127.0.0.1:7444, skipped with a warning when another server holds it].
    #[arg(long, env = "MUSTER_DIAG_LISTEN", value_name = "ADDR|off")]
    pub diag_listen: Option<String>,
    /// How often a quiet control channel is pinged.
    #[arg(long, default_value = "5s", value_parser = parse_duration, hide = true)]
    pub heartbeat: std::time::Duration,
    /// After this long without a frame, a worker is considered gone.
    #[arg(long, default_value = "15s", value_parser = parse_duration, hide = true)]
    pub idle_timeout: std::time::Duration,
    /// Workers told to come back after a graceful shutdown spread over this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration, hide = true)]
    pub reconnect_spread: std::time::Duration,
    /// How long a running job waits for its worker to come back (after a dropped connection, a
    /// server restart or a replica's death) before it ends `lost`. The worker keeps running it
    /// meanwhile and reports it when it reconnects.
    #[arg(long, env = "MUSTER_JOB_GRACE", default_value = "2m", value_parser = parse_duration)]
    pub job_grace: std::time::Duration,
    /// The wait after a webhook delivery's first failed attempt (it doubles from there, up to
    /// an hour); shorter only for tests.
    #[arg(long, env = "MUSTER_WEBHOOK_FIRST_RETRY", default_value = "10s", value_parser = parse_duration, hide = true)]
    pub webhook_first_retry: std::time::Duration,
    /// Delete audit records older than this (checked at start and hourly).
    #[arg(long, env = "MUSTER_AUDIT_RETENTION", default_value = "365d", value_parser = parse_duration)]
    pub audit_retention: std::time::Duration,
    /// Delete jobs that ended longer ago than this, with their output (checked at start and
    /// hourly).
    #[arg(long, env = "MUSTER_JOB_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub job_retention: std::time::Duration,
    /// Also trust the license issuer keys in this file (`k4.public.…`, one per line; repeatable,
    /// the env var takes a comma-separated list). muster's own key is always trusted.
    #[arg(
        long = "license-issuer-key",
        env = "MUSTER_LICENSE_ISSUER_KEY",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub license_issuer_keys: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WorkerCli {
    #[command(subcommand)]
    pub action: Option<WorkerAction>,
    #[command(flatten)]
    pub args: WorkerArgs,
}

#[derive(Debug, Subcommand)]
pub enum WorkerAction {
    /// Check this worker's configuration against its server, one line per check with a verdict
    /// and the fix: the URL, reachability, TLS trust, the clock, the state dir, the cached
    /// identity, the edition and licence, auto-enrollment. Exits 1 when a check fails.
    Doctor(Box<DoctorArgs>),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Print a JSON array of `{check, verdict, detail, fix}` instead of the table.
    #[arg(long)]
    pub json: bool,
    /// For tests only: pretend this machine's clock is off by this many seconds (negative:
    /// behind), since a test cannot move the system clock. Changes nothing but the clock row.
    #[arg(
        long,
        hide = true,
        value_name = "SECONDS",
        allow_negative_numbers = true,
        default_value_t = 0.0
    )]
    pub clock_offset: f64,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The server's base URL (`https://host:port`); several, comma-separated, for replicas: the
    /// worker fails over between them.
    #[arg(long, env = "MUSTER_URL")]
    pub url: Option<String>,
    /// This worker's unique name (needed with the auto-enrollment secret).
    #[arg(long, env = "MUSTER_WORKER_NAME")]
    pub name: Option<String>,
    /// An enrollment token, `NAME.SECRET`.
    #[arg(long, env = "MUSTER_ENROLLMENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The auto-enrollment secret.
    #[arg(long, env = "MUSTER_AUTO_ENROLLMENT_KEY", hide_env_values = true)]
    pub enrollment_key: Option<String>,
    /// A pre-created worker's id.
    #[arg(long, env = "MUSTER_WORKER_ID")]
    pub worker_id: Option<String>,
    /// A pre-created worker's API key.
    #[arg(long, env = "MUSTER_WORKER_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Where the worker keeps its machine id, cached identity and job workspaces.
    #[arg(long, env = "MUSTER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// A label used to place jobs (repeatable; the env var takes `k=v,k=v`).
    #[arg(
        long = "label",
        value_name = "KEY=VALUE",
        env = "MUSTER_WORKER_LABELS",
        value_delimiter = ','
    )]
    pub labels: Vec<String>,
    /// Trust the CA certificate(s) in this PEM file.
    #[arg(long, env = "MUSTER_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Trust exactly the server certificate with this fingerprint (`sha256:…`).
    #[arg(long, env = "MUSTER_CA_FINGERPRINT")]
    pub ca_fingerprint: Option<String>,
    /// Exit when the control channel closes instead of reconnecting.
    #[arg(long)]
    pub no_reconnect: bool,
    /// Jobs to run at once (default: the number of CPUs).
    #[arg(long, env = "MUSTER_MAX_JOBS")]
    pub max_jobs: Option<u32>,
    /// Allow a plain `http://` URL to a server on another host: the worker's credentials then
    /// cross the network in clear text (only where a trusted network or a TLS proxy makes that
    /// safe).
    #[arg(long, env = "MUSTER_ALLOW_PLAINTEXT")]
    pub allow_plaintext: bool,
    /// Run jobs as this user (the worker must run as root).
    #[arg(long, env = "MUSTER_JOB_USER")]
    pub job_user: Option<String>,
    /// A path jobs may write besides their own directory, /tmp and /dev (repeatable; the env
    /// var takes `PATH,PATH`).
    #[arg(
        long = "job-writable",
        value_name = "PATH",
        env = "MUSTER_JOB_WRITABLE",
        value_delimiter = ','
    )]
    pub job_writable: Vec<PathBuf>,
}

/// Whether `--json` was given to the command (or to one of its subcommands).
pub fn json_requested(matches: &clap::ArgMatches) -> bool {
    matches
        .try_get_one::<bool>("json")
        .ok()
        .flatten()
        .copied()
        .unwrap_or(false)
        || matches
            .subcommand()
            .is_some_and(|(_, sub)| json_requested(sub))
}

/// The default state dir of a worker: `$XDG_DATA_HOME/muster-worker`.
pub fn default_state_dir() -> PathBuf {
    dirs::data_local_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("muster-worker")
}

pub fn parse_duration(input: &str) -> Result<std::time::Duration, String> {
    muster_core::parse_duration(input).map_err(|e| e.to_string())
}

/// How admin commands reach the server: the local data dir by default, or a URL and token.
#[derive(Debug, Args, Clone)]
pub struct AdminArgs {
    /// The data dir of the local server (used when --url is not given).
    #[arg(long, env = "MUSTER_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The server's base URL, for a server on another machine.
    #[arg(long, env = "MUSTER_URL", global = true)]
    pub url: Option<String>,
    /// The admin credential (with --url).
    #[arg(
        long,
        env = "MUSTER_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub admin_token: Option<String>,
    /// Trust the CA certificate(s) in this PEM file.
    #[arg(long, env = "MUSTER_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Trust exactly the certificate with this fingerprint (`sha256:…`).
    #[arg(long, env = "MUSTER_CA_FINGERPRINT", global = true)]
    pub ca_fingerprint: Option<String>,
    /// Print JSON on stdout instead of a table; a failure too, as `{"error": {"code",
    /// "message", "hint"}}` (with the same exit code).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token and print it (this once).
    Create {
        name: String,
        /// Lifetime from now: 30m, 24h, 7d, 1h30m.
        #[arg(long)]
        duration: String,
        /// A label the enrolled worker gets (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List tokens with their effective state, oldest first (every page).
    List {
        /// Only tokens in this effective state: unused, enrolled, expired, revoked.
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        shape: ListShape,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show one token.
    Show {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke a token: its worker is cut off at once.
    Revoke {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// How a list is printed, beside `--json`.
#[derive(Debug, Clone, Args)]
pub struct ListShape {
    /// Print only the names, one a line (for `xargs` and loops).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Print the table without its header line.
    #[arg(long)]
    pub no_headers: bool,
}

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// List the fleet, in name order unless `--sort` says otherwise (every page; the server
    /// sends at most 5,000 at a time).
    List {
        /// Only workers with this status: connected, disconnected, revoked, expired, suspended.
        #[arg(long)]
        status: Option<String>,
        /// Only workers carrying this label: `key` (any value) or `key=value`; repeat for all of
        /// several.
        #[arg(long = "label", value_name = "KEY[=VALUE]")]
        labels: Vec<String>,
        /// Only workers whose name contains this text.
        #[arg(long)]
        name: Option<String>,
        /// The order: `name`, `created` or `last_seen`; a leading `-` sorts descending (newest
        /// or most recently seen first: `--sort=-last_seen`).
        #[arg(long, value_name = "[-]COLUMN", allow_hyphen_values = true)]
        sort: Option<String>,
        #[command(flatten)]
        shape: ListShape,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show one worker.
    Show {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Create a worker by hand and print its id and API key (this once).
    Create {
        name: String,
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke a worker: it is cut off at once and stays out.
    Revoke {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Delete a worker that is not connected.
    Remove {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// How many records, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Only actions starting with this, like `token.` or `enroll.`.
    #[arg(long)]
    pub action: Option<String>,
    /// Only records mentioning this text.
    #[arg(long)]
    pub search: Option<String>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// The default data dir of the server: `$XDG_DATA_HOME/muster` (`~/.local/share/muster`).
pub fn default_data_dir() -> PathBuf {
    dirs::data_local_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("muster")
}

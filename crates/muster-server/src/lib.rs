//! The muster server.
//!
//! [`router`] builds the HTTP application (testable without a socket): the REST API under
//! `/api/v1/` and the web UI at `/`. [`run`] is `muster serve`: it opens the data dir and the
//! store, sets up TLS, the admin credential and the web UI account, listens, and runs until
//! `shutdown` resolves, then winds down gracefully.

pub mod api;
pub mod builtin;
pub mod clock;
pub mod config;
pub mod control;
pub mod datadir;
pub mod error;
pub mod events;
pub mod jobs;
pub mod lean_tls;
pub mod listener;
pub mod ops;
pub mod ratelimit;
pub mod secrets;
pub mod state;
pub mod tls;
pub mod ui;
pub mod validate;
pub mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use muster_core::SecretHash;
use muster_proto::control::{ServerMessage, close};
use muster_proto::local::ServerFile;
use muster_store::Store;
use rand::Rng;

pub use config::{ServeConfig, TlsMode};

use crate::clock::Clock;
use crate::control::registry::{Command, Registry};
use crate::datadir::DataDir;
use crate::state::{AppState, Inner};

/// The whole HTTP application: the API under `/api/v1/`, the web UI everywhere else.
pub fn router(app: AppState, ui: Arc<ui::UiState>) -> Router {
    Router::new()
        .nest("/api/v1", api::routes().with_state(app.clone()))
        .merge(ui::routes().with_state(ui::UiApp::new(app, ui)))
}

/// How often connected workers' last-seen times are written to the store.
const LAST_SEEN_FLUSH: Duration = Duration::from_secs(60);

/// What `run` reports once it is listening (for tests and the CLI's banner).
#[derive(Debug, Clone)]
pub struct Started {
    pub url: String,
    pub local_addr: SocketAddr,
    pub tls_fingerprint: Option<String>,
    pub cert_file: Option<String>,
    pub admin_token_file: String,
    /// The web UI's user name and the file holding its password.
    pub ui_user: String,
    pub admin_password_file: String,
    /// Whether this start generated the web UI password (first start).
    pub generated_password: bool,
    pub generated_cert: bool,
}

/// Runs the server until `shutdown` resolves. `on_started` is called once it listens.
pub async fn run(
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
    on_started: impl FnOnce(&Started),
) -> anyhow::Result<()> {
    listener::raise_fd_limit();
    let listen_host = config
        .listen
        .rsplit_once(':')
        .map(|(h, _)| h.to_owned())
        .unwrap_or_default();
    let bind_addrs: Vec<SocketAddr> = tokio::net::lookup_host(&config.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot resolve listen address `{}`: {e}\nhint: use host:port, like 127.0.0.1:7443",
                config.listen
            )
        })?
        .collect();
    if matches!(config.tls, TlsMode::Disabled)
        && !config.allow_plaintext
        && bind_addrs.iter().any(|a| !a.ip().is_loopback())
    {
        bail!(
            "refusing to serve plain HTTP on `{}`, which is not a loopback address\nhint: drop `--no-tls`, or add `--allow-plaintext` if a TLS proxy sits in front",
            config.listen
        );
    }

    let dir = DataDir::open(&config.data_dir).map_err(|e| match e {
        muster_fs::FsError::Locked { path, holder } => anyhow::anyhow!(
            "data dir `{}` is in use by another muster server (pid {holder})\nhint: stop it first, or give this one its own `--data-dir`",
            path.display()
        ),
        other => anyhow::anyhow!("cannot use the data dir: {other}\nhint: check the path and permissions of `--data-dir`"),
    })?;
    // Bind before writing anything else, so a busy port leaves no half-made data dir behind.
    let listener = listener::bind(&bind_addrs).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on `{}`: {e}\nhint: another program may hold the port; choose another with `--listen`",
            config.listen
        )
    })?;
    let store = open_store(&config, &dir)?;
    let admin_token = ensure_admin_token(&dir)?;
    let (account, account_change) =
        ui::account::bootstrap(&store, &dir.admin_password_path(), Clock::system().now()).await?;

    let tls = match &config.tls {
        TlsMode::Disabled => None,
        TlsMode::SelfSigned => Some(tls::load_or_generate(&dir, &listen_host)?),
        TlsMode::Files { cert, key } => Some(tls::load_files(cert, key)?),
    };

    let local_addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let local_host = if local_addr.ip().is_unspecified() {
        if local_addr.is_ipv4() {
            "127.0.0.1".to_owned()
        } else {
            "[::1]".to_owned()
        }
    } else if local_addr.is_ipv6() {
        format!("[{}]", local_addr.ip())
    } else {
        local_addr.ip().to_string()
    };
    let url = format!("{scheme}://{local_host}:{}", local_addr.port());
    let clock = Clock::system();
    let started = Started {
        url: url.clone(),
        local_addr,
        tls_fingerprint: tls.as_ref().map(|t| t.fingerprint.clone()),
        cert_file: tls.as_ref().map(|t| t.cert_file.clone()),
        admin_token_file: dir.admin_token_path().display().to_string(),
        ui_user: account.user.clone(),
        admin_password_file: dir.admin_password_path().display().to_string(),
        generated_password: account_change == ui::account::Bootstrap::Generated,
        generated_cert: tls.as_ref().is_some_and(|t| t.generated),
    };
    dir.write_server_file(&ServerFile {
        url,
        listen: local_addr.to_string(),
        pid: std::process::id(),
        tls_fingerprint: started.tls_fingerprint.clone(),
        cert_file: started.cert_file.clone(),
        started_at: clock.now().to_rfc3339(),
        version: env!("CARGO_PKG_VERSION").into(),
    })?;

    let registry = Arc::new(Registry::new());
    let server_id = dir.server_id()?;
    let jobs = jobs::Jobs::new(
        store.clone(),
        Arc::clone(&registry),
        clock,
        config.job_output_cap,
        server_id,
    );
    jobs.recover()
        .await
        .context("cannot recover jobs from the database")?;
    {
        // Other replicas' revocations and jobs (PostgreSQL only; SQLite has one server).
        let (registry, jobs, runtime) = (
            Arc::clone(&registry),
            Arc::clone(&jobs),
            tokio::runtime::Handle::current(),
        );
        store.listen(Box::new(move |event: &str| {
            events::handle(event, &registry, &jobs, &runtime)
        }));
    }
    let self_signed = matches!(config.tls, TlsMode::SelfSigned);
    let state = AppState::new(Inner {
        store: store.clone(),
        clock,
        registry: Arc::clone(&registry),
        admin_token_hash: SecretHash::of(&admin_token),
        heartbeat: config.heartbeat,
        idle_timeout: config.idle_timeout,
        pin_fingerprint: if self_signed {
            started.tls_fingerprint.clone()
        } else {
            None
        },
        tls: tls.is_some(),
        verifier: secrets::SecretVerifier::new(),
        limiter: ratelimit::FailureLimiter::default(),
        jobs: Arc::clone(&jobs),
    });
    let ui = Arc::new(ui::UiState::new(account));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let listener_task = listener::Listener::new(tls.map(|t| t.config));
    let serving = tokio::spawn(listener_task.serve(listener, router(state.clone(), ui), stop_rx));
    let flusher = tokio::spawn(flush_last_seen(state.clone()));
    let dispatcher = tokio::spawn(Arc::clone(&jobs).dispatch_forever());
    let (builtin_stop, builtin_shutdown) = tokio::sync::watch::channel(false);
    let builtin_worker = config.builtin_worker.then(|| {
        let target = builtin::Target {
            url: started.url.clone(),
            fingerprint: started
                .tls_fingerprint
                .as_deref()
                .and_then(|fp| muster_client::trust::parse_fingerprint(fp).ok()),
        };
        tokio::spawn(builtin::run(
            store.clone(),
            clock,
            dir.root().join("builtin-worker"),
            target,
            builtin_shutdown,
        ))
    });
    on_started(&started);
    tracing::info!(url = %started.url, "muster server listening");

    shutdown.await;
    tracing::info!("shutting down");
    let _ = builtin_stop.send(true);
    if let Some(task) = builtin_worker {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let _ = stop_tx.send(true);
    flusher.abort();
    dispatcher.abort();
    let _ = serving.await;
    send_workers_away(&registry, config.reconnect_spread);
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    while !registry.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    write_last_seen(&state).await;
    store.close();
    tracing::info!("stopped");
    Ok(())
}

/// Opens the database named by `--database` / `MUSTER_DATABASE_URL`:
///
/// - none: the embedded SQLite database in the data dir (one server);
/// - `sqlite:PATH` or `sqlite://PATH`: a SQLite database elsewhere;
/// - `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?PARAM=VALUE&...]` (or `postgresql://`):
///   a PostgreSQL database that several server replicas share. The format is libpq's, with
///   parameters such as `connect_timeout` (seconds, default 10) and `application_name` (default
///   `muster`). Connections are not encrypted, so reach the server over a trusted network or a
///   local socket (`postgres://USER@%2Fvar%2Frun%2Fpostgresql/DATABASE`). The schema is created
///   or migrated at start, safely when replicas start together.
fn open_store(config: &ServeConfig, dir: &DataDir) -> anyhow::Result<Store> {
    match config.database_url.as_deref() {
        None => {
            Store::open_sqlite(&dir.database_path()).context("cannot open the embedded database")
        }
        Some(url) if url.starts_with("sqlite:") => {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            Store::open_sqlite(std::path::Path::new(path))
                .with_context(|| format!("cannot open database `{path}`"))
        }
        // The URL may hold a password, so no message here repeats it.
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            // The cause goes before the hint: the CLI shows the text after `hint:` as the fix.
            Store::open_postgres(url).map_err(|e| {
                anyhow::anyhow!(
                    "cannot open the PostgreSQL database given by `--database`: {e}\nhint: check that the server is reachable and that the URL's user, host, port and database are right"
                )
            })
        }
        Some(_) => bail!(
            "database URL must start with `sqlite:` or `postgres://`\nhint: omit `--database` to use the embedded SQLite database"
        ),
    }
}

/// The admin credential lives in an owner-only file in the data dir; the server keeps only its
/// hash in memory. Whoever can read the data dir administers the server, by design.
fn ensure_admin_token(dir: &DataDir) -> anyhow::Result<String> {
    let path = dir.admin_token_path();
    if let Some(existing) = muster_fs::read_optional(&path)? {
        let token = existing.trim().to_owned();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let token = muster_core::credentials::generate_admin_token(&mut rand::rngs::OsRng);
    muster_fs::write_private(&path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

/// On a graceful shutdown every worker is told to come back after its own random delay, so a
/// restart does not become a stampede.
fn send_workers_away(registry: &Registry, spread: Duration) {
    let spread_ms = u64::try_from(spread.as_millis()).unwrap_or(10_000).max(1);
    let mut rng = rand::thread_rng();
    for session in registry.all() {
        let after_ms = 500 + rng.gen_range(0..spread_ms);
        session.inbox.push(Command::Send(ServerMessage::Reconnect {
            after_ms,
            reason: "the server is shutting down".into(),
        }));
        session.close(
            close::GOING_AWAY,
            format!("server shutting down; reconnect in {after_ms} ms"),
        );
    }
}

async fn flush_last_seen(state: AppState) {
    let mut tick = tokio::time::interval(LAST_SEEN_FLUSH);
    tick.tick().await;
    loop {
        tick.tick().await;
        write_last_seen(&state).await;
    }
}

/// Writes every connected worker's last-seen time, in chunks so one flush never holds the
/// writer for long.
async fn write_last_seen(state: &AppState) {
    let seen: Vec<_> = state
        .registry
        .all()
        .iter()
        .map(|s| (s.worker_id.clone(), s.last_seen()))
        .collect();
    for chunk in seen.chunks(500) {
        let chunk = chunk.to_vec();
        if let Err(e) = state
            .store
            .write(move |tx| muster_store::flows::workers::touch_many(tx, &chunk))
            .await
        {
            tracing::warn!(error = %e, "cannot record last-seen times");
            return;
        }
    }
}

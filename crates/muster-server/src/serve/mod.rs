//! `muster serve`: [`run`] takes the server from its configuration to listening, and back down
//! gracefully. Each step is a function named for what it does, called in the order it runs.

mod error;
pub mod retention;
mod tasks;

pub use error::ServeError;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use muster_core::SecretHash;
use muster_proto::local::{DatabaseLocation, ServerFile};
use muster_store::Store;

use crate::clock::Clock;
use crate::config::{ServeConfig, TlsMode};
use crate::control::registry::Registry;
use crate::datadir::DataDir;
use crate::state::{AppState, Inner};
use crate::tls::LoadedTls;
use crate::ui::account::{Account, Bootstrap};
use crate::{listener, ratelimit, secrets, tls, ui};

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
    /// The diagnostics listener's URL, when it runs.
    pub diag_url: Option<String>,
}

/// Runs the server until `shutdown` resolves. `on_started` is called once it serves, just before
/// the server file is written.
pub async fn run(
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
    on_started: impl FnOnce(&Started),
) -> Result<(), ServeError> {
    listener::raise_fd_limit();
    let bind_addrs = resolve_listen_address(&config).await?;
    let dir = open_data_dir(&config)?;
    // Bind before writing anything else, so a busy port leaves no half-made data dir behind.
    let tcp = listener::bind(&bind_addrs).map_err(|source| ServeError::Listen {
        listen: config.listen.clone(),
        source,
    })?;
    let diag = crate::diag::bind(&config.diag_listen).await?;
    let store = open_store(&config, &dir)?;
    store.observe_commits(Arc::new(|took| crate::diag::metrics().store_commit(took)));
    let admin_token = ensure_admin_token(&dir)?;
    let (account, account_change) =
        ui::account::bootstrap(&store, &dir.admin_password_path(), Clock::system().now()).await?;
    let tls = load_tls(&config, &dir, &store).await?;
    let clock = Clock::system();
    let local_addr = tcp.local_addr().map_err(ServeError::LocalAddr)?;
    let mut started = Started::new(&dir, local_addr, tls.as_ref(), &account, account_change);
    started.diag_url = diag
        .as_ref()
        .and_then(|d| d.local_addr().ok())
        .map(crate::diag::url);
    let app = app_state(
        &config,
        &dir,
        store,
        clock,
        &admin_token,
        &started,
        tls.is_some(),
    )
    .await?;
    // Before anyone connects: this replica's stale presence rows go, its lease is taken.
    crate::replica::start(&app)
        .await
        .map_err(ServeError::Recover)?;
    let ui = Arc::new(ui::UiState::new(account));
    let running = tasks::Running::spawn(&config, &dir, &app, ui, (tcp, diag), tls, &started);
    on_started(&started);
    // Last: whoever waits for the server file (local admin commands, tests) finds the server
    // serving and its banner printed.
    if let Err(e) = write_server_file(&dir, &started, database_location(&config, &dir), clock) {
        running.shut_down(&app, &config).await;
        return Err(e);
    }
    tracing::info!(url = %started.url, "muster server listening");

    shutdown.await;
    tracing::info!("shutting down");
    running.shut_down(&app, &config).await;
    tracing::info!("stopped");
    Ok(())
}

/// The addresses `--listen` names, refusing plain HTTP anywhere but loopback unless allowed.
async fn resolve_listen_address(config: &ServeConfig) -> Result<Vec<SocketAddr>, ServeError> {
    let bind_addrs: Vec<SocketAddr> = tokio::net::lookup_host(&config.listen)
        .await
        .map_err(|source| ServeError::Resolve {
            listen: config.listen.clone(),
            source,
        })?
        .collect();
    if matches!(config.tls, TlsMode::Disabled)
        && !config.allow_plaintext
        && bind_addrs.iter().any(|a| !a.ip().is_loopback())
    {
        return Err(ServeError::PlaintextNotLoopback {
            listen: config.listen.clone(),
        });
    }
    Ok(bind_addrs)
}

/// Opens (and locks) the data dir, so no second server uses it at the same time.
fn open_data_dir(config: &ServeConfig) -> Result<DataDir, ServeError> {
    DataDir::open(&config.data_dir).map_err(|e| match e {
        muster_fs::FsError::Locked { path, holder } => ServeError::DataDirInUse { path, holder },
        other => ServeError::DataDir(other),
    })
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
fn open_store(config: &ServeConfig, dir: &DataDir) -> Result<Store, ServeError> {
    let Some(url) = config.database_url.as_deref() else {
        return Store::open_sqlite(&dir.database_path()).map_err(|source| ServeError::Sqlite {
            what: "the embedded database".into(),
            source,
        });
    };
    if let Some(path) = sqlite_path(url) {
        return Store::open_sqlite(std::path::Path::new(path)).map_err(|source| {
            ServeError::Sqlite {
                what: format!("database `{path}`"),
                source,
            }
        });
    }
    // The URL may hold a password, so no message here repeats it.
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Store::open_postgres(url).map_err(ServeError::Postgres);
    }
    Err(ServeError::DatabaseUrl)
}

/// Where the database `open_store` opens is, for the server file (`muster backup` reads it).
fn database_location(config: &ServeConfig, dir: &DataDir) -> DatabaseLocation {
    match config.database_url.as_deref().map(sqlite_path) {
        None => DatabaseLocation::Sqlite {
            path: dir.database_path().display().to_string(),
        },
        Some(Some(path)) => DatabaseLocation::Sqlite {
            path: path.to_owned(),
        },
        Some(None) => DatabaseLocation::Postgres,
    }
}

/// The file a `sqlite:PATH` or `sqlite://PATH` database URL names.
fn sqlite_path(url: &str) -> Option<&str> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
}

/// The admin credential lives in an owner-only file in the data dir; the server keeps only its
/// hash in memory. Whoever can read the data dir administers the server, by design.
fn ensure_admin_token(dir: &DataDir) -> Result<String, ServeError> {
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

/// The certificate the server presents, if it speaks TLS: from files, or self-signed for the
/// host it listens on (made at the first start and kept in the data dir).
/// Its session tickets' keys are in the data dir for one server (SQLite), in the database for
/// replicas (PostgreSQL), so that a worker moving between replicas resumes.
async fn load_tls(
    config: &ServeConfig,
    dir: &DataDir,
    store: &Store,
) -> Result<Option<LoadedTls>, ServeError> {
    let listen_host = config
        .listen
        .rsplit_once(':')
        .map(|(h, _)| h.to_owned())
        .unwrap_or_default();
    let loaded = match &config.tls {
        TlsMode::Disabled => return Ok(None),
        TlsMode::SelfSigned => tls::load_or_generate(dir, &listen_host)?,
        TlsMode::Files { cert, key } => tls::load_files(cert, key)?,
    };
    if store.backend_name() == "postgres" {
        return Ok(Some(loaded.with_shared_resumption(store.clone()).await?));
    }
    Ok(Some(loaded.with_resumption(&dir.ticket_keys_path())?))
}

impl Started {
    fn new(
        dir: &DataDir,
        local_addr: SocketAddr,
        tls: Option<&LoadedTls>,
        account: &Account,
        account_change: Bootstrap,
    ) -> Self {
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
        Started {
            url: format!("{scheme}://{local_host}:{}", local_addr.port()),
            local_addr,
            tls_fingerprint: tls.map(|t| t.fingerprint.clone()),
            cert_file: tls.map(|t| t.cert_file.clone()),
            admin_token_file: dir.admin_token_path().display().to_string(),
            ui_user: account.user.clone(),
            admin_password_file: dir.admin_password_path().display().to_string(),
            generated_password: account_change == Bootstrap::Generated,
            generated_cert: tls.is_some_and(|t| t.generated),
            diag_url: None,
        }
    }
}

/// Leaves where and how this server listens in the data dir, for local admin commands.
fn write_server_file(
    dir: &DataDir,
    started: &Started,
    database: DatabaseLocation,
    clock: Clock,
) -> Result<(), ServeError> {
    dir.write_server_file(&ServerFile {
        url: started.url.clone(),
        listen: started.local_addr.to_string(),
        pid: std::process::id(),
        tls_fingerprint: started.tls_fingerprint.clone(),
        cert_file: started.cert_file.clone(),
        started_at: clock.now().to_rfc3339(),
        version: env!("CARGO_PKG_VERSION").into(),
        diag_url: started.diag_url.clone(),
        database: Some(database),
    })?;
    Ok(())
}

/// The state every handler and session shares: the registry, the scheduler (with the jobs of a
/// previous run recovered) and what the store hears from other replicas.
async fn app_state(
    config: &ServeConfig,
    dir: &DataDir,
    store: Store,
    clock: Clock,
    admin_token: &str,
    started: &Started,
    tls: bool,
) -> Result<AppState, ServeError> {
    let registry = Arc::new(Registry::new());
    let server_id = dir.server_id()?;
    let jobs = crate::jobs::Jobs::new(
        store.clone(),
        Arc::clone(&registry),
        clock,
        config.job_output_cap,
        server_id,
        config.job_grace,
    );
    jobs.recover().await.map_err(ServeError::Recover)?;
    let catch_up = Arc::new(crate::replica::CatchUp::default());
    {
        // Other replicas' revocations and jobs, and the catch-up after a broken listening
        // connection (PostgreSQL only; SQLite has one server).
        let (registry, jobs, events_store, catch_up, runtime) = (
            Arc::clone(&registry),
            Arc::clone(&jobs),
            store.clone(),
            Arc::clone(&catch_up),
            tokio::runtime::Handle::current(),
        );
        store.listen(Box::new(move |heard| {
            crate::replica::on_heard(heard, &registry, &jobs, &events_store, &catch_up, &runtime)
        }));
    }
    let nonce_key = crate::proof::NonceKey::load_or_create(&store)
        .await
        .map_err(ServeError::Recover)?;
    let self_signed = matches!(config.tls, TlsMode::SelfSigned);
    let licensing = crate::license::Licensing::new(license_issuers(config)?);
    Ok(AppState::new(Inner {
        records: crate::control::records::Records::new(store.clone()),
        admissions: crate::control::admissions::Admissions::new(store.clone()),
        store,
        clock,
        registry,
        admin_token_hash: SecretHash::of(admin_token),
        heartbeat: config.heartbeat,
        idle_timeout: config.idle_timeout,
        pin_fingerprint: if self_signed {
            started.tls_fingerprint.clone()
        } else {
            None
        },
        tls,
        public_url: config.public_url.clone(),
        verifier: secrets::SecretVerifier::new(),
        limiter: ratelimit::FailureLimiter::default(),
        refusals: Arc::default(),
        jobs,
        catch_up,
        nonce_key,
        licensing,
        deliverer: crate::webhooks::Deliverer::new(config.webhook_first_retry),
    }))
}

/// The license issuers this server trusts: muster's own, and the keys in each
/// `--license-issuer-key` file.
fn license_issuers(config: &ServeConfig) -> Result<muster_license::Issuers, ServeError> {
    let mut issuers = muster_license::Issuers::muster();
    for path in &config.license_issuer_keys {
        let refused = |reason: String| ServeError::LicenseIssuerKey {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| refused(e.to_string()))?;
        issuers
            .add_file_contents(&text)
            .map_err(|e| refused(e.to_string()))?;
    }
    Ok(issuers)
}

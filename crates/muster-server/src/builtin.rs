//! The built-in worker: a worker inside the server process, so a lone server can run jobs with
//! nothing else installed. It is a real worker — the same control channel, the same job runner —
//! that connects to its own server over loopback with an identity the server makes for it at
//! every start (`enrolled_via: builtin`, name `builtin`). Its jobs are confined like any
//! worker's, and kept out of the whole data dir (the admin token, the TLS key, the database) and
//! out of the files the server uses from elsewhere.

use std::path::{Path, PathBuf};

use muster_client::Trust;
use muster_core::credentials::generate_id;
use muster_core::worker::WorkerIdentity;
use muster_core::{ApiKey, EnrolledVia, Labels, Name, Worker, WorkerId};
use muster_store::Store;
use muster_worker::channel::{ChannelOptions, Endpoint, Identity};
use muster_worker::confine::JobSetup;
use muster_worker::identity::{FileTickets, Prover};
use muster_worker::jobs::JobManager;
use muster_worker::state_dir::StateDir;
use rand::rngs::OsRng;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::{ServeConfig, TlsMode};

pub const NAME: &str = muster_core::worker::BUILTIN_NAME;

/// Where and how the built-in worker reaches its server.
pub struct Target {
    pub url: String,
    pub fingerprint: Option<[u8; 32]>,
}

/// Where the built-in worker keeps its state, and what its jobs must not reach.
pub struct Paths {
    /// `<data-dir>/builtin-worker`.
    pub state_dir: PathBuf,
    /// The data dir, and the files the server uses from outside it.
    pub protected: Vec<PathBuf>,
}

impl Paths {
    pub fn new(data_dir: &Path, config: &ServeConfig) -> Self {
        let mut protected = vec![data_dir.to_path_buf()];
        if let TlsMode::Files { cert: _, key } = &config.tls {
            protected.push(key.clone());
        }
        if let Some(file) = config.database_url.as_deref().and_then(sqlite_file) {
            // SQLite keeps recent writes beside the database file.
            for suffix in ["-wal", "-shm", "-journal"] {
                let mut companion = file.clone().into_os_string();
                companion.push(suffix);
                protected.push(companion.into());
            }
            protected.push(file);
        }
        Self {
            state_dir: data_dir.join("builtin-worker"),
            protected,
        }
    }
}

/// The database file of an SQLite URL (read as `serve` opens it).
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// Prepares the built-in worker's identity and runs it until `shutdown`.
pub async fn run(
    store: Store,
    clock: Clock,
    paths: Paths,
    target: Target,
    mut shutdown: watch::Receiver<bool>,
) {
    let state = match StateDir::open(&paths.state_dir) {
        Ok(state) => state,
        Err(exit) => {
            tracing::error!("the built-in worker cannot start: {exit}");
            return;
        }
    };
    let identity = match ensure_identity(&store, &clock, &state).await {
        Ok(Some(identity)) => identity,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "the built-in worker cannot start");
            return;
        }
    };
    let trust = match target.fingerprint {
        Some(digest) => Trust::Fingerprint(digest),
        None => Trust::System,
    };
    let endpoint = match Endpoint::new(&target.url, &trust) {
        Ok(e) => e,
        Err(exit) => {
            tracing::error!("the built-in worker cannot start: {exit}");
            return;
        }
    };
    let slots = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let job_setup = JobSetup::builtin(&paths.protected).await;
    let options = ChannelOptions {
        labels: String::new(),
        max_jobs: slots,
        bind: None,
        confinement: Some(job_setup.confinement),
    };
    let (mut jobs, mut outbound) = JobManager::new(state.jobs_dir(), job_setup.options);
    let result = muster_worker::maintain(
        &endpoint,
        &identity,
        &options,
        true,
        &mut shutdown,
        &mut jobs,
        Some(&mut outbound),
    )
    .await;
    // It leaves with the server: its jobs stop, and their process groups must be gone before
    // the server exits (which waits up to 5 s for this task).
    jobs.stop_all();
    jobs.wait_stopped(std::time::Duration::from_secs(4)).await;
    if let Err(error) = result {
        tracing::error!("the built-in worker stopped: {error}");
    }
}

/// Creates the `builtin` worker record, or gives the existing one a fresh key. Returns `None`
/// (after saying why) if another kind of worker holds the name.
async fn ensure_identity(
    store: &Store,
    clock: &Clock,
    state: &StateDir,
) -> Result<Option<Identity>, muster_store::StoreError> {
    let key = ApiKey::generate(&mut OsRng);
    let key_hash = key.hash();
    let machine = state.machine_id().clone();
    let public_key = state.key().public_key();
    // Its tickets start over at every start (the server makes its identity afresh each time):
    // an old ticket file would not match the reset record.
    let _ = std::fs::remove_file(state.ticket_path());
    let fresh_identity = WorkerIdentity {
        public_key: Some(public_key),
        ..WorkerIdentity::default()
    };
    let now = clock.now();
    let new_id = WorkerId::parse(&generate_id(&mut OsRng))
        .map_err(|e| muster_store::StoreError::Corrupt(e.to_string()))?;
    let name = Name::parse(NAME).map_err(|e| muster_store::StoreError::Corrupt(e.to_string()))?;
    let id = store
        .write(move |tx| {
            match tx.get_worker_by_name(&name)? {
                Some(w) if w.enrolled_via == EnrolledVia::Builtin => {
                    // Made afresh at every start: this data dir's machine, key and tickets.
                    tx.delete_worker(&w.id)?;
                    tx.insert_worker(&Worker {
                        machine_id: Some(machine),
                        key_hash,
                        identity: fresh_identity,
                        ..w.clone()
                    })?;
                    Ok(Some(w.id))
                }
                Some(_) => Ok(None),
                None => {
                    tx.insert_worker(&Worker {
                        id: new_id.clone(),
                        name,
                        enrolled_via: EnrolledVia::Builtin,
                        token_name: None,
                        machine_id: Some(machine),
                        labels: Labels::new(),
                        key_hash,
                        created_at: now,
                        expires_at: None,
                        revoked_at: None,
                        last_seen_at: None,
                        identity: fresh_identity,
                    })?;
                    Ok(Some(new_id))
                }
            }
        })
        .await?;
    let Some(id) = id else {
        tracing::warn!(
            "a worker named `builtin` exists that is not the built-in worker; the built-in worker stays off"
        );
        return Ok(None);
    };
    Ok(Some(Identity {
        worker_id: id.to_string(),
        api_key: key.expose().to_owned(),
        machine_id: state.machine_id().to_string(),
        prover: Prover::new(
            std::sync::Arc::clone(state.key()),
            std::sync::Arc::new(FileTickets::open(state.ticket_path())),
        ),
    }))
}

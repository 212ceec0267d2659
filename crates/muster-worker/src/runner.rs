//! `muster worker` from start to exit: check the configuration, open the state dir, obtain an
//! identity (cached, pre-created, or by enrolling), then keep the control channel up.
//!
//! Over 400 lines because it is the worker's whole life in order (prepare, run, enroll,
//! maintain), each step short; which identity to run as is in `runner/credentials.rs`.

use std::time::Duration;

use muster_client::{Client, Trust};
use muster_core::{Labels, Name};
use muster_proto::api::{EnrollRequest, EnrollResponse, EnrolledVia};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::backoff::Backoff;
use crate::channel::{self, ChannelEnd, ChannelOptions, Endpoint, Events, Identity};
use crate::classify::{self, Failure};
use crate::config::WorkerConfig;
use crate::error::{Cause, WorkerError};
use crate::failover::Rotation;
use crate::identity::{FileTickets, Prover};
use crate::jobs::JobManager;
use crate::state_dir::{CachedIdentity, StateDir};

pub(crate) mod credentials;
use credentials::{
    Credential, cached_identity_refused, configured_enrollment, identity_conflict, refuses_identity,
};

/// How long an exiting worker waits for its jobs' process groups to be killed (TERM, a grace
/// period, then KILL).
const JOBS_STOP_WITHIN: Duration = Duration::from_secs(6);

/// Everything checked, before any network call.
struct Prepared {
    /// The first server URL: enrollment goes there.
    endpoint: Endpoint,
    /// Every server URL (`--url a,b,c`, replicas): the control channel fails over among them.
    endpoints: Vec<Endpoint>,
    trust: Trust,
    state: StateDir,
    labels: Labels,
    credential: Credential,
    /// Beside a cached identity: an enrollment credential for the same worker that is not the
    /// one the identity came from (freshly given). If the server refuses the cached identity
    /// for good, the worker enrolls with it, which is evidently what its operator wants.
    fresh: Option<Credential>,
    max_jobs: u32,
}

fn prepare(config: &WorkerConfig) -> Result<Prepared, WorkerError> {
    let url = config
        .url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            WorkerError::config(
                "no server URL is configured",
                "pass `--url https://HOST:PORT` or set MUSTER_URL",
            )
        })?;
    let trust = Trust::from_options(config.ca_file.as_deref(), config.ca_fingerprint.as_deref())
        .map_err(|e| {
            WorkerError::config(
                e.to_string(),
                "copy the fingerprint exactly as `muster serve` printed it",
            )
        })?;
    let mut endpoints = Vec::new();
    for url in url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let endpoint = Endpoint::new(url, &trust)?;
        if !config.allow_plaintext && !endpoint.is_safe_without_tls() {
            return Err(plaintext_refused(url));
        }
        endpoints.push(endpoint);
    }
    let Some(endpoint) = endpoints.first().cloned() else {
        return Err(WorkerError::config(
            "no server URL is configured",
            "pass `--url https://HOST:PORT` or set MUSTER_URL",
        ));
    };
    let labels = Labels::parse_all(config.labels.iter().map(String::as_str)).map_err(|e| {
        WorkerError::config(
            e.to_string(),
            "labels are `key=value`, like `--label region=eu`",
        )
    })?;
    if let Some(name) = &config.name {
        Name::parse(name).map_err(|e| {
            WorkerError::config(
                e.to_string(),
                "set `--name`/MUSTER_WORKER_NAME to a valid name",
            )
        })?;
    }
    if config.worker_id.is_some() != config.api_key.is_some() {
        return Err(WorkerError::config(
            "a pre-created worker needs both its id and its API key",
            "set both MUSTER_WORKER_ID and MUSTER_WORKER_API_KEY, as `muster workers create` printed them",
        ));
    }
    if config.token.is_some() && config.enrollment_key.is_some() {
        return Err(WorkerError::config(
            "both an enrollment token and the auto-enrollment secret are configured",
            "configure one way to enroll: `--token` or `--enrollment-key`",
        ));
    }
    let state = StateDir::open(&config.state_dir)?;
    let cached = state.load_identity()?;
    let mut fresh = None;
    let credential = if let (Some(worker_id), Some(api_key)) = (&config.worker_id, &config.api_key)
    {
        if let Some(identity) = cached.as_ref().filter(|c| c.worker_id != *worker_id) {
            return Err(identity_conflict(
                &state,
                identity,
                worker_id,
                "the configured pre-created worker id",
            ));
        }
        Credential::Precreated {
            worker_id: worker_id.clone(),
            api_key: api_key.clone(),
        }
    } else if let Some(identity) = cached {
        if let Some((wanted, given, credential)) = configured_enrollment(config) {
            if wanted != identity.name {
                let what = match credential {
                    Credential::Token(_) => "the configured enrollment token",
                    _ => "the configured worker name",
                };
                return Err(identity_conflict(&state, &identity, &wanted, what));
            }
            let mark = CachedIdentity::credential_mark(&state.machine_id().to_string(), &given);
            if identity.credential.as_deref() == Some(mark.as_str()) {
                tracing::info!(
                    "using the identity cached in the state dir; the configured enrollment credential is not needed and can be removed"
                );
            } else {
                tracing::info!(
                    "using the identity cached in the state dir; the configured enrollment credential is kept in case the server refuses it"
                );
                fresh = Some(credential);
            }
        }
        Credential::Cached(identity)
    } else if let Some(token) = &config.token {
        Credential::Token(token.clone())
    } else if let Some(key) = &config.enrollment_key {
        let name = config.name.clone().ok_or_else(|| {
            WorkerError::config(
                "the auto-enrollment secret needs a worker name, and none is set",
                "set `--name` or MUSTER_WORKER_NAME to a unique name",
            )
        })?;
        Credential::Secret {
            name,
            key: key.clone(),
        }
    } else if config.name.is_some() {
        return Err(WorkerError::config(
            format!(
                "no auto-enrollment secret is configured and `{}` holds no cached identity",
                state.root().display()
            ),
            "set MUSTER_AUTO_ENROLLMENT_KEY (or `--enrollment-key`) for the first start",
        ));
    } else {
        return Err(WorkerError::config(
            format!(
                "no credential is configured and `{}` holds no cached identity",
                state.root().display()
            ),
            "pass `--token NAME.SECRET`, or `--name` with `--enrollment-key`, or a pre-created worker's `--worker-id` and `--api-key`",
        ));
    };
    let max_jobs = config.max_jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(1))
            .unwrap_or(1)
    });
    Ok(Prepared {
        endpoint,
        // One TLS session store for all the URLs: a worker failing over to another replica
        // offers it the ticket the last one gave (see `Endpoint::sharing_sessions`).
        endpoints: Endpoint::sharing_sessions(&endpoints),
        trust,
        state,
        labels,
        credential,
        fresh,
        max_jobs: max_jobs.max(1),
    })
}

/// A plain `http://` URL to another host, without `--allow-plaintext`.
pub(crate) fn plaintext_refused(url: &str) -> WorkerError {
    WorkerError::config(
        format!(
            "`{url}` is a plain http:// URL to another host: the worker's credentials would cross the network in clear text"
        ),
        "use the server's https:// URL, or pass `--allow-plaintext` if a trusted network or a TLS proxy protects the way",
    )
}

/// Runs the worker until it is stopped (`Ok`) or fails for good. Never returns early for a
/// transient failure: those are retried with backoff.
pub async fn run(
    config: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let prepared = prepare(&config)?;
    let job_setup = crate::confine::JobSetup::worker(
        config.job_user.as_deref(),
        &config.job_writable,
        prepared.state.root(),
    )
    .await?;
    let options = ChannelOptions {
        labels: prepared.labels.to_string(),
        max_jobs: prepared.max_jobs,
        bind: None,
        confinement: Some(job_setup.confinement),
    };
    let (mut jobs, mut outbound) = JobManager::new(prepared.state.jobs_dir(), job_setup.options);
    let mut credential = &prepared.credential;
    let mut fresh = prepared.fresh.as_ref();
    loop {
        let Some(identity) = obtain_identity(&prepared, credential, &mut shutdown).await? else {
            return Ok(());
        };
        // An identity from a token or the secret is cached in the state dir by now.
        let cached = match credential {
            Credential::Cached(c) => Some(c.name.clone()),
            Credential::Precreated { .. } => None,
            Credential::Token(_) | Credential::Secret { .. } => {
                prepared.state.load_identity()?.map(|c| c.name)
            }
        };
        let result = maintain_any(
            &prepared.endpoints,
            &identity,
            &options,
            config.reconnect,
            &mut shutdown,
            &mut jobs,
            Some(&mut outbound),
        )
        .await;
        // The channel is gone for good: stop every job and let them finish dying.
        jobs.stop_all();
        jobs.wait_stopped(JOBS_STOP_WITHIN).await;
        let (error, name) = match (result, cached) {
            (Err(error), Some(name)) if refuses_identity(error.cause()) => (error, name),
            (result, _) => return result,
        };
        // The server refused the cached identity for good. With a freshly given credential for
        // the same worker, enroll with it (replacing the cached identity); else say which state
        // dir holds the refused identity and how to go on.
        match fresh.take() {
            Some(next) => {
                tracing::warn!(
                    worker = %name,
                    "the server refused the cached identity ({}); enrolling with the configured credential",
                    error.message()
                );
                credential = next;
            }
            None => return Err(cached_identity_refused(&prepared.state, &name, &error)),
        }
    }
}

/// The identity to connect with, or `None` if the worker was stopped while enrolling.
async fn obtain_identity(
    prepared: &Prepared,
    credential: &Credential,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Identity>, WorkerError> {
    let machine_id = prepared.state.machine_id().to_string();
    let prover = Prover::new(
        std::sync::Arc::clone(prepared.state.key()),
        std::sync::Arc::new(FileTickets::open(prepared.state.ticket_path())),
    );
    let (token, name, key) = match credential {
        Credential::Cached(c) => {
            tracing::info!(worker = %c.name, "using the cached identity");
            return Ok(Some(Identity {
                worker_id: c.worker_id.clone(),
                api_key: c.api_key.clone(),
                machine_id,
                prover,
            }));
        }
        Credential::Precreated { worker_id, api_key } => {
            return Ok(Some(Identity {
                worker_id: worker_id.clone(),
                api_key: api_key.clone(),
                machine_id,
                prover,
            }));
        }
        Credential::Token(token) => (Some(token.clone()), None, None),
        Credential::Secret { name, key } => (None, Some(name.clone()), Some(key.clone())),
    };
    let client = Client::new(&prepared.endpoint.base_url, &prepared.trust, None)
        .map_err(|e| WorkerError::with_optional_hint(Cause::Config, e.to_string(), e.hint()))?;
    let request = EnrollRequest {
        machine_id: machine_id.clone(),
        token,
        name,
        enrollment_key: key,
        labels: prepared.labels.as_map().clone(),
        public_key: None,
        proof: None,
        nonce: None,
    };
    let Some(enrolled) = enroll(
        &client,
        &request,
        &prover,
        shutdown,
        &mut crate::channel::Quiet,
    )
    .await?
    else {
        return Ok(None);
    };
    let via = if request.token.is_some() {
        EnrolledVia::Token
    } else {
        EnrolledVia::Secret
    };
    let given = request
        .token
        .as_deref()
        .or(request.enrollment_key.as_deref())
        .unwrap_or_default();
    let cached = CachedIdentity {
        credential: Some(CachedIdentity::credential_mark(&machine_id, given)),
        server_url: prepared.endpoint.base_url.clone(),
        worker_id: enrolled.worker_id.clone(),
        name: enrolled.name.clone(),
        api_key: enrolled.api_key.clone(),
        enrolled_via: via,
        expires_at: enrolled.expires_at.clone(),
    };
    // On disk before it is used: a crash now leaves a worker that can come back.
    prepared.state.save_identity(&cached)?;
    tracing::info!(worker = %enrolled.name, %via, "enrolled; identity cached in the state dir");
    Ok(Some(Identity {
        worker_id: enrolled.worker_id,
        api_key: enrolled.api_key,
        machine_id,
        prover,
    }))
}

/// Asks the server for a worker identity, retrying transient failures with backoff until it
/// is refused for good or `shutdown` turns true (then `Ok(None)`). The enrollment step of
/// `muster worker`, and of a swarm's simulated workers. Each attempt proves the worker holds its
/// key: it signs a fresh server nonce with `prover`.
pub async fn enroll(
    client: &Client,
    request: &EnrollRequest,
    prover: &Prover,
    shutdown: &mut watch::Receiver<bool>,
    events: &mut dyn Events,
) -> Result<Option<EnrollResponse>, WorkerError> {
    let mut backoff = Backoff::default();
    loop {
        let attempt = async {
            let nonce = client.challenge().await?.nonce;
            let subject = enrollment_subject(request);
            let binding = muster_core::identity::Binding::ServerNonce(nonce.as_bytes().to_vec());
            let mut signed = request.clone();
            signed.public_key = Some(prover.key.public_key().to_string());
            signed.proof = Some(prover.sign_enroll(&binding, &subject).to_string());
            signed.nonce = Some(nonce);
            client.enroll(&signed).await
        };
        let (reason, after) = match attempt.await {
            Ok(enrolled) => return Ok(Some(enrolled)),
            Err(e) => match classify::from_client(&e) {
                Failure::Stop(error) => return Err(error),
                Failure::Retry { reason, after } => (reason, after),
            },
        };
        let delay = after.unwrap_or_else(|| backoff.next_delay(&mut rand::thread_rng()));
        events.retrying(&reason, delay);
        tracing::warn!(
            "cannot enroll yet: {reason}; retrying in {:.1} s (the worker keeps trying until it is stopped)",
            delay.as_secs_f64()
        );
        if wait_or_shutdown(delay, shutdown).await {
            return Ok(None);
        }
    }
}

/// Who an enrollment claims to be: the token's name, or the worker's name.
fn enrollment_subject(request: &EnrollRequest) -> String {
    match (&request.token, &request.name) {
        (Some(token), _) => token.split('.').next().unwrap_or_default().to_owned(),
        (None, Some(name)) => name.clone(),
        (None, None) => String::new(),
    }
}

/// Keeps the control channel up: reconnects after every transient loss, with backoff, until a
/// permanent refusal (`Err`) or a shutdown (`Ok`). This is the loop a swarm runs per simulated
/// worker, too.
pub async fn maintain(
    endpoint: &Endpoint,
    identity: &Identity,
    options: &ChannelOptions,
    reconnect: bool,
    shutdown: &mut watch::Receiver<bool>,
    events: &mut dyn Events,
    outbound: Option<&mut mpsc::Receiver<Message>>,
) -> Result<(), WorkerError> {
    maintain_any(
        std::slice::from_ref(endpoint),
        identity,
        options,
        reconnect,
        shutdown,
        events,
        outbound,
    )
    .await
}

/// [`maintain`] over several servers (replicas): the first attempt goes to the first URL; after
/// a failed attempt or a lost channel the next attempt goes to one of the *other* URLs chosen at
/// random (see [`crate::failover`]), so a dead replica's workers spread evenly over the others
/// even when every worker has the same list; a channel that works stays where it is.
pub async fn maintain_any(
    endpoints: &[Endpoint],
    identity: &Identity,
    options: &ChannelOptions,
    reconnect: bool,
    shutdown: &mut watch::Receiver<bool>,
    events: &mut dyn Events,
    mut outbound: Option<&mut mpsc::Receiver<Message>>,
) -> Result<(), WorkerError> {
    let mut backoff = Backoff::default();
    let mut rotation = Rotation::new(endpoints.len());
    // Attempts since a channel last worked: each server gets one quick try before backing off.
    let mut tried = 0usize;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let Some(endpoint) = endpoints.get(rotation.current()) else {
            return Ok(());
        };
        events.connecting(endpoint);
        let connected = tokio::select! {
            result = channel::connect(endpoint, identity, options) => result,
            _ = shutdown.changed() => return Ok(()),
        };
        let (reason, after) = match connected {
            Ok(socket) => {
                tracing::info!(url = %endpoint.base_url, "control channel open");
                let end = channel::run(
                    socket,
                    shutdown,
                    events,
                    outbound.as_deref_mut(),
                    Some(&identity.prover),
                )
                .await;
                events.ended(&end);
                match end {
                    ChannelEnd::Shutdown => return Ok(()),
                    ChannelEnd::Stop(error) => return Err(error),
                    ChannelEnd::Lost {
                        reason,
                        after,
                        welcomed,
                    } => {
                        if welcomed {
                            backoff.reset();
                            rotation.welcomed();
                            tried = 0;
                        }
                        (reason, after)
                    }
                }
            }
            Err(Failure::Stop(error)) => return Err(error),
            Err(Failure::Retry { reason, after }) => (reason, after),
        };
        if !reconnect {
            return Err(channel_closed(&reason));
        }
        tried += 1;
        rotation.after_failure(&mut rand::thread_rng());
        // With other servers to try, the first retries go to another one at once: a replica
        // that died should not keep its workers waiting out a backoff.
        let delay = match (after, endpoints.len() > 1 && tried < endpoints.len()) {
            (Some(after), _) => after,
            (None, true) => {
                Duration::from_millis(rand::Rng::gen_range(&mut rand::thread_rng(), 0..250))
            }
            (None, false) => backoff.next_delay(&mut rand::thread_rng()),
        };
        events.retrying(&reason, delay);
        tracing::warn!("{reason}; reconnecting in {:.1} s", delay.as_secs_f64());
        if wait_or_shutdown(delay, shutdown).await {
            return Ok(());
        }
    }
}

/// The channel closed and the worker was told not to reconnect.
fn channel_closed(reason: &str) -> WorkerError {
    WorkerError::new(
        Cause::ChannelClosed,
        format!("the control channel closed: {reason}"),
        "run without `--no-reconnect` to reconnect by itself",
    )
}

/// Sleeps for `delay`; returns true if a shutdown came first.
async fn wait_or_shutdown(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        _ = shutdown.changed() => true,
    }
}

#[cfg(test)]
mod tests;

//! Simulated workers: one tokio task each, sharing one `Endpoint` (and so one TLS
//! configuration) and one enrollment client.
//!
//! Each task runs the worker's own code: `muster_worker::enroll` (for a token) and then
//! `muster_worker::maintain_any`, the reconnect loop `muster worker` runs, with its channel, heartbeats,
//! backoff and close-code handling. A `Recorder` plugged into the worker's `Events` hooks reports
//! every step (welcome, close frame, end of a channel, retry) as an event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use muster_client::Client;
use muster_core::identity::WorkerKey;
use muster_proto::api::EnrollRequest;
use muster_proto::control::{CloseCode, ServerMessage, Welcome};
use muster_worker::channel::{ChannelEnd, ChannelOptions, Endpoint, Events, Identity};
use muster_worker::identity::{MemoryTickets, Prover};
use muster_worker::jobs::{JobManager, JobOptions};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::addrs::Sources;
use crate::clock::now_us;
use crate::creds::{Credential, How};
use crate::events::{Event, Sink};

/// What every simulated worker shares.
pub struct Shared {
    /// The servers to connect to, in the order tried: replicas, when there are several.
    pub endpoints: Vec<Endpoint>,
    /// For workers that enroll with a token first.
    pub client: Option<Client>,
    pub sources: Option<Sources>,
    /// Caps first attempts in flight, so the initial ramp does not overflow the server's accept
    /// backlog. Reconnects are not limited: a storm is what real workers do.
    pub ramp: Semaphore,
    pub events: Sink,
    pub connected: AtomicUsize,
    pub gave_up: AtomicUsize,
    /// When set, each simulated worker runs the jobs it is given with the worker's own job
    /// runner, in `<jobs_dir>/<name>`.
    pub jobs_dir: Option<std::path::PathBuf>,
}

/// Runs one simulated worker until it gives up or `shutdown` turns true.
pub async fn worker(
    shared: Arc<Shared>,
    index: usize,
    cred: Credential,
    mut shutdown: watch::Receiver<bool>,
) {
    let name: Arc<str> = Arc::from(cred.name.as_str());
    // Held through the first attempt only (enrollment, or the first connection), so the
    // initial ramp does not overflow the server's accept backlog. Reconnects are not limited:
    // a storm is what real workers do.
    let permit = shared.ramp.acquire().await.ok();
    let (jobs, mut outbound) = match &shared.jobs_dir {
        Some(dir) => {
            let (jobs, outbound) = JobManager::new(dir.join(&*name), JobOptions::unconfined());
            (Some(jobs), Some(outbound))
        }
        None => (None, None),
    };
    let mut recorder = Recorder {
        shared: &shared,
        name: &name,
        welcomed: false,
        permit,
        jobs,
        server: None,
    };
    // Each simulated worker holds a key of its own; its tickets live in memory (it never
    // restarts).
    let prover = Prover::new(
        Arc::new(WorkerKey::generate(&mut rand::rngs::OsRng)),
        Arc::new(MemoryTickets::default()),
    );
    let identity = match cred.how {
        How::Precreated { worker_id, api_key } => Identity {
            worker_id,
            api_key,
            machine_id: cred.machine_id,
            prover,
        },
        How::Token { token } => {
            let Some(client) = &shared.client else {
                give_up(
                    &shared,
                    &name,
                    muster_worker::classify::code::CONFIG,
                    "no enrollment client".into(),
                );
                return;
            };
            let request = EnrollRequest {
                machine_id: cred.machine_id.clone(),
                token: Some(token),
                name: None,
                enrollment_key: None,
                labels: Default::default(),
                public_key: None,
                proof: None,
                nonce: None,
            };
            match muster_worker::enroll(client, &request, &prover, &mut shutdown, &mut recorder)
                .await
            {
                Ok(Some(enrolled)) => {
                    emit(&shared, |w, t| Event::Enrolled { w, t }, &name);
                    Identity {
                        worker_id: enrolled.worker_id,
                        api_key: enrolled.api_key,
                        machine_id: cred.machine_id,
                        prover,
                    }
                }
                Ok(None) => return,
                Err(error) => {
                    give_up(
                        &shared,
                        &name,
                        error.exit_code(),
                        error.message().to_owned(),
                    );
                    return;
                }
            }
        }
    };
    let options = ChannelOptions {
        labels: String::new(),
        max_jobs: 1,
        bind: shared.sources.map(|s| s.for_worker(index)),
        confinement: None,
    };
    // Each simulated worker keeps its own TLS sessions, one store for all its URLs, as a worker
    // process does: a store shared between workers would hand one worker's tickets to another.
    let endpoints = Endpoint::sharing_sessions(&shared.endpoints);
    // The reconnect loop of `muster worker` itself, observed through the recorder.
    let result = muster_worker::maintain_any(
        &endpoints,
        &identity,
        &options,
        true,
        &mut shutdown,
        &mut recorder,
        outbound.as_mut(),
    )
    .await;
    if let Err(error) = result {
        give_up(
            &shared,
            &name,
            error.exit_code(),
            error.message().to_owned(),
        );
    }
}

fn emit(shared: &Shared, make: impl FnOnce(String, u64) -> Event, name: &Arc<str>) {
    shared.events.emit(make(name.to_string(), now_us()));
}

fn give_up(shared: &Shared, name: &Arc<str>, exit: u8, reason: String) {
    shared.gave_up.fetch_add(1, Ordering::Relaxed);
    shared.events.emit(Event::GaveUp {
        w: name.to_string(),
        t: now_us(),
        exit,
        reason,
    });
}

/// Hears one simulated worker's channel and reconnect loop, and reports each step as an event.
struct Recorder<'a> {
    shared: &'a Shared,
    name: &'a Arc<str>,
    /// Whether the current channel got its welcome (the server counts it as connected).
    welcomed: bool,
    /// The ramp permit, given back after the first attempt.
    permit: Option<tokio::sync::SemaphorePermit<'a>>,
    /// The worker's job runner, when this swarm runs jobs.
    jobs: Option<JobManager>,
    /// The server of the current attempt, reported with the welcome when there are several.
    server: Option<String>,
}

impl Events for Recorder<'_> {
    fn welcomed(&mut self, _welcome: &Welcome) {
        self.permit = None;
        self.welcomed = true;
        self.shared.connected.fetch_add(1, Ordering::Relaxed);
        let url = self.server.clone();
        emit(self.shared, |w, t| Event::Welcome { w, t, url }, self.name);
    }

    fn connecting(&mut self, endpoint: &Endpoint) {
        if self.shared.endpoints.len() > 1 {
            self.server = Some(endpoint.base_url.clone());
        }
    }

    fn message(&mut self, message: ServerMessage) {
        if let Some(jobs) = &mut self.jobs {
            jobs.message(message);
        }
    }

    fn lost(&mut self) {
        if let Some(jobs) = &mut self.jobs {
            jobs.lost();
        }
    }

    fn resume(&mut self) -> Vec<Message> {
        self.jobs.as_mut().map(Events::resume).unwrap_or_default()
    }

    fn sent(&mut self, message: &Message) {
        if let Some(jobs) = &mut self.jobs {
            jobs.sent(message);
        }
    }

    fn unsent(&mut self, message: Message) {
        if let Some(jobs) = &mut self.jobs {
            jobs.unsent(message);
        }
    }

    fn closed_by_server(&mut self, code: CloseCode, reason: &str) {
        self.shared.events.emit(Event::CloseFrame {
            w: self.name.to_string(),
            t: now_us(),
            code: u16::from(code),
            reason: reason.to_owned(),
        });
    }

    fn ended(&mut self, end: &ChannelEnd) {
        let welcomed = std::mem::take(&mut self.welcomed);
        if welcomed {
            self.shared.connected.fetch_sub(1, Ordering::Relaxed);
        }
        let (class, exit, reason) = match end {
            ChannelEnd::Lost { reason, .. } => ("lost", None, reason.clone()),
            ChannelEnd::Stop(error) => {
                ("stop", Some(error.exit_code()), error.message().to_owned())
            }
            ChannelEnd::Shutdown => ("shutdown", None, String::new()),
        };
        self.shared.events.emit(Event::Closed {
            w: self.name.to_string(),
            t: now_us(),
            class: class.into(),
            exit,
            reason,
            welcomed,
        });
    }

    fn retrying(&mut self, reason: &str, _delay: Duration) {
        self.permit = None;
        self.shared.events.emit(Event::Retry {
            w: self.name.to_string(),
            t: now_us(),
            reason: reason.to_owned(),
        });
    }
}

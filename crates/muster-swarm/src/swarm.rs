//! Simulated workers: one tokio task each, sharing one `Endpoint` (and so one TLS
//! configuration) and one enrollment client.
//!
//! Each task does what `muster worker` does with a cached or pre-created identity: open the
//! control channel with `muster_worker::channel::connect`, run it with
//! `muster_worker::channel::run`, and after a transient loss wait with
//! `muster_worker::backoff::Backoff` before trying again. The loop is `muster_worker::maintain`
//! written out, with the same rules (the backoff starts over after a channel that got its
//! welcome; the server's own delay wins; a permanent refusal ends the worker), so that every
//! step can be reported as an event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use muster_client::Client;
use muster_proto::api::EnrollRequest;
use muster_proto::control::Welcome;
use muster_worker::backoff::Backoff;
use muster_worker::channel::{self, ChannelEnd, ChannelOptions, Endpoint, Events, Identity};
use muster_worker::classify::{self, Failure};
use tokio::sync::{Semaphore, watch};

use crate::addrs::Sources;
use crate::clock::now_us;
use crate::creds::{Credential, How};
use crate::events::{Event, Sink};
use crate::tap::Tap;

/// What every simulated worker shares.
pub struct Shared {
    pub endpoint: Endpoint,
    /// For workers that enroll with a token first.
    pub client: Option<Client>,
    pub sources: Option<Sources>,
    /// Caps first attempts in flight, so the initial ramp does not overflow the server's accept
    /// backlog. Reconnects are not limited: a storm is what real workers do.
    pub ramp: Semaphore,
    pub events: Sink,
    pub connected: AtomicUsize,
    pub gave_up: AtomicUsize,
}

/// Runs one simulated worker until it gives up or `shutdown` turns true.
pub async fn worker(
    shared: Arc<Shared>,
    index: usize,
    cred: Credential,
    mut shutdown: watch::Receiver<bool>,
) {
    let name: Arc<str> = Arc::from(cred.name.as_str());
    let mut first = true;
    let identity = match cred.how {
        How::Precreated { worker_id, api_key } => Identity {
            worker_id,
            api_key,
            machine_id: cred.machine_id,
        },
        How::Token { token } => {
            let permit = shared.ramp.acquire().await;
            first = false;
            let enrolled = enroll(&shared, &name, token, cred.machine_id, &mut shutdown).await;
            drop(permit);
            match enrolled {
                Some(identity) => identity,
                None => return,
            }
        }
    };
    let options = ChannelOptions {
        labels: String::new(),
        max_jobs: 1,
        bind: shared.sources.map(|s| s.for_worker(index)),
    };
    let mut backoff = Backoff::default();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let permit = if first {
            shared.ramp.acquire().await.ok()
        } else {
            None
        };
        first = false;
        let connected = tokio::select! {
            result = channel::connect(&shared.endpoint, &identity, &options) => result,
            _ = shutdown.changed() => return,
        };
        drop(permit);
        let after = match connected {
            Ok(socket) => {
                emit(&shared, |w, t| Event::Connected { w, t }, &name);
                let mut recorder = Recorder {
                    shared: &shared,
                    name: &name,
                    welcomed: false,
                };
                let tap = Tap::new(socket, Arc::clone(&name), shared.events.clone());
                let end = channel::run(tap, &mut shutdown, &mut recorder, None).await;
                let welcomed = recorder.welcomed;
                if welcomed {
                    shared.connected.fetch_sub(1, Ordering::Relaxed);
                }
                let (class, exit, reason) = match &end {
                    ChannelEnd::Lost { reason, .. } => ("lost", None, reason.clone()),
                    ChannelEnd::Stop(exit) => ("stop", Some(exit.code), exit.message.clone()),
                    ChannelEnd::Shutdown => ("shutdown", None, String::new()),
                };
                shared.events.emit(Event::Closed {
                    w: name.to_string(),
                    t: now_us(),
                    class: class.into(),
                    exit,
                    reason,
                    welcomed,
                });
                match end {
                    ChannelEnd::Shutdown => return,
                    ChannelEnd::Stop(exit) => {
                        give_up(&shared, &name, exit.code, exit.message);
                        return;
                    }
                    ChannelEnd::Lost {
                        after, welcomed, ..
                    } => {
                        if welcomed {
                            backoff.reset();
                        }
                        after
                    }
                }
            }
            Err(Failure::Stop(exit)) => {
                give_up(&shared, &name, exit.code, exit.message);
                return;
            }
            Err(Failure::Retry { reason, after }) => {
                shared.events.emit(Event::Retry {
                    w: name.to_string(),
                    t: now_us(),
                    reason,
                });
                after
            }
        };
        let delay = after.unwrap_or_else(|| backoff.next_delay(&mut rand::thread_rng()));
        if wait_or_shutdown(delay, &mut shutdown).await {
            return;
        }
    }
}

/// Enrolls with a token, retrying transient failures with backoff as `muster worker` does.
async fn enroll(
    shared: &Shared,
    name: &Arc<str>,
    token: String,
    machine_id: String,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Identity> {
    let Some(client) = &shared.client else {
        give_up(
            shared,
            name,
            muster_worker::exit::code::CONFIG,
            "no enrollment client".into(),
        );
        return None;
    };
    let request = EnrollRequest {
        machine_id: machine_id.clone(),
        token: Some(token),
        name: None,
        enrollment_key: None,
        labels: Default::default(),
    };
    let mut backoff = Backoff::default();
    loop {
        match client.enroll(&request).await {
            Ok(enrolled) => {
                emit(shared, |w, t| Event::Enrolled { w, t }, name);
                return Some(Identity {
                    worker_id: enrolled.worker_id,
                    api_key: enrolled.api_key,
                    machine_id,
                });
            }
            Err(e) => match classify::from_client(&e) {
                Failure::Stop(exit) => {
                    give_up(shared, name, exit.code, exit.message);
                    return None;
                }
                Failure::Retry { reason, after } => {
                    shared.events.emit(Event::Retry {
                        w: name.to_string(),
                        t: now_us(),
                        reason,
                    });
                    let delay =
                        after.unwrap_or_else(|| backoff.next_delay(&mut rand::thread_rng()));
                    if wait_or_shutdown(delay, shutdown).await {
                        return None;
                    }
                }
            },
        }
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

/// Hears the welcome for one channel.
struct Recorder<'a> {
    shared: &'a Shared,
    name: &'a Arc<str>,
    welcomed: bool,
}

impl Events for Recorder<'_> {
    fn welcomed(&mut self, _welcome: &Welcome) {
        self.welcomed = true;
        self.shared.connected.fetch_add(1, Ordering::Relaxed);
        emit(self.shared, |w, t| Event::Welcome { w, t }, self.name);
    }
}

/// Sleeps for `delay`; true if a shutdown came first.
async fn wait_or_shutdown(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        _ = shutdown.changed() => true,
    }
}

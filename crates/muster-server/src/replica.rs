//! This replica among others sharing one store: presence and the lease.
//!
//! - **Presence**: every live control channel has a row in the store naming this replica and the
//!   connection (written with the connection's own last-seen write, so it costs no extra
//!   transaction), cleared when the session ends, its running-job count kept within a second.
//!   Every replica answers `workers list`/`show`, the API and the UI from these rows, so they
//!   agree, and "name in use by a connected worker" is judged on them in the enrollment's
//!   transaction.
//! - **The lease**: every [`BEAT`] this replica renews its row in `replicas`, and takes over any
//!   replica whose lease is older than [`LEASE`] (killed, frozen, cut from the database), both
//!   judged on the database's clock read inside the transaction, on a path of its own (its own
//!   task, and with PostgreSQL its own connection: `Store::write_lease`), so a storm of
//!   admissions cannot starve the lease of a live replica: one
//!   transaction, won by exactly one replica, that clears the dead one's presence rows and takes
//!   its running jobs, which then wait for their workers for the grace period as after a
//!   restart. A replica that finds its own lease was taken (it was thought dead: a long pause,
//!   a lost database connection) writes its live channels' rows again and takes its sessions'
//!   jobs back before anything else.
//!
//! - **Catch-up**: a replica whose listening connection to the store breaks may miss events
//!   (a revocation made through another replica). From that moment it admits no worker; when
//!   it listens again it re-checks every live session against its worker's record and reads
//!   the queue again, and only then admits workers.
//!
//! With SQLite there is one replica: the same rows, and a lease nobody else reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use muster_core::{WorkerId, WorkerStatus};
use muster_proto::control::CloseCode;
use muster_store::flows::replicas;
use muster_store::{Heard, Presence, Store, StoreError};
use tokio::sync::watch;

use crate::control::registry::{Registry, Session};
use crate::jobs::Jobs;
use crate::state::AppState;

/// How often a replica renews its lease and writes changed running counts.
pub const BEAT: Duration = Duration::from_secs(1);
/// A replica whose lease is older than this is dead.
pub const LEASE: Duration = Duration::from_secs(5);

/// The presence row of a session held here.
pub fn presence(app: &AppState, session: &Session) -> Presence {
    Presence {
        worker: session.worker_id.clone(),
        replica: app.jobs.replica().to_owned(),
        conn_id: session.conn_id,
        connected_at: session.connected_at,
        running: session.running(),
        slots: session.slots,
        remote_addr: session.remote_addr.map(|a| a.ip().to_string()),
    }
}

/// At start, before anyone connects: rows this replica left behind (a crash) are cleared, and
/// its lease taken.
pub async fn start(app: &AppState) -> Result<(), StoreError> {
    let (me, clock) = (app.jobs.replica().to_owned(), app.clock);
    let stale = app
        .store
        .write_lease(move |tx| {
            let now = replicas::lease_clock(tx, clock.now())?;
            replicas::start(tx, &me, now)
        })
        .await?;
    if stale > 0 {
        tracing::info!(
            workers = stale,
            "cleared the presence of workers this replica held before it stopped"
        );
    }
    Ok(())
}

/// Renews the lease and takes over dead replicas, and writes changed running counts, every
/// [`BEAT`], until told to stop. The lease runs in a task of its own on the store's lease path
/// (`Store::write_lease`: its own database connection), so neither the running counts nor a
/// storm of admissions queued for the store can hold it up past [`LEASE`].
pub async fn run(app: AppState, stop: watch::Receiver<bool>) {
    let lease = tokio::spawn(keep_lease(app.clone(), stop.clone()));
    every_beat(stop, || async {
        if let Err(e) = write_running_counts(&app).await {
            tracing::warn!(error = %e, "cannot record how many jobs workers run");
        }
    })
    .await;
    let _ = lease.await;
}

async fn keep_lease(app: AppState, stop: watch::Receiver<bool>) {
    every_beat(stop, || async {
        if let Err(e) = beat(&app).await {
            tracing::warn!(error = %e, "cannot renew this replica's lease");
        }
    })
    .await;
}

/// Runs `step` every [`BEAT`] (a late step delays the next rather than bunching them) until
/// `stop` turns true.
async fn every_beat<F, Fut>(mut stop: watch::Receiver<bool>, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(BEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        step().await;
    }
}

async fn beat(app: &AppState) -> Result<(), StoreError> {
    // The instant is read inside the transaction, on the database's clock when there is one:
    // never one taken before waiting for a connection, nor one replica's skewed clock.
    let (me, clock) = (app.jobs.replica().to_owned(), app.clock);
    let taken = app
        .store
        .write_lease(move |tx| replicas::beat_on_store_clock(tx, &me, clock.now(), LEASE))
        .await?;
    for dead in &taken.dead {
        tracing::warn!(
            replica = %dead,
            workers = taken.disconnected,
            "another replica stopped renewing its lease: taken over (its workers are disconnected, its jobs wait for them)"
        );
    }
    if !taken.jobs.is_empty() {
        app.jobs.hold_taken_over(taken.jobs);
    }
    if taken.was_taken_over {
        // On the ordinary write path (it may be large), in a task of its own: the next beats
        // must not wait for it. The beat just now took the lease back, so this runs once.
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = reassert(&app).await {
                tracing::warn!(error = %e, "cannot record this replica's workers and jobs again");
            }
        });
    }
    Ok(())
}

/// This replica was thought dead and taken over: its live channels are written again, and the
/// jobs its sessions hold taken back (the worker is right here, running them).
async fn reassert(app: &AppState) -> Result<(), StoreError> {
    tracing::warn!(
        "this replica's lease had lapsed and another replica took it over; recording its workers and jobs again"
    );
    let sessions = app.registry.all();
    let rows: Vec<Presence> = sessions.iter().map(|s| presence(app, s)).collect();
    let held: Vec<(WorkerId, Vec<muster_core::job::JobId>)> = sessions
        .iter()
        .map(|s| (s.worker_id.clone(), s.jobs_held()))
        .collect();
    let me = app.jobs.replica().to_owned();
    app.store
        .write(move |tx| {
            for row in &rows {
                tx.put_presence(row)?;
            }
            for (worker, jobs) in &held {
                for job in jobs {
                    tx.adopt_job(job, worker, &me)?;
                }
            }
            Ok(())
        })
        .await
}

/// Writes the running count of every session whose count changed since it was last written.
async fn write_running_counts(app: &AppState) -> Result<(), StoreError> {
    let changed: Vec<(Arc<Session>, u32)> = app
        .registry
        .all()
        .into_iter()
        .filter_map(|s| {
            let now = s.running();
            (now != s.written_running.load(Ordering::Relaxed)).then_some((s, now))
        })
        .collect();
    for chunk in changed.chunks(500) {
        let me = app.jobs.replica().to_owned();
        let rows: Vec<(WorkerId, u64, u32)> = chunk
            .iter()
            .map(|(s, n)| (s.worker_id.clone(), s.conn_id, *n))
            .collect();
        app.store
            .write(move |tx| {
                for (worker, conn, running) in &rows {
                    tx.set_presence_running(worker, &me, *conn, *running)?;
                }
                Ok(())
            })
            .await?;
        for (session, n) in chunk {
            session.written_running.store(*n, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Whether this replica is behind on events it may have missed (its listening connection to
/// the store broke): until it has caught up it admits no worker, since a revocation it missed
/// could let one in.
#[derive(Debug, Default)]
pub struct CatchUp {
    behind: AtomicBool,
}

impl CatchUp {
    pub fn is_behind(&self) -> bool {
        self.behind.load(Ordering::SeqCst)
    }
}

/// What a replica hears from the store: events go to their handlers; a broken listening
/// connection puts the replica behind, and its return starts the catch-up. Called on a store
/// thread, so async work is spawned.
pub fn on_heard(
    heard: Heard<'_>,
    registry: &Arc<Registry>,
    jobs: &Arc<Jobs>,
    store: &Store,
    catch_up: &Arc<CatchUp>,
    runtime: &tokio::runtime::Handle,
) {
    match heard {
        Heard::Event(text) => crate::events::handle(text, registry, jobs, runtime),
        Heard::Deaf => {
            catch_up.behind.store(true, Ordering::SeqCst);
            tracing::warn!(
                "lost the store's event channel: admitting no worker until this replica has caught up"
            );
        }
        Heard::Listening => {
            let (registry, jobs, store, catch_up) = (
                Arc::clone(registry),
                Arc::clone(jobs),
                store.clone(),
                Arc::clone(catch_up),
            );
            runtime.spawn(async move {
                while let Err(e) = reconcile(&registry, &jobs, &store).await {
                    tracing::warn!(error = %e, "cannot catch up on missed events yet; retrying");
                    tokio::time::sleep(BEAT).await;
                }
                catch_up.behind.store(false, Ordering::SeqCst);
                tracing::info!("caught up on missed events: admitting workers again");
            });
        }
    }
}

/// Applies what this replica may have missed: every live session is checked against its
/// worker's record (revoked, expired, suspended or removed meanwhile: cut off), and queued jobs
/// are read again.
async fn reconcile(registry: &Registry, jobs: &Arc<Jobs>, store: &Store) -> Result<(), StoreError> {
    let workers = store.read(|tx| tx.list_workers()).await?;
    let records: std::collections::HashMap<WorkerId, muster_core::Worker> =
        workers.into_iter().map(|w| (w.id.clone(), w)).collect();
    let now = jobs.now();
    let mut cut = 0usize;
    for session in registry.all() {
        let verdict = match records.get(&session.worker_id) {
            None => Some((CloseCode::Removed, "the worker was removed")),
            Some(worker) => match worker.status(true, now) {
                WorkerStatus::Revoked => Some((CloseCode::Revoked, "the worker was revoked")),
                WorkerStatus::Expired => {
                    Some((CloseCode::Expired, "the worker's enrollment token expired"))
                }
                WorkerStatus::Suspended => Some((
                    CloseCode::Suspended,
                    "this worker's identity was used from two places at once",
                )),
                WorkerStatus::Connected | WorkerStatus::Disconnected => None,
            },
        };
        if let Some((code, reason)) = verdict {
            registry.close(&session.worker_id, code, reason);
            cut += 1;
        }
    }
    if cut > 0 {
        tracing::warn!(
            workers = cut,
            "cut off workers whose right to connect ended while this replica was not listening"
        );
    }
    jobs.pick_up_queued().await;
    Ok(())
}

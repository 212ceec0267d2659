//! The server's tasks while it runs (the listener, the dispatcher, the last-seen flusher, the
//! windows of refused attempts, the pruner, the built-in worker) and the graceful shutdown that
//! stops them in order.

use std::sync::Arc;
use std::time::Duration;

use muster_proto::control::{CloseCode, ServerMessage};
use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Started;
use super::retention::{self, Retention};
use crate::config::ServeConfig;
use crate::control::registry::{Command, Registry};
use crate::datadir::DataDir;
use crate::state::AppState;
use crate::tls::LoadedTls;
use crate::{audit, builtin, listener, router, ui};

/// How often connected workers' last-seen times are written to the store.
const LAST_SEEN_FLUSH: Duration = Duration::from_secs(60);
/// How long a shutdown waits for the built-in worker to leave.
const BUILTIN_STOP_WAIT: Duration = Duration::from_secs(5);

/// The server's tasks while it runs, and how they stop.
pub(super) struct Running {
    /// Tells the listener, the dispatcher, the last-seen flusher, the windows of refused
    /// attempts and the pruner to stop.
    stop: watch::Sender<bool>,
    serving: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
    flusher: JoinHandle<()>,
    refusal_windows: JoinHandle<()>,
    pruner: JoinHandle<()>,
    /// Sends webhook deliveries.
    webhooks: JoinHandle<()>,
    /// Writes the `token.expired` events.
    expiries: JoinHandle<()>,
    /// The edition at start, and the license's expiry warning once a day.
    license_warnings: JoinHandle<()>,
    /// The built-in worker and its own stop signal: it leaves first, like any client.
    builtin: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    /// The replica's lease and presence counts, with their own stop signal: the lease is renewed
    /// until the store closes, so other replicas do not take over while this one drains.
    replica: (watch::Sender<bool>, JoinHandle<()>),
    /// The diagnostics listener and its own stop signal: it stops last, so `/readyz` says "not
    /// ready" while the server drains.
    diag: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Running {
    pub(super) fn spawn(
        config: &ServeConfig,
        dir: &DataDir,
        app: &AppState,
        ui: Arc<ui::UiState>,
        (tcp, diag): (TcpListener, Option<TcpListener>),
        tls: Option<LoadedTls>,
        started: &Started,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let accept = listener::Listener::new(tls.map(|t| t.config));
        let diag = diag.map(|diag_listener| {
            let (stop, stopped) = watch::channel(false);
            let diagnostics = crate::diag::Diagnostics::new(app.clone(), accept.health());
            let task = tokio::spawn(crate::diag::serve(diag_listener, diagnostics, stopped));
            (stop, task)
        });
        let serving = tokio::spawn(accept.serve(tcp, router(app.clone(), ui), stopped.clone()));
        let dispatcher = tokio::spawn({
            let jobs = Arc::clone(&app.jobs);
            let mut stopped = stopped.clone();
            async move {
                // The reaper (jobs whose worker stayed away) lives and stops with the dispatcher.
                tokio::select! {
                    () = Arc::clone(&jobs).dispatch_forever() => {}
                    () = jobs.reap_forever() => {}
                    _ = stopped.wait_for(|stop| *stop) => {}
                }
            }
        });
        let flusher = tokio::spawn(flush_last_seen(app.clone(), stopped.clone()));
        let replica = {
            let (stop, stopped) = watch::channel(false);
            (
                stop,
                tokio::spawn(crate::replica::run(app.clone(), stopped)),
            )
        };
        let refusal_windows = tokio::spawn(audit::close_windows(
            Arc::clone(&app.refusals),
            app.store.clone(),
            app.clock,
            stopped.clone(),
        ));
        let license_warnings = tokio::spawn(crate::license::warn_daily(
            app.store.clone(),
            app.clock,
            stopped.clone(),
        ));
        let webhooks = tokio::spawn(crate::webhooks::run(app.clone(), stopped.clone()));
        let expiries = tokio::spawn(announce_expiries(app.clone(), stopped.clone()));
        let pruner = tokio::spawn(retention::prune_forever(
            app.store.clone(),
            app.clock,
            Retention {
                audit: config.audit_retention,
                jobs: config.job_retention,
            },
            stopped,
        ));
        let builtin = config.builtin_worker.then(|| {
            let (stop, stopped) = watch::channel(false);
            let target = builtin::Target {
                url: started.url.clone(),
                fingerprint: started
                    .tls_fingerprint
                    .as_deref()
                    .and_then(|fp| muster_client::trust::parse_fingerprint(fp).ok()),
            };
            let task = tokio::spawn(builtin::run(
                app.store.clone(),
                app.clock,
                builtin::Paths::new(dir.root(), config),
                target,
                stopped,
            ));
            (stop, task)
        });
        Self {
            stop,
            serving,
            dispatcher,
            flusher,
            refusal_windows,
            pruner,
            webhooks,
            expiries,
            license_warnings,
            builtin,
            replica,
            diag,
        }
    }

    /// Winds down: the built-in worker leaves, the listener stops accepting, no job starts any
    /// more, every worker is told when to come back, and once they are gone (or the grace period
    /// is over) their last-seen times and the counts of refused attempts are written and the
    /// store closes.
    pub(super) async fn shut_down(self, app: &AppState, config: &ServeConfig) {
        if let Some((stop, task)) = self.builtin {
            let _ = stop.send(true);
            let _ = tokio::time::timeout(BUILTIN_STOP_WAIT, task).await;
        }
        let _ = self.stop.send(true);
        let _ = self.serving.await;
        let _ = self.dispatcher.await;
        let _ = self.flusher.await;
        let _ = self.refusal_windows.await;
        let _ = self.pruner.await;
        let _ = self.webhooks.await;
        let _ = self.expiries.await;
        let _ = self.license_warnings.await;
        send_workers_away(&app.registry, config.reconnect_spread);
        if tokio::time::timeout(config.shutdown_grace, app.registry.until_empty())
            .await
            .is_err()
        {
            tracing::info!(
                connected = app.registry.len(),
                "workers still connected at the end of the grace period; stopping anyway"
            );
        }
        write_last_seen(app).await;
        let (stop, task) = self.replica;
        let _ = stop.send(true);
        let _ = task.await;
        audit::flush(&app.refusals, &app.store, app.clock).await;
        app.store.close();
        if let Some((stop, task)) = self.diag {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }
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
            CloseCode::GoingAway,
            format!("server shutting down; reconnect in {after_ms} ms"),
        );
    }
}

/// How often tokens whose lifetime ended are looked for, to write their `token.expired` event.
const EXPIRY_SWEEP: Duration = Duration::from_secs(2);

/// Writes a `token.expired` event for each token as its lifetime ends (within a sweep), until
/// told to stop.
async fn announce_expiries(app: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(EXPIRY_SWEEP);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let now = app.clock.now();
        let told = app
            .store
            .write(move |tx| muster_store::flows::tokens::announce_expired(tx, now, 500))
            .await;
        match told {
            Ok(0) => {}
            Ok(n) => tracing::info!(tokens = n, "enrollment tokens expired"),
            Err(e) => tracing::warn!(error = %e, "cannot record expired tokens"),
        }
    }
}

/// Writes last-seen times every [`LAST_SEEN_FLUSH`] until told to stop; a write in progress
/// finishes first.
async fn flush_last_seen(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(LAST_SEEN_FLUSH);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
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

//! The fleet as admins see it: listing and showing workers, creating one by hand, revoking and
//! removing one.

use std::collections::HashMap;

use muster_core::audit::Outcome;
use muster_core::credentials::generate_id;
use muster_core::{ApiKey, EnrolledVia, Name, Worker, WorkerId};
use muster_proto::ErrorCode;
use muster_proto::api::{CreateWorkerRequest, CreatedWorker, WorkerView};
use muster_proto::control::CloseCode;
use muster_store::Presence;
use muster_store::flows::workers::{self, CreateWorkerRefusal, WorkerRefusal};
use rand::rngs::OsRng;

use crate::error::AppError;
use crate::ops::Actor;
use crate::ops::cut::{self, Cut};
use crate::state::AppState;
use crate::{validate, views};

/// Every worker with its live status and stored record. Live status comes from this replica's
/// own sessions and, for workers other replicas hold, the store's presence rows: every replica
/// answers the same.
pub async fn list(app: &AppState) -> Result<Vec<WorkerView>, AppError> {
    let (workers, presence) = app
        .store
        .read(|tx| Ok((tx.list_workers()?, tx.all_presence()?)))
        .await?;
    let presence: HashMap<&WorkerId, &Presence> = presence.iter().map(|p| (&p.worker, p)).collect();
    let now = app.clock.now();
    Ok(workers
        .iter()
        .map(|w| view(app, w, presence.get(&w.id).copied(), now))
        .collect())
}

pub async fn show(app: &AppState, name: &str) -> Result<WorkerView, AppError> {
    let name = validate::name(name)?;
    let worker = find(app, &name)
        .await?
        .ok_or_else(|| no_such_worker(&name))?;
    let id = worker.id.clone();
    let presence = app.store.read(move |tx| tx.presence_of(&id)).await?;
    Ok(view(app, &worker, presence.as_ref(), app.clock.now()))
}

fn view(
    app: &AppState,
    worker: &Worker,
    presence: Option<&Presence>,
    now: muster_core::Timestamp,
) -> WorkerView {
    let session = app.registry.get(&worker.id);
    let live = views::Live::of(&worker.id, session.as_deref(), presence, app.jobs.replica());
    views::worker(worker, now, live)
}

/// The stored worker with this name, if there is one.
pub async fn find(app: &AppState, name: &Name) -> Result<Option<Worker>, AppError> {
    let key = name.clone();
    Ok(app
        .store
        .read(move |tx| tx.get_worker_by_name(&key))
        .await?)
}

pub fn no_such_worker(name: &Name) -> AppError {
    AppError::not_found(format!("no worker named `{name}`"))
        .with_hint("`muster workers list` shows the workers there are")
}

pub fn refusal(refusal: WorkerRefusal) -> AppError {
    match refusal {
        WorkerRefusal::NotFound(n) => no_such_worker(&n),
        WorkerRefusal::Builtin => AppError::conflict(
            ErrorCode::Conflict,
            "the built-in worker cannot be revoked or removed",
        )
        .with_hint("start the server with `--no-builtin-worker` to run without it"),
    }
}

/// Revokes a worker however it enrolled and, once that is on disk, closes its session.
pub async fn revoke(app: &AppState, actor: &Actor, name: &str) -> Result<WorkerView, AppError> {
    let name = validate::name(name)?;
    let now = app.clock.now();
    let event = app.audit_event(
        &actor.name,
        "worker.revoke",
        name.as_str(),
        actor.remote,
        Outcome::Ok,
        "revoked",
    );
    let key = name.clone();
    cut::write_then_cut(
        app,
        move |tx| workers::revoke(tx, &key, now, &event),
        |result| {
            let revoked = result.as_ref().ok()?;
            Some(Cut::new(
                revoked.id.clone(),
                CloseCode::Revoked,
                "the worker was revoked",
            ))
        },
    )
    .await?
    .map_err(refusal)?;
    show(app, name.as_str()).await
}

/// Creates a worker by hand and returns its API key, this once.
pub async fn create(
    app: &AppState,
    actor: &Actor,
    req: &CreateWorkerRequest,
) -> Result<CreatedWorker, AppError> {
    let name = validate::name(&req.name)?;
    let labels = validate::labels(&req.labels)?;
    let key = ApiKey::generate(&mut OsRng);
    let now = app.clock.now();
    let id = WorkerId::parse(&generate_id(&mut OsRng)).map_err(AppError::internal)?;
    let worker = Worker {
        id: id.clone(),
        name: name.clone(),
        enrolled_via: EnrolledVia::Precreated,
        token_name: None,
        machine_id: None,
        labels,
        key_hash: key.hash(),
        created_at: now,
        expires_at: None,
        revoked_at: None,
        last_seen_at: None,
        identity: Default::default(),
    };
    let event = app.audit_event(
        &actor.name,
        "worker.create",
        name.as_str(),
        actor.remote,
        Outcome::Ok,
        format!("worker {id} created by hand"),
    );
    app.store
        .write(move |tx| workers::create(tx, &worker, now, Some(&event)))
        .await?
        .map_err(|r| match r {
            CreateWorkerRefusal::WorkerExists(_) | CreateWorkerRefusal::TokenExists(_) => {
                AppError::conflict(ErrorCode::NameInUse, r).with_hint("choose another name")
            }
        })?;
    Ok(CreatedWorker {
        id: id.to_string(),
        name: name.to_string(),
        api_key: key.expose().to_owned(),
    })
}

/// Deletes a worker that is not connected, freeing its name. The built-in worker stays.
pub async fn remove(app: &AppState, actor: &Actor, name: &str) -> Result<(), AppError> {
    let name = validate::name(name)?;
    let found = find(app, &name).await?;
    // The built-in worker is always connected; "revoke it first" would be no advice for it.
    if found
        .as_ref()
        .is_some_and(|w| w.enrolled_via == EnrolledVia::Builtin)
    {
        return Err(refusal(workers::WorkerRefusal::Builtin));
    }
    let connected_elsewhere = match &found {
        Some(worker) => {
            let id = worker.id.clone();
            app.store
                .read(move |tx| tx.presence_of(&id))
                .await?
                .is_some()
        }
        None => false,
    };
    // Connected here, or to another replica.
    if let Some(worker) = found
        && (app.registry.is_connected(&worker.id) || connected_elsewhere)
    {
        return Err(AppError::conflict(
            ErrorCode::Conflict,
            format!("worker `{name}` is connected"),
        )
        .with_hint(format!(
            "revoke it first (`muster workers revoke {name}`), then remove it"
        )));
    }
    let event = app.audit_event(
        &actor.name,
        "worker.remove",
        name.as_str(),
        actor.remote,
        Outcome::Ok,
        "removed",
    );
    let key = name.clone();
    // It may have connected between the check and the delete: it has no record now.
    cut::write_then_cut(
        app,
        move |tx| workers::remove(tx, &key, &event),
        |result| {
            let id = result.as_ref().ok()?;
            Some(Cut::new(
                id.clone(),
                CloseCode::Removed,
                "the worker was removed",
            ))
        },
    )
    .await?
    .map_err(refusal)?;
    Ok(())
}

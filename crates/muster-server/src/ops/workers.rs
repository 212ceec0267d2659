//! The fleet as admins see it, and revoking a worker.

use muster_core::Name;
use muster_core::audit::Outcome;
use muster_proto::ErrorCode;
use muster_proto::api::WorkerView;
use muster_proto::control::close;
use muster_store::flows::workers::{self, WorkerRefusal};

use crate::api::error::AppError;
use crate::api::extract::Admin;
use crate::api::{validate, views};
use crate::events::ReplicaEvent;
use crate::state::AppState;

/// Every worker with its live status (from the registry) and stored record.
pub async fn list(app: &AppState) -> Result<Vec<WorkerView>, AppError> {
    let workers = app.store.read(|tx| tx.list_workers()).await?;
    let now = app.clock.now();
    Ok(workers
        .iter()
        .map(|w| views::worker(w, now, &app.registry))
        .collect())
}

pub async fn show(app: &AppState, name: &str) -> Result<WorkerView, AppError> {
    let name = validate::name(name)?;
    let key = name.clone();
    let worker = app
        .store
        .read(move |tx| tx.get_worker_by_name(&key))
        .await?;
    let worker = worker.ok_or_else(|| no_such_worker(&name))?;
    Ok(views::worker(&worker, app.clock.now(), &app.registry))
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
pub async fn revoke(app: &AppState, admin: &Admin, name: &str) -> Result<WorkerView, AppError> {
    let name = validate::name(name)?;
    let now = app.clock.now();
    let event = app.audit_event(
        &admin.actor,
        "worker.revoke",
        name.as_str(),
        admin.remote,
        Outcome::Ok,
        "revoked",
    );
    let key = name.clone();
    let revoked = app
        .store
        .write(move |tx| {
            let result = workers::revoke(tx, &key, now, &event)?;
            if let Ok(revoked) = &result {
                tx.notify(
                    &ReplicaEvent::Cut {
                        worker: revoked.id.clone(),
                        code: close::REVOKED,
                    }
                    .encode(),
                )?;
            }
            Ok(result)
        })
        .await?
        .map_err(refusal)?;
    app.registry
        .close(&revoked.id, close::REVOKED, "the worker was revoked");
    show(app, name.as_str()).await
}

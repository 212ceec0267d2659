//! `/api/v1/workers`: the fleet, and creating, revoking and removing workers.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use muster_core::audit::Outcome;
use muster_core::credentials::generate_id;
use muster_core::{ApiKey, EnrolledVia, Worker, WorkerId};
use muster_proto::ErrorCode;
use muster_proto::api::{CreateWorkerRequest, CreatedWorker, WorkerView};
use muster_proto::control::close;
use muster_store::flows::workers::{self, CreateWorkerRefusal, WorkerRefusal};
use rand::rngs::OsRng;

use crate::api::error::AppError;
use crate::api::extract::{Admin, ApiJson};
use crate::api::{validate, views};
use crate::state::AppState;

pub async fn list(
    State(app): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<WorkerView>>, AppError> {
    let workers = app.store.read(|tx| tx.list_workers()).await?;
    let now = app.clock.now();
    Ok(Json(
        workers
            .iter()
            .map(|w| views::worker(w, now, &app.registry))
            .collect(),
    ))
}

pub async fn show(
    State(app): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<WorkerView>, AppError> {
    let name = validate::name(&name)?;
    let key = name.clone();
    let worker = app
        .store
        .read(move |tx| tx.get_worker_by_name(&key))
        .await?;
    let worker = worker.ok_or_else(|| no_such_worker(&name))?;
    Ok(Json(views::worker(&worker, app.clock.now(), &app.registry)))
}

fn no_such_worker(name: &muster_core::Name) -> AppError {
    AppError::not_found(format!("no worker named `{name}`"))
        .with_hint("`muster workers list` shows the workers there are")
}

fn refusal(refusal: WorkerRefusal) -> AppError {
    match refusal {
        WorkerRefusal::NotFound(n) => no_such_worker(&n),
        WorkerRefusal::Builtin => AppError::conflict(
            ErrorCode::Conflict,
            "the built-in worker cannot be revoked or removed",
        )
        .with_hint("start the server with `--no-builtin-worker` to run without it"),
    }
}

/// Creates a worker by hand and returns its API key, this once.
pub async fn create(
    State(app): State<AppState>,
    admin: Admin,
    ApiJson(req): ApiJson<CreateWorkerRequest>,
) -> Result<(StatusCode, Json<CreatedWorker>), AppError> {
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
    };
    let event = app.audit_event(
        &admin.actor,
        "worker.create",
        name.as_str(),
        admin.remote,
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
    Ok((
        StatusCode::CREATED,
        Json(CreatedWorker {
            id: id.to_string(),
            name: name.to_string(),
            api_key: key.expose().to_owned(),
        }),
    ))
}

pub async fn revoke(
    State(app): State<AppState>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<WorkerView>, AppError> {
    let name = validate::name(&name)?;
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
        .write(move |tx| workers::revoke(tx, &key, now, &event))
        .await?
        .map_err(refusal)?;
    app.registry
        .close(&revoked.id, close::REVOKED, "the worker was revoked");
    show(State(app), admin, Path(name.to_string())).await
}

pub async fn remove(
    State(app): State<AppState>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    let name = validate::name(&name)?;
    let key = name.clone();
    let found = app
        .store
        .read(move |tx| tx.get_worker_by_name(&key))
        .await?;
    // The built-in worker is always connected; "revoke it first" would be no advice for it.
    if found
        .as_ref()
        .is_some_and(|w| w.enrolled_via == EnrolledVia::Builtin)
    {
        return Err(refusal(WorkerRefusal::Builtin));
    }
    if let Some(worker) = found
        && app.registry.is_connected(&worker.id)
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
        &admin.actor,
        "worker.remove",
        name.as_str(),
        admin.remote,
        Outcome::Ok,
        "removed",
    );
    let key = name.clone();
    let id = app
        .store
        .write(move |tx| workers::remove(tx, &key, &event))
        .await?
        .map_err(refusal)?;
    // It may have connected between the check and the delete: it has no record now.
    app.registry
        .close(&id, close::REMOVED, "the worker was removed");
    Ok(StatusCode::NO_CONTENT)
}

//! `/api/v1/workers`: the fleet, and creating, revoking and removing workers. Listing and
//! revoking are in [`crate::ops::workers`], shared with the web UI.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use muster_core::audit::Outcome;
use muster_core::credentials::generate_id;
use muster_core::{ApiKey, EnrolledVia, Worker, WorkerId};
use muster_proto::ErrorCode;
use muster_proto::api::{CreateWorkerRequest, CreatedWorker, WorkerView};
use muster_proto::control::close;
use muster_store::flows::workers::{self, CreateWorkerRefusal};
use rand::rngs::OsRng;

use crate::api::error::AppError;
use crate::api::extract::{Admin, ApiJson};
use crate::api::validate;
use crate::events::ReplicaEvent;
use crate::ops;
use crate::state::AppState;

pub async fn list(
    State(app): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<WorkerView>>, AppError> {
    Ok(Json(ops::workers::list(&app).await?))
}

pub async fn show(
    State(app): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<WorkerView>, AppError> {
    Ok(Json(ops::workers::show(&app, &name).await?))
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
    Ok(Json(ops::workers::revoke(&app, &admin, &name).await?))
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
        return Err(ops::workers::refusal(workers::WorkerRefusal::Builtin));
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
        .write(move |tx| {
            let result = workers::remove(tx, &key, &event)?;
            if let Ok(id) = &result {
                tx.notify(
                    &ReplicaEvent::Cut {
                        worker: id.clone(),
                        code: close::REMOVED,
                    }
                    .encode(),
                )?;
            }
            Ok(result)
        })
        .await?
        .map_err(ops::workers::refusal)?;
    // It may have connected between the check and the delete: it has no record now.
    app.registry
        .close(&id, close::REMOVED, "the worker was removed");
    Ok(StatusCode::NO_CONTENT)
}

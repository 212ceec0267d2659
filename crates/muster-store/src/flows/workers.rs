//! Workers: admitting a connection, creating one by hand, revoking and removing.

use muster_core::audit::AuditEvent;
use muster_core::token::RevokeOutcome;
use muster_core::worker::{Admission, AdmitRefusal};
use muster_core::{MachineId, Name, Timestamp, Worker, WorkerId};

use crate::error::StoreResult;
use crate::flows::license;
use crate::tx::Tx;

/// Checks a connecting worker's credentials. Binds a pre-created worker to its first machine
/// (a conditional update: when two machines race with one key, one wins).
pub fn admit(
    tx: &mut dyn Tx,
    id: &WorkerId,
    presented_key: &str,
    machine: &MachineId,
    now: Timestamp,
) -> StoreResult<Result<Worker, AdmitRefusal>> {
    let Some(mut worker) = tx.get_worker(id)? else {
        return Ok(Err(AdmitRefusal::UnknownIdentity));
    };
    match worker.admit(presented_key, machine, now) {
        Err(refusal) => Ok(Err(refusal)),
        Ok(Admission::Admit) => Ok(Ok(worker)),
        Ok(Admission::AdmitAndBind) => {
            // A pre-created worker's first connection is its joining.
            if let Err(refusal) = license::check_joining_worker(tx, &worker, now)? {
                return Ok(Err(refusal));
            }
            if tx.bind_worker_machine(id, machine)? {
                worker.machine_id = Some(machine.clone());
                Ok(Ok(worker))
            } else {
                Ok(Err(AdmitRefusal::OtherMachine(worker.name.clone())))
            }
        }
    }
}

/// Whether `admit` would need to write (a pre-created worker's first connection). Lets the
/// server admit the common case on a read-only connection.
pub fn admission_needs_write(worker: &Worker) -> bool {
    worker.machine_id.is_none()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateWorkerRefusal {
    #[error("a worker named `{0}` already exists")]
    WorkerExists(Name),
    #[error("an enrollment token named `{0}` is still usable; its worker would take this name")]
    TokenExists(Name),
}

/// Stores a worker created by hand (or the built-in one).
pub fn create(
    tx: &mut dyn Tx,
    worker: &Worker,
    now: Timestamp,
    audit: Option<&AuditEvent>,
) -> StoreResult<Result<(), CreateWorkerRefusal>> {
    if tx.get_worker_by_name(&worker.name)?.is_some() {
        return Ok(Err(CreateWorkerRefusal::WorkerExists(worker.name.clone())));
    }
    if let Some(token) = tx.get_token(&worker.name)?
        && !token.state_at(now).is_terminal()
    {
        return Ok(Err(CreateWorkerRefusal::TokenExists(worker.name.clone())));
    }
    tx.insert_worker(worker)?;
    if let Some(audit) = audit {
        tx.insert_audit(audit)?;
    }
    Ok(Ok(()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRevoked {
    pub id: WorkerId,
    /// False when it was already revoked.
    pub changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerRefusal {
    #[error("no worker named `{0}`")]
    NotFound(Name),
    #[error(
        "the built-in worker cannot be revoked or removed; start the server with `--no-builtin-worker` instead"
    )]
    Builtin,
}

/// Revokes a worker however it enrolled; a token-enrolled worker's token is revoked with it, so
/// the machine cannot come back by presenting the token again.
pub fn revoke(
    tx: &mut dyn Tx,
    name: &Name,
    now: Timestamp,
    audit: &AuditEvent,
) -> StoreResult<Result<WorkerRevoked, WorkerRefusal>> {
    let worker = match changeable(tx, name)? {
        Ok(worker) => worker,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let changed = tx.revoke_worker(&worker.id, now)?;
    if let Some(token_name) = &worker.token_name
        && let Some(token) = tx.get_token(token_name)?
        && token.revoke(now) == Ok(RevokeOutcome::Revoke)
    {
        tx.revoke_token(token_name, now)?;
    }
    let mut audit = audit.clone();
    if !changed {
        audit.detail = "already revoked; nothing changed".into();
    }
    tx.insert_audit(&audit)?;
    Ok(Ok(WorkerRevoked {
        id: worker.id,
        changed,
    }))
}

/// Deletes a worker record, and revokes the token it enrolled with. The caller checks it is not
/// connected.
pub fn remove(
    tx: &mut dyn Tx,
    name: &Name,
    audit: &AuditEvent,
) -> StoreResult<Result<WorkerId, WorkerRefusal>> {
    let worker = match changeable(tx, name)? {
        Ok(worker) => worker,
        Err(refusal) => return Ok(Err(refusal)),
    };
    tx.delete_worker(&worker.id)?;
    // Its token goes with it, or the machine it is bound to could present it again and come
    // back as a new worker. The removal happens at the time its audit record gives.
    if let Some(token_name) = &worker.token_name
        && let Some(token) = tx.get_token(token_name)?
        && token.revoke(audit.at) == Ok(RevokeOutcome::Revoke)
    {
        tx.revoke_token(token_name, audit.at)?;
    }
    tx.insert_audit(audit)?;
    Ok(Ok(worker.id))
}

/// The worker called `name`, if an admin may revoke or remove it: it exists and is not the
/// server's built-in worker.
fn changeable(tx: &mut dyn Tx, name: &Name) -> StoreResult<Result<Worker, WorkerRefusal>> {
    let Some(worker) = tx.get_worker_by_name(name)? else {
        return Ok(Err(WorkerRefusal::NotFound(name.clone())));
    };
    if worker.enrolled_via == muster_core::EnrolledVia::Builtin {
        return Ok(Err(WorkerRefusal::Builtin));
    }
    Ok(Ok(worker))
}

/// Records when workers were last seen, in one transaction for many workers.
pub fn touch_many(tx: &mut dyn Tx, seen: &[(WorkerId, Timestamp)]) -> StoreResult<()> {
    tx.touch_workers(seen)
}

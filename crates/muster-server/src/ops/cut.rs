//! Cutting a worker off after a change: the one way it is done.
//!
//! A change that takes a worker's right to be connected (revoking it or its token, removing it,
//! replacing its identity) is written together with a [`ReplicaEvent::Cut`] in the same
//! transaction, so every replica sharing the database hears of it exactly when it commits; and
//! only after the commit does this replica close the worker's session, so a worker is never cut
//! off for a change that did not happen. A session that registers in between re-checks its
//! record (see `control::connect`), so none slips through.

use muster_core::WorkerId;
use muster_proto::control::CloseCode;
use muster_store::{StoreError, Tx};

use crate::events::ReplicaEvent;
use crate::state::AppState;

/// A worker to cut off once a change commits: who, with which close code, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub worker: WorkerId,
    pub code: CloseCode,
    pub reason: &'static str,
}

impl Cut {
    pub fn new(worker: WorkerId, code: CloseCode, reason: &'static str) -> Self {
        Self {
            worker,
            code,
            reason,
        }
    }
}

/// Runs `change` in one write transaction. If `cut` names a worker from its outcome, the other
/// replicas are told in that transaction, and after the commit the worker's session here is
/// closed. Returns the change's outcome.
pub async fn write_then_cut<T, F, C>(app: &AppState, change: F, cut: C) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn Tx) -> Result<T, StoreError> + Send + 'static,
    C: FnOnce(&T) -> Option<Cut> + Send + 'static,
{
    let (outcome, cut) = app
        .store
        .write(move |tx| {
            let outcome = change(tx)?;
            let cut = cut(&outcome);
            if let Some(cut) = &cut {
                let event = ReplicaEvent::Cut {
                    worker: cut.worker.clone(),
                    code: cut.code,
                };
                tx.notify(&event.encode())?;
            }
            Ok((outcome, cut))
        })
        .await?;
    if let Some(cut) = cut {
        app.registry.close(&cut.worker, cut.code, cut.reason);
    }
    Ok(outcome)
}

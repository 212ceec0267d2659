//! Writing and reading the audit log.

use muster_core::audit::{AuditEvent, AuditRecord};

use crate::error::StoreResult;
use crate::tx::{AuditFilter, Tx};

pub fn append(tx: &mut dyn Tx, event: &AuditEvent) -> StoreResult<()> {
    tx.insert_audit(event)
}

/// Writes several records at once, in order, each queued for the webhooks that want it: what
/// [`append`] does for each, with one insert and one read of the webhooks.
pub fn append_many(tx: &mut dyn Tx, events: &[AuditEvent]) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let seqs = tx.append_audits(events)?;
    let webhooks = tx.list_webhooks()?;
    for (seq, event) in seqs.into_iter().zip(events) {
        crate::flows::webhooks::fan_out_to(tx, &webhooks, seq, event)?;
    }
    Ok(())
}

pub fn list(tx: &mut dyn Tx, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
    tx.list_audit(filter)
}

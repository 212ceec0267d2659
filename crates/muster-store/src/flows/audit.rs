//! Writing and reading the audit log.

use muster_core::audit::{AuditEvent, AuditRecord};

use crate::error::StoreResult;
use crate::tx::{AuditFilter, Tx};

pub fn append(tx: &mut dyn Tx, event: &AuditEvent) -> StoreResult<()> {
    tx.insert_audit(event)
}

pub fn list(tx: &mut dyn Tx, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
    tx.list_audit(filter)
}

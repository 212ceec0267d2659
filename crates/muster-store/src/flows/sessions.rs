//! What a server records about its workers' control channels as they open and close, and the
//! tickets they confirm: several of these at once in one transaction, each kind in one
//! statement where the backend can (see `Tx::touch_workers`, `Tx::put_presences`,
//! `Tx::append_audits`). A reconnect storm then costs the database a few statements per group
//! instead of several transactions per worker.
//!
//! Nothing here takes a name lock or a serialization scope: every write is keyed by worker id
//! (rows of one worker, its presence row, new audit rows), so a group holds no lock another
//! flow waits on in a different order for long, and each record means the same whether it is
//! written alone or with others.

use std::collections::HashMap;

use muster_core::audit::AuditEvent;
use muster_core::tickets::{TicketHash, TicketLedger};
use muster_core::{Timestamp, WorkerId};

use crate::error::StoreResult;
use crate::flows::audit;
use crate::tx::{Presence, Tx};

/// One thing to record.
#[derive(Debug, Clone)]
pub enum SessionRecord {
    /// A control channel opened: its presence row (which every replica reads), the worker seen
    /// at the connection's start, and the `worker.connected` audit record.
    Opened {
        presence: Presence,
        event: AuditEvent,
    },
    /// A control channel ended: the worker's last-seen time, its presence row cleared if it is
    /// still this connection's, and the `worker.disconnected` audit record.
    Closed {
        worker: WorkerId,
        replica: String,
        conn_id: u64,
        last_seen: Timestamp,
        event: AuditEvent,
    },
    /// The worker saved the ticket its connection was issued (see
    /// [`confirm_ticket`](crate::flows::identity::confirm_ticket)).
    TicketSaved {
        worker: WorkerId,
        ticket: TicketHash,
        remote: Option<String>,
    },
}

/// Writes `records` in the transaction `tx`. Returns one answer per record, in order: for a
/// ticket, whether it was confirmed; for the others, `true`.
///
/// Order within a group: last-seen times only move forward, and an open and a close in one
/// group are of different connections (a close is recorded only after its open was), so
/// presence rows are written before the closes clear theirs, and the result is the same as
/// writing the records one by one.
pub fn write(tx: &mut dyn Tx, records: &[SessionRecord]) -> StoreResult<Vec<bool>> {
    let mut seen = Vec::new();
    let mut opened = Vec::new();
    let mut closed: Vec<(String, Vec<(WorkerId, u64)>)> = Vec::new();
    let mut events = Vec::new();
    for record in records {
        match record {
            SessionRecord::Opened { presence, event } => {
                seen.push((presence.worker.clone(), presence.connected_at));
                opened.push(presence.clone());
                events.push(event.clone());
            }
            SessionRecord::Closed {
                worker,
                replica,
                conn_id,
                last_seen,
                event,
            } => {
                seen.push((worker.clone(), *last_seen));
                match closed.iter_mut().find(|(r, _)| r == replica) {
                    Some((_, conns)) => conns.push((worker.clone(), *conn_id)),
                    None => closed.push((replica.clone(), vec![(worker.clone(), *conn_id)])),
                }
                events.push(event.clone());
            }
            SessionRecord::TicketSaved { .. } => {}
        }
    }
    tx.touch_workers(&seen)?;
    tx.put_presences(&opened)?;
    for (replica, conns) in &closed {
        tx.drop_presences(replica, conns)?;
    }
    audit::append_many(tx, &events)?;
    confirm_tickets(tx, records)
}

/// The saved tickets among `records`, confirmed as [`confirm_ticket`](crate::flows::identity::confirm_ticket) would one after
/// the other (two of one worker: the second is judged on what the first left), with one read
/// and one write for all.
fn confirm_tickets(tx: &mut dyn Tx, records: &[SessionRecord]) -> StoreResult<Vec<bool>> {
    let mut asked: Vec<WorkerId> = records
        .iter()
        .filter_map(|record| match record {
            SessionRecord::TicketSaved { worker, .. } => Some(worker.clone()),
            _ => None,
        })
        .collect();
    asked.sort_unstable();
    asked.dedup();
    let mut ledgers: HashMap<WorkerId, (TicketLedger, Option<String>, bool)> = if asked.is_empty() {
        HashMap::new()
    } else {
        // Locked (in id order): the ledgers are written back below, and an admission of one of
        // these workers may be running beside this group (see `Tx::get_worker_for_update`).
        tx.get_workers_for_update(&asked)?
            .into_iter()
            .map(|w| (w.id, (w.identity.tickets, None, false)))
            .collect()
    };
    let answers = records
        .iter()
        .map(|record| match record {
            SessionRecord::TicketSaved {
                worker,
                ticket,
                remote,
            } => {
                let Some((tickets, last_remote, changed)) = ledgers.get_mut(worker) else {
                    return false;
                };
                if !tickets.confirm(ticket) {
                    return false;
                }
                *changed = true;
                if remote.is_some() {
                    last_remote.clone_from(remote);
                }
                true
            }
            SessionRecord::Opened { .. } | SessionRecord::Closed { .. } => true,
        })
        .collect();
    let changes: Vec<(WorkerId, TicketLedger, Option<String>)> = ledgers
        .into_iter()
        .filter(|(_, (_, _, changed))| *changed)
        .map(|(id, (tickets, remote, _))| (id, tickets, remote))
        .collect();
    tx.set_workers_tickets(&changes)?;
    Ok(answers)
}

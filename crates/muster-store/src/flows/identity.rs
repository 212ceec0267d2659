//! A worker's connection as its identity sees it: the key it proves, the ticket it presents and
//! the one it is given, the acknowledgement that confirms that one, and the suspension of an
//! identity found in two places. The rules are `muster_core::tickets`'; this applies them
//! atomically, each step in one transaction.

use muster_core::audit::AuditEvent;
use muster_core::identity::PublicKey;
use muster_core::tickets::{Presented, TicketHash};
use muster_core::worker::{Admission, AdmitRefusal};
use muster_core::{MachineId, Timestamp, Worker, WorkerId};

use crate::error::StoreResult;
use crate::flows::license;
use crate::tx::Tx;

/// A connection that proved it holds `public_key` (the server checked the signature).
#[derive(Debug, Clone)]
pub struct Connection {
    pub worker: WorkerId,
    pub api_key: String,
    pub machine: MachineId,
    pub public_key: PublicKey,
    /// The ticket it presented, hashed; `None` if it holds none.
    pub presented: Option<TicketHash>,
    /// The ticket it will be given if admitted.
    pub issued: TicketHash,
    pub now: Timestamp,
}

/// What opening a session found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// Admitted; `issued` is now pending. `key_bound` is true when this connection recorded the
    /// worker's first key (a worker enrolled before keys existed).
    Admitted { worker: Worker, key_bound: bool },
    /// The presented ticket is not one this worker's state dir can hold: another copy of it moved
    /// on. Nothing was written; whether it is a verdict depends on the presenter being alive.
    Copied { worker: Worker },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectRefusal {
    #[error(transparent)]
    Admit(AdmitRefusal),
    /// The worker has a key, and the connection proved another one.
    #[error("worker `{0}` proves itself with another key")]
    OtherKey(muster_core::Name),
}

/// Admits a connection that proved `public_key`, judges its ticket, and issues the next one.
/// Binds a pre-created worker's machine and a key-less worker's key on first use (conditional
/// updates: of two racing connections, one wins).
pub fn open_session(
    tx: &mut dyn Tx,
    c: &Connection,
) -> StoreResult<Result<Opened, ConnectRefusal>> {
    // Allowed to lock, admission never defers: a bug if it did.
    admit(tx, c, true)?.ok_or_else(|| {
        crate::StoreError::Backend("an admission allowed to lock was deferred".into())
    })
}

/// One admission's outcome in a group ([`open_sessions`]). Its size does not matter: each lives
/// only until its caller takes it.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum GroupedOpen {
    /// Decided and, if admitted, written: committed with the group.
    Done(Result<Opened, ConnectRefusal>),
    /// Needs a transaction of its own ([`open_session`]): the first connection of a pre-created
    /// worker counts licence seats under a lock. Nothing was written.
    Alone,
    /// Failed and undone (a deadlock's victim, say); the others were not. Worth trying alone.
    Failed(crate::StoreError),
}

/// [`open_session`] for many connections in one transaction (a reconnect storm), each in a
/// savepoint ([`crate::flows::group`]), taken in the order of their worker ids: every group
/// locks worker rows in one order, so two groups (of this replica or another) cannot deadlock.
/// Answers in the order given. A group of one is [`open_session`] itself.
pub fn open_sessions(tx: &mut dyn Tx, connections: &[Connection]) -> StoreResult<Vec<GroupedOpen>> {
    if let [c] = connections {
        return Ok(vec![GroupedOpen::Done(open_session(tx, c)?)]);
    }
    let mut order: Vec<usize> = (0..connections.len()).collect();
    order.sort_by(|&a, &b| connections[a].worker.cmp(&connections[b].worker));
    let mut answers: Vec<Option<GroupedOpen>> = connections.iter().map(|_| None).collect();
    for i in order {
        let answer = match super::group::isolated(tx, |tx| admit(tx, &connections[i], false))? {
            Ok(Some(opened)) => GroupedOpen::Done(opened),
            Ok(None) => GroupedOpen::Alone,
            Err(e) => GroupedOpen::Failed(e),
        };
        answers[i] = Some(answer);
    }
    Ok(answers
        .into_iter()
        .map(|a| a.unwrap_or(GroupedOpen::Alone))
        .collect())
}

/// The admission's outcome, or `None` when `may_lock` is false and it needs a lock (nothing was
/// written then).
fn admit(
    tx: &mut dyn Tx,
    c: &Connection,
    may_lock: bool,
) -> StoreResult<Option<Result<Opened, ConnectRefusal>>> {
    let done = |opened| Ok(Some(opened));
    // Locked: the ledger read here is written back below (see `Tx::get_worker_for_update`).
    let Some(mut worker) = tx.get_worker_for_update(&c.worker)? else {
        return done(Err(ConnectRefusal::Admit(AdmitRefusal::UnknownIdentity)));
    };
    let admission = match worker.admit(&c.api_key, &c.machine, c.now) {
        Ok(admission) => admission,
        Err(refusal) => return done(Err(ConnectRefusal::Admit(refusal))),
    };
    if worker
        .identity
        .public_key
        .is_some_and(|k| k != c.public_key)
    {
        return done(Err(ConnectRefusal::OtherKey(worker.name.clone())));
    }
    let mut tickets = worker.identity.tickets.clone();
    if tickets.present(c.presented.as_ref()) == Presented::Copied {
        return done(Ok(Opened::Copied { worker }));
    }
    if admission == Admission::AdmitAndBind {
        if !may_lock {
            return Ok(None);
        }
        // A pre-created worker's first connection is its joining.
        if let Err(refusal) = license::check_joining_worker(tx, &worker, c.now)? {
            return done(Err(ConnectRefusal::Admit(refusal)));
        }
        if !tx.bind_worker_machine(&c.worker, &c.machine)? {
            return done(Err(ConnectRefusal::Admit(AdmitRefusal::OtherMachine(
                worker.name.clone(),
            ))));
        }
        worker.machine_id = Some(c.machine.clone());
    }
    let key_bound = worker.identity.public_key.is_none();
    if key_bound {
        if !tx.set_worker_public_key(&c.worker, &c.public_key)? {
            // Another connection bound a key first: decide on what it bound.
            return done(Err(ConnectRefusal::OtherKey(worker.name.clone())));
        }
        worker.identity.public_key = Some(c.public_key);
    }
    tickets.issue(c.issued);
    tx.set_worker_tickets(&c.worker, &tickets, None)?;
    worker.identity.tickets = tickets;
    done(Ok(Opened::Admitted { worker, key_bound }))
}

/// The worker saved the ticket it was given: it becomes the confirmed one, if still pending.
/// Returns whether it did (an acknowledgement that arrives after a newer connection settled
/// things changes nothing, and says nothing about copies).
pub fn confirm_ticket(
    tx: &mut dyn Tx,
    worker: &WorkerId,
    saved: &TicketHash,
    remote: Option<&str>,
) -> StoreResult<bool> {
    let Some(record) = tx.get_worker_for_update(worker)? else {
        return Ok(false);
    };
    let mut tickets = record.identity.tickets;
    if !tickets.confirm(saved) {
        return Ok(false);
    }
    tx.set_worker_tickets(worker, &tickets, remote)
}

/// Suspends an identity found in two places at once, with its audit record. Returns whether
/// this call suspended it (false if it already was).
pub fn suspend(
    tx: &mut dyn Tx,
    worker: &WorkerId,
    at: Timestamp,
    audit: &AuditEvent,
) -> StoreResult<bool> {
    let changed = tx.suspend_worker(worker, at)?;
    if changed {
        tx.insert_audit(audit)?;
    }
    Ok(changed)
}

/// After the database was restored from a backup: forgets every worker's tickets, so that each
/// worker's next connection is judged by its key alone and its ticket, possibly newer than the
/// backup's, becomes the one it holds (see `muster_core::tickets`). Returns how many workers had
/// tickets to forget.
pub fn forget_tickets(tx: &mut dyn Tx) -> StoreResult<usize> {
    let mut forgotten = 0;
    for worker in tx.list_workers()? {
        let mut tickets = worker.identity.tickets;
        if tickets.is_empty() {
            continue;
        }
        tickets.forget();
        tx.set_worker_tickets(&worker.id, &tickets, None)?;
        forgotten += 1;
    }
    Ok(forgotten)
}

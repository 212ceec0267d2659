//! [`Tx`]: the one trait every storage backend implements.
//!
//! It is deliberately small and dumb — rows in, rows out, and compare-and-set updates that report
//! whether they applied. All the decisions live in `muster-core`; the multi-step procedures that
//! apply them atomically live once in [`crate::flows`], written against this trait, so a second
//! backend is a second implementation of these primitives and not a second copy of the logic.
//!
//! Every method runs inside a transaction the backend opened. Writes become visible and durable
//! only when the backend commits, which it does before anyone is told the outcome.

use muster_core::audit::{AuditEvent, AuditRecord};
use muster_core::events::EventType;
use muster_core::identity::PublicKey;
use muster_core::job::{EndingKind, Job, JobId, JobState};
use muster_core::tickets::TicketLedger;
use muster_core::token::TokenState;
use muster_core::{EnrolledVia, MachineId, Name, SecretHash, Timestamp, Token, Worker, WorkerId};

use crate::error::StoreResult;

/// Which audit records to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only records with `seq` below this (for paging backwards).
    pub before_seq: Option<i64>,
    /// Only actions starting with this prefix (`token.`, `enroll`).
    pub action_prefix: Option<String>,
    /// Only records whose target, actor or detail contains this text.
    pub contains: Option<String>,
    /// Only records about the worker of this name: it is the target, or the worker itself acted
    /// (actor `worker:<name>`). Read along indexes on target and actor, not by text.
    pub worker: Option<String>,
    pub limit: u32,
}

/// Which jobs to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub worker: Option<Name>,
    /// Only jobs after this one in the order (newest first: created before it, or at the same
    /// instant with a smaller id; `reverse` the other way): the last job of the previous page.
    pub before: Option<(Timestamp, JobId)>,
    pub limit: u32,
    /// Oldest first instead.
    pub reverse: bool,
}

/// A worker's status as far as the store can tell. Whether a live worker is connected is known
/// only to the server's registry, so `connected` and `disconnected` are both [`Self::Live`] here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredStatus {
    Revoked,
    /// Not revoked, and suspended (a cloned identity).
    Suspended,
    /// Neither revoked nor suspended, and past its deadline.
    Expired,
    /// None of the above: connected or disconnected.
    Live,
}

/// One label a worker must carry: the key, and the value when one is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMatch {
    pub key: String,
    pub value: Option<String>,
}

/// One page of workers in name order. Every filter given must hold.
#[derive(Debug, Clone)]
pub struct WorkerPage {
    /// Only workers past this one in the order (the last of the previous page).
    pub after: Option<WorkerPosition>,
    /// The order: by which column, and which way.
    pub sort: WorkerSort,
    pub descending: bool,
    /// Only names containing this text.
    pub name_contains: Option<String>,
    pub labels: Vec<LabelMatch>,
    pub status: Option<StoredStatus>,
    /// Only workers with a presence row (connected to some replica, as the store knows): the
    /// `connected` filter, answered on the page's own index rather than by reading every
    /// connected worker's record.
    pub present: bool,
    /// The instant `expired` is judged at.
    pub now: Timestamp,
    pub limit: u32,
}

/// What a page of workers is sorted by. The name breaks ties (names are unique), so each order
/// is total and pages by the keyset (the column, the name); an index serves each (migration
/// 0013).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WorkerSort {
    #[default]
    Name,
    /// When the record was made (enrolled or pre-created).
    Created,
    /// When the worker was last heard from, as stored (connected workers' times are written
    /// every few seconds); never heard from sorts as the oldest.
    LastSeen,
}

impl WorkerSort {
    pub const ALL: [WorkerSort; 3] = [WorkerSort::Name, WorkerSort::Created, WorkerSort::LastSeen];

    /// The word the API and the UI use for it.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerSort::Name => "name",
            WorkerSort::Created => "created",
            WorkerSort::LastSeen => "last_seen",
        }
    }

    /// Where `worker` stands in this order (the name aside): its sort column's value, 0 for the
    /// name order and for a worker never seen.
    pub fn key_of(self, worker: &Worker) -> i64 {
        match self {
            WorkerSort::Name => 0,
            WorkerSort::Created => worker.created_at.unix_millis(),
            WorkerSort::LastSeen => worker.last_seen_at.map_or(0, Timestamp::unix_millis),
        }
    }

    /// The position of `worker` in this order, for the next page's start.
    pub fn position_of(self, worker: &Worker) -> WorkerPosition {
        WorkerPosition {
            key: self.key_of(worker),
            name: worker.name.clone(),
        }
    }
}

/// A worker's place in a [`WorkerSort`] order: its sort column's value and its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkerPosition {
    pub key: i64,
    pub name: Name,
}

/// The fleet in numbers, for the overview above the Workers page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetOverview {
    /// Every worker on record.
    pub total: u64,
    pub revoked: u64,
    pub suspended: u64,
    /// Past their deadline, neither revoked nor suspended.
    pub expired: u64,
    /// The most common labels (`key=value`) and how many workers carry each, most first.
    pub labels: Vec<(String, u64)>,
    /// Workers created (enrolled or pre-created) in each hour of the window, oldest first.
    pub enrolled: Vec<u64>,
    /// Workers revoked or expired in each hour of the window, oldest first.
    pub cut_off: Vec<u64>,
}

/// One page of tokens, oldest first (created_at, then name), or with `reverse` newest first.
#[derive(Debug, Clone)]
pub struct TokenPage {
    pub reverse: bool,
    /// Only tokens after this one in the order (the last of the previous page).
    pub after: Option<(Timestamp, Name)>,
    /// Only tokens in this effective state at `now`.
    pub state: Option<TokenState>,
    pub now: Timestamp,
    pub limit: u32,
}

/// One TLS ticket key as the store keeps it: sealed (the store never sees it in the clear), for
/// the certificate (its fingerprint) it belongs to and the rotation period it seals tickets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedTicketKey {
    pub certificate: String,
    pub period: i64,
    pub sealed: Vec<u8>,
}

/// A worker's live control channel, as recorded for every replica to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub worker: WorkerId,
    /// The replica holding the channel.
    pub replica: String,
    /// The connection on that replica: a newer connection's row is never cleared by an older
    /// one's end.
    pub conn_id: u64,
    pub connected_at: Timestamp,
    pub running: u32,
    pub slots: u32,
    pub remote_addr: Option<String>,
}

/// Where a job's stored output stands, so that a replica that takes the job over numbers the
/// next chunk after the last one and keeps counting toward the per-job cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputPosition {
    pub last_seq: u64,
    pub stored_bytes: u64,
}

/// How a job ended, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnd {
    pub state: JobState,
    pub at: Timestamp,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub ending: EndingKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub seq: u64,
    pub stream: u8,
    pub data: Vec<u8>,
}

/// A stored chunk of output and when the server received it (`None` for output stored before
/// migration 0012).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedChunk {
    pub chunk: OutputChunk,
    pub at: Option<Timestamp>,
}

/// What [`Tx::serialize`] serializes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Joining the fleet: enrollment counts, names in use, seats.
    Enrollment,
}

impl Scope {
    /// A number of its own, for PostgreSQL's advisory locks.
    pub fn lock_key(self) -> i64 {
        match self {
            // "muster" in ASCII, then the scope.
            Scope::Enrollment => 0x6d75_7374_6572_0001,
        }
    }
}

/// A webhook: where events are POSTed, signed with its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub secret: String,
    /// The event types it receives; empty: every event.
    pub events: Vec<EventType>,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("events", &self.events)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl Webhook {
    pub fn wants(&self, event: EventType) -> bool {
        self.events.is_empty() || self.events.contains(&event)
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not yet answered with a 2xx, and still within its retry window.
    Pending,
    /// A receiver answered 2xx: never sent again.
    Delivered,
    /// Given up: the retry window ended, or its event was pruned.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        match input {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "failed" => Some(DeliveryState::Failed),
            _ => None,
        }
    }
}

/// One event on its way to one webhook, with what its last attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: String,
    pub event_seq: i64,
    pub event_type: EventType,
    pub created_at: Timestamp,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_attempt_at: Option<Timestamp>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
}

/// A delivery a sender claimed, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery: Delivery,
    pub url: String,
    pub secret: String,
    /// The event; `None` when retention pruned its audit record meanwhile.
    pub event: Option<AuditRecord>,
}

/// What an attempt got, and so what becomes of its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at: Timestamp,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why it failed, for the delivery log (never a secret).
    pub error: Option<String>,
    pub next: AttemptNext,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptNext {
    Delivered,
    RetryAt(Timestamp),
    GiveUp,
}

pub trait Tx {
    // ---- tokens ----
    fn insert_token(&mut self, token: &Token) -> StoreResult<()>;
    fn get_token(&mut self, name: &Name) -> StoreResult<Option<Token>>;
    fn list_tokens(&mut self) -> StoreResult<Vec<Token>>;
    /// Unrevoked tokens whose lifetime ended in `(after, until]`, soonest first, at most
    /// `limit`: the `token.expired` events still to write.
    fn tokens_expiring(
        &mut self,
        after: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<Token>>;
    /// One page of tokens (keyset paging: the cost of a page does not grow with its depth).
    fn page_tokens(&mut self, page: &TokenPage) -> StoreResult<Vec<Token>>;
    /// Binds an unused token: applies only if the token is still unbound and unrevoked. Returns
    /// whether it applied. This conditional update is what makes single use atomic.
    fn bind_token(&mut self, name: &Name, machine: &MachineId, at: Timestamp) -> StoreResult<bool>;
    /// Sets `revoked_at` if it is still unset. Returns whether it applied.
    fn revoke_token(&mut self, name: &Name, at: Timestamp) -> StoreResult<bool>;

    // ---- workers ----
    fn insert_worker(&mut self, worker: &Worker) -> StoreResult<()>;
    fn get_worker(&mut self, id: &WorkerId) -> StoreResult<Option<Worker>>;
    /// [`Tx::get_worker`] for a read that the transaction writes back (the worker's ticket
    /// ledger): on PostgreSQL the row stays locked until the transaction ends (`FOR UPDATE`), so
    /// a concurrent transaction doing the same waits and then reads what this one wrote, instead
    /// of writing back what it read before and erasing it. SQLite's one writer already runs
    /// write transactions one at a time.
    fn get_worker_for_update(&mut self, id: &WorkerId) -> StoreResult<Option<Worker>> {
        self.get_worker(id)
    }
    fn get_worker_by_name(&mut self, name: &Name) -> StoreResult<Option<Worker>>;
    fn get_worker_by_token(&mut self, token: &Name) -> StoreResult<Option<Worker>>;
    fn list_workers(&mut self) -> StoreResult<Vec<Worker>>;
    /// One page of workers in name order (keyset paging).
    fn page_workers(&mut self, page: &WorkerPage) -> StoreResult<Vec<Worker>>;
    fn set_worker_key(&mut self, id: &WorkerId, key: &SecretHash) -> StoreResult<bool>;
    fn set_worker_labels(
        &mut self,
        id: &WorkerId,
        labels: &muster_core::Labels,
    ) -> StoreResult<bool>;
    /// Binds a pre-created worker to the first machine that connects with its key: applies only
    /// while no machine is bound.
    fn bind_worker_machine(&mut self, id: &WorkerId, machine: &MachineId) -> StoreResult<bool>;
    /// Records the public key a worker proves itself with, if it has none yet (a worker enrolled
    /// before keys existed binds one at its next connection). Returns whether it applied.
    fn set_worker_public_key(&mut self, id: &WorkerId, key: &PublicKey) -> StoreResult<bool>;
    /// Stores a worker's tickets; `remote` (when given) is where the confirmed one came from.
    fn set_worker_tickets(
        &mut self,
        id: &WorkerId,
        tickets: &TicketLedger,
        remote: Option<&str>,
    ) -> StoreResult<bool>;
    /// Sets `suspended_at` if it is still unset. Returns whether it applied.
    fn suspend_worker(&mut self, id: &WorkerId, at: Timestamp) -> StoreResult<bool>;
    /// Sets `revoked_at` if it is still unset. Returns whether it applied.
    fn revoke_worker(&mut self, id: &WorkerId, at: Timestamp) -> StoreResult<bool>;
    fn delete_worker(&mut self, id: &WorkerId) -> StoreResult<bool>;
    fn touch_worker(&mut self, id: &WorkerId, at: Timestamp) -> StoreResult<()>;
    /// The workers of these ids that exist, in no particular order. One statement on
    /// PostgreSQL.
    fn get_workers(&mut self, ids: &[WorkerId]) -> StoreResult<Vec<Worker>> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            found.extend(self.get_worker(id)?);
        }
        Ok(found)
    }
    /// [`Tx::get_workers`] locked as [`Tx::get_worker_for_update`] locks one, in id order (every
    /// transaction that locks several workers locks them in that order, so none deadlocks).
    fn get_workers_for_update(&mut self, ids: &[WorkerId]) -> StoreResult<Vec<Worker>> {
        self.get_workers(ids)
    }
    /// [`Tx::set_worker_tickets`] for several workers, one entry each. One statement on
    /// PostgreSQL.
    fn set_workers_tickets(
        &mut self,
        changes: &[(WorkerId, TicketLedger, Option<String>)],
    ) -> StoreResult<()> {
        for (id, tickets, remote) in changes {
            self.set_worker_tickets(id, tickets, remote.as_deref())?;
        }
        Ok(())
    }
    /// [`Tx::touch_worker`] for several workers (a worker may appear more than once: its latest
    /// time counts). PostgreSQL does it in one statement, which matters when a fleet's worth of
    /// last-seen times is written at once.
    fn touch_workers(&mut self, seen: &[(WorkerId, Timestamp)]) -> StoreResult<()> {
        for (id, at) in seen {
            self.touch_worker(id, *at)?;
        }
        Ok(())
    }
    /// How many workers enrolled this way (created at or after `since`, when given).
    fn count_workers(&mut self, via: EnrolledVia, since: Option<Timestamp>) -> StoreResult<u64>;
    /// External workers that hold a license seat at `now`: every worker but the built-in one
    /// that is not revoked and has not expired with its token. Counting stops at `at_most`
    /// (`u64::MAX`: count them all).
    fn count_seated_workers(&mut self, now: Timestamp, at_most: u64) -> StoreResult<u64>;
    /// The fleet in counts at `now`, with the last `hours` hours (at least one) hour by hour.
    fn fleet_overview(&mut self, now: Timestamp, hours: u32) -> StoreResult<FleetOverview>;

    // ---- jobs ----
    fn insert_job(&mut self, job: &Job) -> StoreResult<()>;
    fn get_job(&mut self, id: &JobId) -> StoreResult<Option<Job>>;
    /// Newest first.
    fn list_jobs(&mut self, filter: &JobFilter) -> StoreResult<Vec<Job>>;
    /// Oldest first: the order jobs are dispatched and recovered in.
    fn jobs_in_state(&mut self, state: JobState) -> StoreResult<Vec<Job>>;
    /// `queued → running` on this worker, dispatched by this server replica, if the job is
    /// still queued.
    fn start_job(
        &mut self,
        id: &JobId,
        worker: &WorkerId,
        worker_name: &Name,
        dispatcher: &str,
        at: Timestamp,
    ) -> StoreResult<bool>;
    /// Ends a job that is still in state `from`.
    fn end_job(&mut self, id: &JobId, from: JobState, end: &JobEnd) -> StoreResult<bool>;
    /// Ends a job that is still `running` under server replica `dispatcher` (another replica
    /// may have re-attached it since). Returns whether it did.
    fn end_held_job(&mut self, id: &JobId, dispatcher: &str, end: &JobEnd) -> StoreResult<bool>;
    /// Jobs `running` on this worker, oldest first.
    fn running_jobs_of(&mut self, worker: &WorkerId) -> StoreResult<Vec<Job>>;
    /// A job still `running` on `worker` is now held by server replica `dispatcher` (its worker
    /// reported it there). Returns whether it applied.
    fn adopt_job(&mut self, id: &JobId, worker: &WorkerId, dispatcher: &str) -> StoreResult<bool>;
    /// Where a job's stored output stands: the last chunk's number and the bytes stored.
    fn output_position(&mut self, id: &JobId) -> StoreResult<OutputPosition>;
    /// Stores a chunk of output, received at `at`.
    fn append_output(
        &mut self,
        id: &JobId,
        seq: u64,
        stream: u8,
        data: &[u8],
        at: Timestamp,
    ) -> StoreResult<()>;
    fn set_output_stats(&mut self, id: &JobId, bytes: u64, truncated: bool) -> StoreResult<()>;
    /// Stored output chunks with `seq > after`, in order, at most `limit`, each with when it
    /// was received.
    fn read_timed_output(
        &mut self,
        id: &JobId,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<TimedChunk>>;
    /// The same without the times.
    fn read_output(&mut self, id: &JobId, after: u64, limit: u32) -> StoreResult<Vec<OutputChunk>> {
        Ok(self
            .read_timed_output(id, after, limit)?
            .into_iter()
            .map(|t| t.chunk)
            .collect())
    }

    // ---- presence and replicas ----
    /// Records a worker's live channel, replacing any row it had (the newest connection holds
    /// the worker).
    fn put_presence(&mut self, presence: &Presence) -> StoreResult<()>;
    /// Clears a worker's row if it is still this replica's connection. Returns whether it did.
    fn drop_presence(
        &mut self,
        worker: &WorkerId,
        replica: &str,
        conn_id: u64,
    ) -> StoreResult<bool>;
    /// [`Tx::put_presence`] for several rows, applied in order (of two rows for one worker the
    /// later holds). One statement on PostgreSQL.
    fn put_presences(&mut self, rows: &[Presence]) -> StoreResult<()> {
        for row in rows {
            self.put_presence(row)?;
        }
        Ok(())
    }
    /// [`Tx::drop_presence`] for several connections of one replica. Returns how many rows it
    /// cleared. One statement on PostgreSQL.
    fn drop_presences(&mut self, replica: &str, conns: &[(WorkerId, u64)]) -> StoreResult<u64> {
        let mut dropped = 0;
        for (worker, conn_id) in conns {
            dropped += u64::from(self.drop_presence(worker, replica, *conn_id)?);
        }
        Ok(dropped)
    }
    fn presence_of(&mut self, worker: &WorkerId) -> StoreResult<Option<Presence>>;
    fn all_presence(&mut self) -> StoreResult<Vec<Presence>>;
    /// How many workers are held by replicas other than `here` and carry every label pair in
    /// `labels` (every worker held elsewhere when it is empty): what a job's placement sees of
    /// the rest of the fleet.
    fn count_present_elsewhere(
        &mut self,
        here: &str,
        labels: &[(String, String)],
    ) -> StoreResult<u64>;
    /// How many jobs the worker runs now, if the row is still this connection's.
    fn set_presence_running(
        &mut self,
        worker: &WorkerId,
        replica: &str,
        conn_id: u64,
        running: u32,
    ) -> StoreResult<()>;
    /// Clears every row of a replica (it restarted, or died). Returns how many.
    fn drop_replica_presence(&mut self, replica: &str) -> StoreResult<u64>;
    /// Renews a replica's lease, creating it if it is not there. Returns whether it was there
    /// (false: never taken, or taken over by another replica that thought this one dead).
    fn beat_replica(&mut self, replica: &str, at: Timestamp) -> StoreResult<bool>;
    /// The database's own clock, where several replicas share one database (PostgreSQL's
    /// `clock_timestamp()`), read now, inside this transaction. Leases are written and judged
    /// on it, so one replica's clock skew, or a wait for a connection between reading a clock
    /// and running the statement, can never make a live replica look dead. `None` when the
    /// store has no clock of its own to offer (SQLite: one replica, the server's clock).
    fn store_clock(&mut self) -> StoreResult<Option<Timestamp>> {
        Ok(None)
    }
    /// Replicas whose last heartbeat is older than `before`.
    fn replicas_silent_since(&mut self, before: Timestamp) -> StoreResult<Vec<String>>;
    /// Deletes a replica's lease if it is still older than `before`: of several replicas that
    /// notice one death, exactly one gets `true`.
    fn drop_replica(&mut self, replica: &str, before: Timestamp) -> StoreResult<bool>;
    /// Hands every job `running` under replica `from` to replica `to`. Returns how many.
    fn transfer_jobs(&mut self, from: &str, to: &str) -> StoreResult<u64>;

    // ---- TLS ticket keys shared by replicas ----
    /// Stores the sealed ticket key of `certificate` for `period` unless one is there already
    /// (replicas rotating at once: the first wins, the others read its key). Returns whether
    /// this one was stored.
    fn insert_ticket_key(&mut self, key: &SealedTicketKey) -> StoreResult<bool>;
    /// The sealed ticket keys of `certificate`, newest period first.
    fn ticket_keys(&mut self, certificate: &str) -> StoreResult<Vec<SealedTicketKey>>;
    /// Erases every ticket key (of any certificate) of a period before `period`. Returns how
    /// many.
    fn drop_ticket_keys_before(&mut self, period: i64) -> StoreResult<u64>;

    // ---- audit ----
    /// Writes an audit record, and queues it for every webhook that wants it (the outbox: in
    /// this same transaction). Every audit record goes through here.
    fn insert_audit(&mut self, event: &AuditEvent) -> StoreResult<()> {
        let seq = self.append_audit(event)?;
        crate::flows::webhooks::fan_out(self, seq, event)
    }
    /// Writes an audit record and nothing else; returns its `seq`. Use [`Tx::insert_audit`].
    fn append_audit(&mut self, event: &AuditEvent) -> StoreResult<i64>;
    /// [`Tx::append_audit`] for several records, written in order; returns their `seq`s in the
    /// same order. One statement on PostgreSQL. Use [`crate::flows::audit::append_many`].
    fn append_audits(&mut self, events: &[AuditEvent]) -> StoreResult<Vec<i64>> {
        events.iter().map(|e| self.append_audit(e)).collect()
    }
    /// Records with `seq > after`, oldest first, at most `limit`: the event stream's source.
    fn audit_after(&mut self, after: i64, limit: u32) -> StoreResult<Vec<AuditRecord>>;
    /// The newest record's `seq` (0 with none).
    fn last_audit_seq(&mut self) -> StoreResult<i64>;
    fn list_audit(&mut self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>>;

    // ---- retention ----
    /// Deletes at most `limit` audit records written before `before`, oldest first. Returns how
    /// many it deleted.
    fn delete_audit_before(&mut self, before: Timestamp, limit: u32) -> StoreResult<u64>;
    /// Jobs that ended (any terminal state) before `before`, oldest first, at most `limit`.
    fn ended_jobs_before(&mut self, before: Timestamp, limit: u32) -> StoreResult<Vec<JobId>>;
    /// Deletes a job that has ended, with its stored output. Returns whether it did: a job
    /// still queued or running is kept.
    fn delete_ended_job(&mut self, id: &JobId) -> StoreResult<bool>;

    // ---- webhooks and their outbox ----
    fn insert_webhook(&mut self, webhook: &Webhook) -> StoreResult<()>;
    fn list_webhooks(&mut self) -> StoreResult<Vec<Webhook>>;
    /// Deletes a webhook with its deliveries. Returns whether it existed.
    fn delete_webhook(&mut self, id: &str) -> StoreResult<bool>;
    /// Queues `event_seq` for a webhook, due at once. Returns the delivery's id.
    fn insert_delivery(
        &mut self,
        webhook_id: &str,
        event_seq: i64,
        event_type: EventType,
        at: Timestamp,
    ) -> StoreResult<i64>;
    /// Claims up to `limit` pending deliveries due at `now` (or only `only`, if given, whatever
    /// it is due): each is due again only at `lease_until`, so no other sender takes it while
    /// this one tries, and a sender that dies leaves it to be tried again.
    fn claim_deliveries(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        only: Option<i64>,
    ) -> StoreResult<Vec<DueDelivery>>;
    /// Records an attempt on a pending delivery. Returns whether it was still pending.
    fn finish_attempt(&mut self, id: i64, attempt: &Attempt) -> StoreResult<bool>;
    /// A webhook's deliveries, newest first, with `id < before` when given.
    fn list_deliveries(
        &mut self,
        webhook_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>>;
    /// Deletes at most `limit` finished (delivered or failed) deliveries created before
    /// `before`. Returns how many.
    fn delete_deliveries_before(&mut self, before: Timestamp, limit: u32) -> StoreResult<u64>;

    // ---- events for other server replicas ----
    /// Tells every server replica sharing this database about `event`, once this transaction
    /// commits (and never if it rolls back). A backend with one server process (SQLite) has no
    /// one else to tell and does nothing.
    fn notify(&mut self, event: &str) -> StoreResult<()>;

    /// Waits until no other transaction holds `scope`, and holds it until this one ends: what a
    /// flow counts or checks before it writes (enrollments in a window, names in use) then stays
    /// true until it commits, across every replica. SQLite's single writer already runs write
    /// transactions one at a time, so there it does nothing.
    fn serialize(&mut self, scope: Scope) -> StoreResult<()>;

    /// Opens a savepoint, so that one unit of a group written in one transaction can be undone
    /// without the others ([`crate::flows::group`]). Savepoints do not nest: each is closed
    /// with [`Tx::close_savepoint`] before the next is opened.
    fn open_savepoint(&mut self) -> StoreResult<()>;

    /// Closes the savepoint: `keep` keeps what was written since it was opened, otherwise that
    /// is undone (and on PostgreSQL the transaction is usable again after a failed statement).
    fn close_savepoint(&mut self, keep: bool) -> StoreResult<()>;

    // ---- settings: small named values (JSON text) ----
    fn get_setting(&mut self, key: &str) -> StoreResult<Option<String>>;
    fn put_setting(&mut self, key: &str, value: &str) -> StoreResult<()>;
}

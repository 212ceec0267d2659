//! Rows as both SQL backends store them: the column lists of tokens, workers and audit records,
//! and the conversion between those rows and domain values, written once.
//!
//! A backend binds a row's values and reads its columns through its own driver, in the order of
//! the column list; everything else (which column holds a hash as hex, labels as JSON, a time as
//! Unix milliseconds, and what to do with a value that does not parse) is here. Jobs have the
//! same shape in [`crate::codec::JobColumns`].

use muster_core::audit::{AuditEvent, AuditRecord};
use muster_core::tickets::TicketLedger;
use muster_core::worker::WorkerIdentity;
use muster_core::{MachineId, Name, Timestamp, Token, Worker};

use crate::codec;
use crate::error::{StoreError, StoreResult};
use crate::tx::{Attempt, AttemptNext, AuditFilter, Delivery, DeliveryState, DueDelivery, Webhook};

/// A Rust type both drivers can read a column as (`String`, `i64`, `bool`, their `Option`s).
pub(crate) trait Column:
    rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a>
{
}

impl<T> Column for T where T: rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a> {}

/// A row a driver returned. Each backend implements it for its driver's row type.
pub(crate) trait ColumnSource {
    /// Column `i`, counted from 0 in the order of the `SELECT`. A value of another type means the
    /// schema is not the one this code wrote: [`StoreError::Corrupt`](crate::StoreError).
    fn column<T: Column>(&self, i: usize) -> StoreResult<T>;
}

pub(crate) const TOKEN_COLUMNS: &str =
    "name, secret_hash, labels, created_at, expires_at, bound_machine, enrolled_at, revoked_at";

/// A token's stored values, one field per column of [`TOKEN_COLUMNS`], in that order.
pub(crate) struct TokenColumns {
    pub name: String,
    pub secret_hash: String,
    pub labels: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub bound_machine: Option<String>,
    pub enrolled_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl TokenColumns {
    pub fn of(t: &Token) -> Self {
        Self {
            name: t.name.to_string(),
            secret_hash: t.secret_hash.to_hex(),
            labels: codec::labels_to_json(&t.labels),
            created_at: t.created_at.unix_millis(),
            expires_at: t.expires_at.unix_millis(),
            bound_machine: t.bound_machine.as_ref().map(ToString::to_string),
            enrolled_at: t.enrolled_at.map(Timestamp::unix_millis),
            revoked_at: t.revoked_at.map(Timestamp::unix_millis),
        }
    }

    /// Reads a row selected with [`TOKEN_COLUMNS`].
    pub fn read(row: &impl ColumnSource) -> StoreResult<Self> {
        Ok(Self {
            name: row.column(0)?,
            secret_hash: row.column(1)?,
            labels: row.column(2)?,
            created_at: row.column(3)?,
            expires_at: row.column(4)?,
            bound_machine: row.column(5)?,
            enrolled_at: row.column(6)?,
            revoked_at: row.column(7)?,
        })
    }

    pub fn into_token(self) -> StoreResult<Token> {
        Ok(Token {
            name: codec::name(&self.name)?,
            secret_hash: codec::hash(&self.secret_hash)?,
            labels: codec::labels_from_json(&self.labels)?,
            created_at: codec::ts(self.created_at),
            expires_at: codec::ts(self.expires_at),
            bound_machine: self
                .bound_machine
                .as_deref()
                .map(codec::machine)
                .transpose()?,
            enrolled_at: codec::opt_ts(self.enrolled_at),
            revoked_at: codec::opt_ts(self.revoked_at),
        })
    }
}

/// Reads a token selected with [`TOKEN_COLUMNS`].
pub(crate) fn read_token(row: &impl ColumnSource) -> StoreResult<Token> {
    TokenColumns::read(row)?.into_token()
}

pub(crate) const WORKER_COLUMNS: &str = "id, name, enrolled_via, token_name, machine_id, labels, \
     key_hash, created_at, expires_at, revoked_at, last_seen_at, public_key, ticket_confirmed, \
     ticket_pending, ticket_remote, suspended_at";

/// A worker's stored values, one field per column of [`WORKER_COLUMNS`], in that order.
pub(crate) struct WorkerColumns {
    pub id: String,
    pub name: String,
    pub enrolled_via: String,
    pub token_name: Option<String>,
    pub machine_id: Option<String>,
    pub labels: String,
    pub key_hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_seen_at: Option<i64>,
    pub public_key: Option<String>,
    pub ticket_confirmed: Option<String>,
    pub ticket_pending: String,
    pub ticket_remote: Option<String>,
    pub suspended_at: Option<i64>,
}

impl WorkerColumns {
    pub fn of(w: &Worker) -> Self {
        Self {
            id: w.id.to_string(),
            name: w.name.to_string(),
            enrolled_via: w.enrolled_via.as_str().to_owned(),
            token_name: w.token_name.as_ref().map(Name::to_string),
            machine_id: w.machine_id.as_ref().map(MachineId::to_string),
            labels: codec::labels_to_json(&w.labels),
            key_hash: w.key_hash.to_hex(),
            created_at: w.created_at.unix_millis(),
            expires_at: w.expires_at.map(Timestamp::unix_millis),
            revoked_at: w.revoked_at.map(Timestamp::unix_millis),
            last_seen_at: w.last_seen_at.map(Timestamp::unix_millis),
            public_key: w.identity.public_key.as_ref().map(ToString::to_string),
            ticket_confirmed: w.identity.tickets.confirmed.as_ref().map(|h| h.to_hex()),
            ticket_pending: w.identity.tickets.pending_to_text(),
            ticket_remote: w.identity.ticket_remote.clone(),
            suspended_at: w.identity.suspended_at.map(Timestamp::unix_millis),
        }
    }

    /// Reads a row selected with [`WORKER_COLUMNS`].
    pub fn read(row: &impl ColumnSource) -> StoreResult<Self> {
        Ok(Self {
            id: row.column(0)?,
            name: row.column(1)?,
            enrolled_via: row.column(2)?,
            token_name: row.column(3)?,
            machine_id: row.column(4)?,
            labels: row.column(5)?,
            key_hash: row.column(6)?,
            created_at: row.column(7)?,
            expires_at: row.column(8)?,
            revoked_at: row.column(9)?,
            last_seen_at: row.column(10)?,
            public_key: row.column(11)?,
            ticket_confirmed: row.column(12)?,
            ticket_pending: row.column(13)?,
            ticket_remote: row.column(14)?,
            suspended_at: row.column(15)?,
        })
    }

    pub fn into_worker(self) -> StoreResult<Worker> {
        Ok(Worker {
            id: codec::worker_id(&self.id)?,
            name: codec::name(&self.name)?,
            enrolled_via: codec::via(&self.enrolled_via)?,
            token_name: self.token_name.as_deref().map(codec::name).transpose()?,
            machine_id: self.machine_id.as_deref().map(codec::machine).transpose()?,
            labels: codec::labels_from_json(&self.labels)?,
            key_hash: codec::hash(&self.key_hash)?,
            created_at: codec::ts(self.created_at),
            expires_at: codec::opt_ts(self.expires_at),
            revoked_at: codec::opt_ts(self.revoked_at),
            last_seen_at: codec::opt_ts(self.last_seen_at),
            identity: WorkerIdentity {
                public_key: self
                    .public_key
                    .as_deref()
                    .map(codec::public_key)
                    .transpose()?,
                tickets: TicketLedger {
                    confirmed: self
                        .ticket_confirmed
                        .as_deref()
                        .map(codec::ticket_hash)
                        .transpose()?,
                    pending: codec::ticket_pending(&self.ticket_pending)?,
                },
                ticket_remote: self.ticket_remote,
                suspended_at: codec::opt_ts(self.suspended_at),
            },
        })
    }
}

/// Reads a worker selected with [`WORKER_COLUMNS`].
pub(crate) fn read_worker(row: &impl ColumnSource) -> StoreResult<Worker> {
    WorkerColumns::read(row)?.into_worker()
}

/// The columns of an audit record as read back; writing one names its columns without `seq`,
/// which the database assigns.
pub(crate) const AUDIT_COLUMNS: &str =
    "seq, at, actor, action, target, remote_addr, outcome, detail, expected";

/// Reads an audit record selected with [`AUDIT_COLUMNS`].
pub(crate) fn read_audit(row: &impl ColumnSource) -> StoreResult<AuditRecord> {
    read_audit_at(row, 0)
}

/// Reads an audit record selected with [`AUDIT_COLUMNS`] starting at column `at`.
fn read_audit_at(row: &impl ColumnSource, o: usize) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        seq: row.column(o)?,
        event: AuditEvent {
            expected: row.column(o + 8)?,
            at: codec::ts(row.column(o + 1)?),
            actor: row.column(o + 2)?,
            action: row.column(o + 3)?,
            target: row.column(o + 4)?,
            remote_addr: row.column(o + 5)?,
            outcome: codec::outcome(&row.column::<String>(o + 6)?)?,
            detail: row.column(o + 7)?,
        },
    })
}

pub(crate) const WEBHOOK_COLUMNS: &str = "id, url, secret, events, created_at";

/// Reads a webhook selected with [`WEBHOOK_COLUMNS`].
pub(crate) fn read_webhook(row: &impl ColumnSource) -> StoreResult<Webhook> {
    let events: String = row.column(3)?;
    Ok(Webhook {
        id: row.column(0)?,
        url: row.column(1)?,
        secret: row.column(2)?,
        events: events
            .split_whitespace()
            .map(codec::event_type)
            .collect::<StoreResult<_>>()?,
        created_at: codec::ts(row.column(4)?),
    })
}

/// How a webhook's event types are stored: separated by spaces.
pub(crate) fn webhook_events(webhook: &Webhook) -> String {
    webhook
        .events
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A delivery's columns, qualified with the table alias `d`.
pub(crate) const DELIVERY_COLUMNS: &str = "d.id, d.webhook_id, d.event_seq, d.event_type, \
     d.created_at, d.state, d.attempts, d.next_attempt_at, d.last_attempt_at, d.last_status, \
     d.last_error, d.delivered_at";

/// Reads a delivery selected with [`DELIVERY_COLUMNS`].
pub(crate) fn read_delivery(row: &impl ColumnSource) -> StoreResult<Delivery> {
    let state: String = row.column(5)?;
    let attempts: i32 = row.column(6)?;
    let status: Option<i32> = row.column(9)?;
    Ok(Delivery {
        id: row.column(0)?,
        webhook_id: row.column(1)?,
        event_seq: row.column(2)?,
        event_type: codec::event_type(&row.column::<String>(3)?)?,
        created_at: codec::ts(row.column(4)?),
        state: DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery state `{state}`")))?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        next_attempt_at: codec::ts(row.column(7)?),
        last_attempt_at: codec::opt_ts(row.column(8)?),
        last_status: status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.column(10)?,
        delivered_at: codec::opt_ts(row.column(11)?),
    })
}

/// The query that reads claimed deliveries with their webhook and event, by id (`$1`/`?1`
/// style placeholders are the caller's: `{id}`).
pub(crate) fn due_delivery_query(id_placeholder: &str) -> String {
    format!(
        "SELECT {DELIVERY_COLUMNS}, w.url, w.secret,
                a.seq, a.at, a.actor, a.action, a.target, a.remote_addr, a.outcome, a.detail,
                a.expected
         FROM webhook_deliveries d
         JOIN webhooks w ON w.id = d.webhook_id
         LEFT JOIN audit a ON a.seq = d.event_seq
         WHERE d.id = {id_placeholder}"
    )
}

/// Reads a row of [`due_delivery_query`].
pub(crate) fn read_due_delivery(row: &impl ColumnSource) -> StoreResult<DueDelivery> {
    let seq: Option<i64> = row.column(14)?;
    Ok(DueDelivery {
        delivery: read_delivery(row)?,
        url: row.column(12)?,
        secret: row.column(13)?,
        event: match seq {
            Some(_) => Some(read_audit_at(row, 14)?),
            None => None,
        },
    })
}

/// The columns an attempt sets, in order, for both backends' `finish_attempt`.
pub(crate) struct AttemptColumns {
    pub state: &'static str,
    pub next_attempt_at: i64,
    pub last_attempt_at: i64,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
}

impl AttemptColumns {
    pub fn of(attempt: &Attempt, next_attempt_at_now: Timestamp) -> Self {
        let (state, next, delivered) = match attempt.next {
            AttemptNext::Delivered => (
                DeliveryState::Delivered,
                next_attempt_at_now,
                Some(attempt.at.unix_millis()),
            ),
            AttemptNext::RetryAt(at) => (DeliveryState::Pending, at, None),
            AttemptNext::GiveUp => (DeliveryState::Failed, next_attempt_at_now, None),
        };
        Self {
            state: state.as_str(),
            next_attempt_at: next.unix_millis(),
            last_attempt_at: attempt.at.unix_millis(),
            last_status: attempt.status.map(i32::from),
            last_error: attempt
                .error
                .as_deref()
                .map(|e| muster_core::text::bounded(e, 512)),
            delivered_at: delivered,
        }
    }
}

/// The LIKE patterns an [`AuditFilter`] asks for, escaped, for both backends' `list_audit`:
/// `(action prefix, text contained)`, each `None` when the filter does not ask.
pub(crate) fn audit_patterns(filter: &AuditFilter) -> (Option<String>, Option<String>) {
    let prefix = filter
        .action_prefix
        .as_ref()
        .map(|p| format!("{}%", escape_like(p)));
    let contains = filter
        .contains
        .as_ref()
        .map(|c| format!("%{}%", escape_like(c)));
    (prefix, contains)
}

/// The worker an audit filter is about, as the two columns name it: its name (the target) and
/// the actor it acts as (`worker:<name>`).
pub(crate) fn audit_subject(filter: &AuditFilter) -> (Option<String>, Option<String>) {
    match &filter.worker {
        Some(name) => (Some(name.clone()), Some(format!("worker:{name}"))),
        None => (None, None),
    }
}

/// Escapes `%`, `_` and `\` so user text in a LIKE pattern matches only itself. Both backends
/// write their patterns with `ESCAPE '\'`.
fn escape_like(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use muster_core::{EnrolledVia, Labels, SecretHash, WorkerId};

    use crate::StoreError;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000 + ms)
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like(r"b_%\"), r"b\_\%\\");
    }

    #[test]
    fn a_token_round_trips_through_its_columns() {
        let mut token = Token::new(
            Name::parse("t1").unwrap(),
            SecretHash::of("secret"),
            Labels::parse_list("pool=a,os=linux").unwrap(),
            at(0),
            std::time::Duration::from_secs(60),
        );
        token.bound_machine = Some(MachineId::parse("machine-a").unwrap());
        token.enrolled_at = Some(at(5));
        token.revoked_at = Some(at(9));
        assert_eq!(TokenColumns::of(&token).into_token().unwrap(), token);
    }

    #[test]
    fn a_worker_round_trips_through_its_columns() {
        let worker = Worker {
            id: WorkerId::parse(&"ab".repeat(16)).unwrap(),
            name: Name::parse("w1").unwrap(),
            enrolled_via: EnrolledVia::Token,
            token_name: Some(Name::parse("w1").unwrap()),
            machine_id: Some(MachineId::parse("machine-a").unwrap()),
            labels: Labels::parse_list("pool=a").unwrap(),
            key_hash: SecretHash::of("key"),
            created_at: at(1),
            expires_at: Some(at(2)),
            revoked_at: None,
            last_seen_at: Some(at(3)),
            identity: WorkerIdentity {
                public_key: Some(muster_core::identity::WorkerKey::from_seed([3; 32]).public_key()),
                tickets: TicketLedger {
                    confirmed: Some(
                        muster_core::tickets::Ticket::generate(1, &mut rand::rngs::OsRng).hash(),
                    ),
                    pending: vec![
                        muster_core::tickets::Ticket::generate(2, &mut rand::rngs::OsRng).hash(),
                        muster_core::tickets::Ticket::generate(3, &mut rand::rngs::OsRng).hash(),
                    ],
                },
                ticket_remote: Some("10.0.0.1".into()),
                suspended_at: Some(at(4)),
            },
        };
        assert_eq!(WorkerColumns::of(&worker).into_worker().unwrap(), worker);
    }

    #[test]
    fn a_stored_value_that_does_not_parse_is_corrupt() {
        let token = Token::new(
            Name::parse("t1").unwrap(),
            SecretHash::of("secret"),
            Labels::new(),
            at(0),
            std::time::Duration::from_secs(60),
        );
        let mut columns = TokenColumns::of(&token);
        columns.secret_hash = "not hex".into();
        assert!(matches!(columns.into_token(), Err(StoreError::Corrupt(_))));
    }
}

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
use crate::error::StoreResult;
use crate::tx::AuditFilter;

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
    "seq, at, actor, action, target, remote_addr, outcome, detail";

/// Reads an audit record selected with [`AUDIT_COLUMNS`].
pub(crate) fn read_audit(row: &impl ColumnSource) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        seq: row.column(0)?,
        event: AuditEvent {
            at: codec::ts(row.column(1)?),
            actor: row.column(2)?,
            action: row.column(3)?,
            target: row.column(4)?,
            remote_addr: row.column(5)?,
            outcome: codec::outcome(&row.column::<String>(6)?)?,
            detail: row.column(7)?,
        },
    })
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

//! [`Tx`] over a PostgreSQL connection inside a transaction the backend opened.
//!
//! Write transactions run at READ COMMITTED, and several run at once (from this process's other
//! threads and from other replicas). The conditional updates in [`Tx`] stay atomic at that level:
//! an `UPDATE ... WHERE bound_machine IS NULL` that waited for a concurrent writer re-checks its
//! condition against the committed row. That does not cover a flow that reads, decides, then
//! inserts, such as "no token and no worker is called `x`, so create token `x`". Two of those
//! could both pass their checks. SQLite never has this problem because it runs one writer at a
//! time. Here, a write transaction takes a transaction-scoped advisory lock on a name before it
//! first reads or inserts a token or worker by that name. Every write flow that touches a name
//! therefore runs after any other write flow on that name has committed, just as it would on
//! SQLite, and the flows need no backend-specific code.

use std::collections::HashSet;

use muster_core::audit::{AuditEvent, AuditRecord};
use muster_core::job::{Job, JobId, JobState};
use muster_core::{
    EnrolledVia, Labels, MachineId, Name, SecretHash, Timestamp, Token, Worker, WorkerId,
};
use postgres::Row;
use postgres::types::{FromSql, ToSql};

use super::conn::Conn;
use crate::codec::{self, JOB_COLUMNS, JobColumns};
use crate::error::{StoreError, StoreResult};
use crate::tx::{AuditFilter, JobEnd, JobFilter, OutputChunk, Tx};

/// The first key of the two-part advisory locks taken on names. It keeps them apart from other
/// applications' advisory locks in the same database. The value is "must" in ASCII.
const NAME_LOCK_CLASS: i32 = 0x6d75_7374;

const TOKEN_COLUMNS: &str =
    "name, secret_hash, labels, created_at, expires_at, bound_machine, enrolled_at, revoked_at";
const WORKER_COLUMNS: &str = "id, name, enrolled_via, token_name, machine_id, labels, key_hash, \
     created_at, expires_at, revoked_at, last_seen_at";

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

pub(super) struct PgTx<'c> {
    conn: &'c mut Conn,
    /// Whether this is a write transaction, which takes name locks. Read transactions run on a
    /// snapshot and take none.
    write: bool,
    locked: HashSet<i32>,
    /// The first statement that failed. After any error PostgreSQL aborts the transaction, and a
    /// COMMIT then quietly rolls back. So if a job swallowed the error and returned success, the
    /// backend must report a failure, not a commit.
    failed: Option<StoreError>,
}

impl<'c> PgTx<'c> {
    pub(super) fn new(conn: &'c mut Conn, write: bool) -> Self {
        Self {
            conn,
            write,
            locked: HashSet::new(),
            failed: None,
        }
    }

    /// The error that aborted the transaction, if a statement failed.
    pub(super) fn into_failure(self) -> Option<StoreError> {
        self.failed
    }

    fn track<T>(&mut self, result: Result<T, postgres::Error>) -> StoreResult<T> {
        result.map_err(|e| {
            let e = StoreError::from(e);
            self.failed.get_or_insert_with(|| e.clone());
            e
        })
    }

    /// Prepares `sql` once per connection. This saves a round trip on every later use.
    fn statement(&mut self, sql: &str) -> StoreResult<postgres::Statement> {
        if let Some(statement) = self.conn.statements.get(sql) {
            return Ok(statement.clone());
        }
        let prepared = self.conn.client.prepare(sql);
        let statement = self.track(prepared)?;
        self.conn
            .statements
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    fn query(&mut self, sql: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
        let statement = self.statement(sql)?;
        let rows = self.conn.client.query(&statement, params);
        self.track(rows)
    }

    fn query_opt(&mut self, sql: &str, params: Params<'_>) -> StoreResult<Option<Row>> {
        let statement = self.statement(sql)?;
        let row = self.conn.client.query_opt(&statement, params);
        self.track(row)
    }

    fn execute(&mut self, sql: &str, params: Params<'_>) -> StoreResult<u64> {
        let statement = self.statement(sql)?;
        let n = self.conn.client.execute(&statement, params);
        self.track(n)
    }

    /// Waits until no other write transaction holds `name`, then holds it until this
    /// transaction ends. It must be its own statement, before the read it guards: at READ
    /// COMMITTED each statement reads a snapshot taken when that statement starts. So only a
    /// read that starts after the lock is granted sees what the previous holder committed.
    fn lock_name(&mut self, name: &Name) -> StoreResult<()> {
        let key = name_lock_key(name.as_str());
        if !self.write || !self.locked.insert(key) {
            return Ok(());
        }
        self.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&NAME_LOCK_CLASS, &key],
        )?;
        Ok(())
    }

    fn one_worker(&mut self, column: &str, key: &str) -> StoreResult<Option<Worker>> {
        let sql = format!("SELECT {WORKER_COLUMNS} FROM workers WHERE {column} = $1");
        self.query_opt(&sql, &[&key])?
            .as_ref()
            .map(worker_from_row)
            .transpose()
    }
}

/// FNV-1a, computed here rather than with PostgreSQL's `hashtext`. The key must be the same for
/// every replica, including replicas of different muster versions, and FNV-1a is fixed. A
/// collision only makes two names share a lock.
fn name_lock_key(name: &str) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(hash.to_ne_bytes())
}

/// Reads column `i`. A value of the wrong type means the schema is not the one this code wrote:
/// corrupt, and reported as such instead of panicking like `Row::get`.
fn col<'r, T: FromSql<'r>>(row: &'r Row, i: usize) -> StoreResult<T> {
    row.try_get(i)
        .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
}

fn token_from_row(row: &Row) -> StoreResult<Token> {
    Ok(Token {
        name: codec::name(col(row, 0)?)?,
        secret_hash: codec::hash(col(row, 1)?)?,
        labels: codec::labels_from_json(col(row, 2)?)?,
        created_at: codec::ts(col(row, 3)?),
        expires_at: codec::ts(col(row, 4)?),
        bound_machine: col::<Option<&str>>(row, 5)?
            .map(codec::machine)
            .transpose()?,
        enrolled_at: codec::opt_ts(col(row, 6)?),
        revoked_at: codec::opt_ts(col(row, 7)?),
    })
}

fn worker_from_row(row: &Row) -> StoreResult<Worker> {
    Ok(Worker {
        id: codec::worker_id(col(row, 0)?)?,
        name: codec::name(col(row, 1)?)?,
        enrolled_via: codec::via(col(row, 2)?)?,
        token_name: col::<Option<&str>>(row, 3)?.map(codec::name).transpose()?,
        machine_id: col::<Option<&str>>(row, 4)?
            .map(codec::machine)
            .transpose()?,
        labels: codec::labels_from_json(col(row, 5)?)?,
        key_hash: codec::hash(col(row, 6)?)?,
        created_at: codec::ts(col(row, 7)?),
        expires_at: codec::opt_ts(col(row, 8)?),
        revoked_at: codec::opt_ts(col(row, 9)?),
        last_seen_at: codec::opt_ts(col(row, 10)?),
    })
}

fn job_from_row(row: &Row) -> StoreResult<Job> {
    JobColumns {
        id: col(row, 0)?,
        command: col(row, 1)?,
        env: col(row, 2)?,
        target_worker: col(row, 3)?,
        selector: col(row, 4)?,
        timeout_ms: col(row, 5)?,
        queue_deadline: col(row, 6)?,
        state: col(row, 7)?,
        worker_id: col(row, 8)?,
        worker_name: col(row, 9)?,
        created_at: col(row, 10)?,
        started_at: col(row, 11)?,
        finished_at: col(row, 12)?,
        exit_code: col(row, 13)?,
        reason: col(row, 14)?,
        output_bytes: col(row, 15)?,
        truncated: col(row, 16)?,
        dispatcher: col(row, 17)?,
        ending: col(row, 18)?,
        signal: col(row, 19)?,
    }
    .into_job()
}

fn audit_from_row(row: &Row) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        seq: col(row, 0)?,
        event: AuditEvent {
            at: codec::ts(col(row, 1)?),
            actor: col(row, 2)?,
            action: col(row, 3)?,
            target: col(row, 4)?,
            remote_addr: col(row, 5)?,
            outcome: codec::outcome(col(row, 6)?)?,
            detail: col(row, 7)?,
        },
    })
}

impl Tx for PgTx<'_> {
    fn insert_token(&mut self, t: &Token) -> StoreResult<()> {
        self.lock_name(&t.name)?;
        self.execute(
            &format!(
                "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                &t.name.as_str(),
                &t.secret_hash.to_hex(),
                &codec::labels_to_json(&t.labels),
                &t.created_at.unix_millis(),
                &t.expires_at.unix_millis(),
                &t.bound_machine.as_ref().map(MachineId::as_str),
                &t.enrolled_at.map(Timestamp::unix_millis),
                &t.revoked_at.map(Timestamp::unix_millis),
            ],
        )?;
        Ok(())
    }

    fn get_token(&mut self, name: &Name) -> StoreResult<Option<Token>> {
        self.lock_name(name)?;
        self.query_opt(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE name = $1"),
            &[&name.as_str()],
        )?
        .as_ref()
        .map(token_from_row)
        .transpose()
    }

    fn list_tokens(&mut self) -> StoreResult<Vec<Token>> {
        self.query(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, name"),
            &[],
        )?
        .iter()
        .map(token_from_row)
        .collect()
    }

    fn bind_token(&mut self, name: &Name, machine: &MachineId, at: Timestamp) -> StoreResult<bool> {
        let n = self.execute(
            "UPDATE tokens SET bound_machine = $2, enrolled_at = $3
             WHERE name = $1 AND bound_machine IS NULL AND revoked_at IS NULL",
            &[&name.as_str(), &machine.as_str(), &at.unix_millis()],
        )?;
        Ok(n == 1)
    }

    fn revoke_token(&mut self, name: &Name, at: Timestamp) -> StoreResult<bool> {
        let n = self.execute(
            "UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
            &[&name.as_str(), &at.unix_millis()],
        )?;
        Ok(n == 1)
    }

    fn insert_worker(&mut self, w: &Worker) -> StoreResult<()> {
        self.lock_name(&w.name)?;
        self.execute(
            &format!(
                "INSERT INTO workers ({WORKER_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            &[
                &w.id.as_str(),
                &w.name.as_str(),
                &w.enrolled_via.as_str(),
                &w.token_name.as_ref().map(Name::as_str),
                &w.machine_id.as_ref().map(MachineId::as_str),
                &codec::labels_to_json(&w.labels),
                &w.key_hash.to_hex(),
                &w.created_at.unix_millis(),
                &w.expires_at.map(Timestamp::unix_millis),
                &w.revoked_at.map(Timestamp::unix_millis),
                &w.last_seen_at.map(Timestamp::unix_millis),
            ],
        )?;
        Ok(())
    }

    fn get_worker(&mut self, id: &WorkerId) -> StoreResult<Option<Worker>> {
        self.one_worker("id", id.as_str())
    }

    fn get_worker_by_name(&mut self, name: &Name) -> StoreResult<Option<Worker>> {
        self.lock_name(name)?;
        self.one_worker("name", name.as_str())
    }

    fn get_worker_by_token(&mut self, token: &Name) -> StoreResult<Option<Worker>> {
        // A token's name is its worker's name, so this is the same lock as for either.
        self.lock_name(token)?;
        self.one_worker("token_name", token.as_str())
    }

    fn list_workers(&mut self) -> StoreResult<Vec<Worker>> {
        self.query(
            &format!("SELECT {WORKER_COLUMNS} FROM workers ORDER BY name"),
            &[],
        )?
        .iter()
        .map(worker_from_row)
        .collect()
    }

    fn set_worker_key(&mut self, id: &WorkerId, key: &SecretHash) -> StoreResult<bool> {
        let n = self.execute(
            "UPDATE workers SET key_hash = $2 WHERE id = $1",
            &[&id.as_str(), &key.to_hex()],
        )?;
        Ok(n == 1)
    }

    fn set_worker_labels(&mut self, id: &WorkerId, labels: &Labels) -> StoreResult<bool> {
        let n = self.execute(
            "UPDATE workers SET labels = $2 WHERE id = $1",
            &[&id.as_str(), &codec::labels_to_json(labels)],
        )?;
        Ok(n == 1)
    }

    fn bind_worker_machine(&mut self, id: &WorkerId, machine: &MachineId) -> StoreResult<bool> {
        let n = self.execute(
            "UPDATE workers SET machine_id = $2 WHERE id = $1 AND machine_id IS NULL",
            &[&id.as_str(), &machine.as_str()],
        )?;
        Ok(n == 1)
    }

    fn revoke_worker(&mut self, id: &WorkerId, at: Timestamp) -> StoreResult<bool> {
        let n = self.execute(
            "UPDATE workers SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&id.as_str(), &at.unix_millis()],
        )?;
        Ok(n == 1)
    }

    fn delete_worker(&mut self, id: &WorkerId) -> StoreResult<bool> {
        let n = self.execute("DELETE FROM workers WHERE id = $1", &[&id.as_str()])?;
        Ok(n == 1)
    }

    fn touch_worker(&mut self, id: &WorkerId, at: Timestamp) -> StoreResult<()> {
        self.execute(
            "UPDATE workers SET last_seen_at = $2
             WHERE id = $1 AND (last_seen_at IS NULL OR last_seen_at < $2)",
            &[&id.as_str(), &at.unix_millis()],
        )?;
        Ok(())
    }

    fn count_workers(&mut self, via: EnrolledVia, since: Option<Timestamp>) -> StoreResult<u64> {
        let row = self.query_opt(
            "SELECT COUNT(*) FROM workers WHERE enrolled_via = $1 AND ($2::BIGINT IS NULL OR created_at >= $2)",
            &[&via.as_str(), &since.map(Timestamp::unix_millis)],
        )?;
        let n: i64 = match &row {
            Some(row) => col(row, 0)?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn insert_job(&mut self, job: &Job) -> StoreResult<()> {
        let c = JobColumns::from_job(job);
        self.execute(
            &format!(
                "INSERT INTO jobs ({JOB_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
            ),
            &[
                &c.id,
                &c.command,
                &c.env,
                &c.target_worker,
                &c.selector,
                &c.timeout_ms,
                &c.queue_deadline,
                &c.state,
                &c.worker_id,
                &c.worker_name,
                &c.created_at,
                &c.started_at,
                &c.finished_at,
                &c.exit_code,
                &c.reason,
                &c.output_bytes,
                &c.truncated,
                &c.dispatcher,
                &c.ending,
                &c.signal,
            ],
        )?;
        Ok(())
    }

    fn get_job(&mut self, id: &JobId) -> StoreResult<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        self.query_opt(&sql, &[&id.as_str()])?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    fn list_jobs(&mut self, f: &JobFilter) -> StoreResult<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs
             WHERE ($1::TEXT IS NULL OR state = $1) AND ($2::TEXT IS NULL OR worker_name = $2)
             ORDER BY created_at DESC, id DESC LIMIT $3"
        );
        let rows = self.query(
            &sql,
            &[
                &f.state.map(JobState::as_str),
                &f.worker.as_ref().map(Name::as_str),
                &i64::from(f.limit),
            ],
        )?;
        rows.iter().map(job_from_row).collect()
    }

    fn jobs_in_state(&mut self, state: JobState) -> StoreResult<Vec<Job>> {
        let sql =
            format!("SELECT {JOB_COLUMNS} FROM jobs WHERE state = $1 ORDER BY created_at, id");
        let rows = self.query(&sql, &[&state.as_str()])?;
        rows.iter().map(job_from_row).collect()
    }

    fn start_job(
        &mut self,
        id: &JobId,
        worker: &WorkerId,
        worker_name: &Name,
        dispatcher: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let n = self.execute(
            "UPDATE jobs SET state = 'running', worker_id = $2, worker_name = $3, started_at = $4,
                    dispatcher = $5
             WHERE id = $1 AND state = 'queued'",
            &[
                &id.as_str(),
                &worker.as_str(),
                &worker_name.as_str(),
                &at.unix_millis(),
                &dispatcher,
            ],
        )?;
        Ok(n == 1)
    }

    fn end_job(&mut self, id: &JobId, from: JobState, end: &JobEnd) -> StoreResult<bool> {
        let n = self.execute(
            "UPDATE jobs SET state = $3, finished_at = $4, exit_code = $5, reason = $6,
             ending = $7, signal = $8
             WHERE id = $1 AND state = $2",
            &[
                &id.as_str(),
                &from.as_str(),
                &end.state.as_str(),
                &end.at.unix_millis(),
                &end.exit_code.map(i64::from),
                &end.reason,
                &end.ending.as_str(),
                &end.ending.signal().map(i64::from),
            ],
        )?;
        Ok(n == 1)
    }

    fn append_output(&mut self, id: &JobId, seq: u64, stream: u8, data: &[u8]) -> StoreResult<()> {
        self.execute(
            "INSERT INTO job_output (job_id, seq, stream, data) VALUES ($1, $2, $3, $4)",
            &[
                &id.as_str(),
                &i64::try_from(seq).unwrap_or(i64::MAX),
                &i16::from(stream),
                &data,
            ],
        )?;
        Ok(())
    }

    fn set_output_stats(&mut self, id: &JobId, bytes: u64, truncated: bool) -> StoreResult<()> {
        self.execute(
            "UPDATE jobs SET output_bytes = $2, truncated = $3 WHERE id = $1",
            &[
                &id.as_str(),
                &i64::try_from(bytes).unwrap_or(i64::MAX),
                &truncated,
            ],
        )?;
        Ok(())
    }

    fn read_output(&mut self, id: &JobId, after: u64, limit: u32) -> StoreResult<Vec<OutputChunk>> {
        let rows = self.query(
            "SELECT seq, stream, data FROM job_output WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&id.as_str(), &i64::try_from(after).unwrap_or(i64::MAX), &i64::from(limit)],
        )?;
        rows.iter()
            .map(|row| {
                Ok(OutputChunk {
                    seq: u64::try_from(col::<i64>(row, 0)?).unwrap_or(0),
                    stream: u8::try_from(col::<i16>(row, 1)?).unwrap_or(1),
                    data: col(row, 2)?,
                })
            })
            .collect()
    }

    fn notify(&mut self, event: &str) -> StoreResult<()> {
        let channel = self.conn.events_channel.clone();
        self.execute("SELECT pg_notify($1, $2)", &[&channel, &event])?;
        Ok(())
    }

    fn insert_audit(&mut self, e: &AuditEvent) -> StoreResult<()> {
        self.execute(
            "INSERT INTO audit (at, actor, action, target, remote_addr, outcome, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &e.at.unix_millis(),
                &e.actor,
                &e.action,
                &e.target,
                &e.remote_addr,
                &e.outcome.as_str(),
                &e.detail,
            ],
        )?;
        Ok(())
    }

    fn list_audit(&mut self, f: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let like = f.contains.as_ref().map(|c| format!("%{}%", escape_like(c)));
        let prefix = f
            .action_prefix
            .as_ref()
            .map(|p| format!("{}%", escape_like(p)));
        // ILIKE, not LIKE: SQLite's LIKE ignores ASCII case, and both backends must answer the
        // same. The casts name the parameters' types, which `$1 IS NULL` alone cannot tell.
        self.query(
            "SELECT seq, at, actor, action, target, remote_addr, outcome, detail FROM audit
             WHERE ($1::BIGINT IS NULL OR seq < $1::BIGINT)
               AND ($2::TEXT IS NULL OR action ILIKE $2::TEXT ESCAPE '\\')
               AND ($3::TEXT IS NULL OR target ILIKE $3::TEXT ESCAPE '\\'
                    OR actor ILIKE $3::TEXT ESCAPE '\\' OR detail ILIKE $3::TEXT ESCAPE '\\')
             ORDER BY seq DESC LIMIT $4",
            &[&f.before_seq, &prefix, &like, &i64::from(f.limit)],
        )?
        .iter()
        .map(audit_from_row)
        .collect()
    }

    fn get_setting(&mut self, key: &str) -> StoreResult<Option<String>> {
        self.query_opt("SELECT value FROM settings WHERE key = $1", &[&key])?
            .as_ref()
            .map(|row| col(row, 0))
            .transpose()
    }

    fn put_setting(&mut self, key: &str, value: &str) -> StoreResult<()> {
        self.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&key, &value],
        )?;
        Ok(())
    }
}

/// Escapes `%`, `_` and `\` so user text in a LIKE pattern matches only itself (as in
/// `sqlite/tx.rs`).
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

    #[test]
    fn name_lock_keys_are_fixed() {
        // Replicas of different versions must agree on these, so they are pinned.
        assert_eq!(
            name_lock_key(""),
            i32::from_ne_bytes(0x811c_9dc5_u32.to_ne_bytes())
        );
        assert_eq!(
            name_lock_key("a"),
            i32::from_ne_bytes(0xe40c_292c_u32.to_ne_bytes())
        );
        assert_ne!(name_lock_key("alpha"), name_lock_key("beta"));
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like(r"b_%\"), r"b\_\%\\");
    }
}

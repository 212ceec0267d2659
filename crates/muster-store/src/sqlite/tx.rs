//! [`Tx`] for [`SqliteTx`]: one SQL statement per primitive, run inside the transaction (or
//! savepoint) the backend opened.
//!
//! Over ~400 lines because it is the whole trait impl, one short method per primitive, which
//! cannot be split across files without a shim per method. The queries the methods share are in
//! `transaction.rs`, the row shapes in `crate::rows`.

use muster_core::audit::{AuditEvent, AuditRecord};
use muster_core::events::EventType;
use muster_core::identity::PublicKey;
use muster_core::job::{Job, JobId, JobState};
use muster_core::tickets::TicketLedger;
use muster_core::{
    EnrolledVia, Labels, MachineId, Name, SecretHash, Timestamp, Token, Worker, WorkerId,
};
use rusqlite::{OptionalExtension, Row, params};

use super::transaction::SqliteTx;
use crate::codec::{self, JOB_COLUMNS, JobColumns};
use crate::error::StoreResult;
use crate::pages::{self, Dialect, Param, Statement};
use crate::rows::{
    self, AUDIT_COLUMNS, AttemptColumns, ColumnSource, DELIVERY_COLUMNS, TOKEN_COLUMNS,
    TokenColumns, WEBHOOK_COLUMNS, WORKER_COLUMNS, WorkerColumns,
};
use crate::tx::{
    Attempt, AuditFilter, Delivery, DueDelivery, FleetOverview, JobEnd, JobFilter, OutputChunk,
    OutputPosition, Presence, Scope, SealedTicketKey, TimedChunk, TokenPage, Tx, Webhook,
    WorkerPage,
};
impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Param::Text(t) => t.to_sql(),
            Param::Int(i) => i.to_sql(),
        }
    }
}

impl SqliteTx<'_> {
    /// Replaces the rows of `worker_labels` for this worker with `labels` (the index behind the
    /// `label` filter; the worker row's JSON stays the record).
    fn write_label_rows(&mut self, id: &str, labels: &Labels) -> StoreResult<()> {
        self.conn
            .prepare_cached("DELETE FROM worker_labels WHERE worker_id = ?1")?
            .execute([id])?;
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO worker_labels (worker_id, key, value) VALUES (?1, ?2, ?3)",
        )?;
        for (key, value) in labels.iter() {
            insert.execute(params![id, key, value])?;
        }
        Ok(())
    }

    fn page<T>(
        &mut self,
        statement: Statement,
        decode: impl Fn(&Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        self.rows(
            &statement.sql,
            rusqlite::params_from_iter(statement.params.iter()),
            decode,
        )
    }

    fn one_worker(&mut self, column: &str, key: &str) -> StoreResult<Option<Worker>> {
        let sql = format!("SELECT {WORKER_COLUMNS} FROM workers WHERE {column} = ?1");
        self.first_row(&sql, [key], |row| rows::read_worker(row))
    }
}

fn read_job_row(row: &Row<'_>) -> rusqlite::Result<JobColumns> {
    Ok(JobColumns {
        id: row.get(0)?,
        command: row.get(1)?,
        env: row.get(2)?,
        target_worker: row.get(3)?,
        selector: row.get(4)?,
        timeout_ms: row.get(5)?,
        queue_deadline: row.get(6)?,
        state: row.get(7)?,
        worker_id: row.get(8)?,
        worker_name: row.get(9)?,
        created_at: row.get(10)?,
        started_at: row.get(11)?,
        finished_at: row.get(12)?,
        exit_code: row.get(13)?,
        reason: row.get(14)?,
        output_bytes: row.get(15)?,
        truncated: row.get(16)?,
        dispatcher: row.get(17)?,
        ending: row.get(18)?,
        signal: row.get(19)?,
    })
}

impl Tx for SqliteTx<'_> {
    fn insert_token(&mut self, t: &Token) -> StoreResult<()> {
        let c = TokenColumns::of(t);
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                c.name,
                c.secret_hash,
                c.labels,
                c.created_at,
                c.expires_at,
                c.bound_machine,
                c.enrolled_at,
                c.revoked_at,
            ])?;
        Ok(())
    }

    fn get_token(&mut self, name: &Name) -> StoreResult<Option<Token>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE name = ?1");
        self.first_row(&sql, [name.as_str()], |row| rows::read_token(row))
    }

    fn list_tokens(&mut self) -> StoreResult<Vec<Token>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, name");
        self.rows(&sql, [], |row| rows::read_token(row))
    }

    fn tokens_expiring(
        &mut self,
        after: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<Token>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens
             WHERE expires_at > ?1 AND expires_at <= ?2 AND revoked_at IS NULL
             ORDER BY expires_at, name LIMIT ?3"
        );
        self.rows(
            &sql,
            params![after.unix_millis(), until.unix_millis(), i64::from(limit)],
            |row| rows::read_token(row),
        )
    }

    fn page_tokens(&mut self, page: &TokenPage) -> StoreResult<Vec<Token>> {
        self.page(pages::tokens(page, Dialect::Sqlite), |row| {
            rows::read_token(row)
        })
    }

    fn bind_token(&mut self, name: &Name, machine: &MachineId, at: Timestamp) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE tokens SET bound_machine = ?2, enrolled_at = ?3
                 WHERE name = ?1 AND bound_machine IS NULL AND revoked_at IS NULL",
            )?
            .execute(params![name.as_str(), machine.as_str(), at.unix_millis()])?;
        Ok(n == 1)
    }

    fn revoke_token(&mut self, name: &Name, at: Timestamp) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![name.as_str(), at.unix_millis()])?;
        Ok(n == 1)
    }

    fn insert_worker(&mut self, w: &Worker) -> StoreResult<()> {
        let c = WorkerColumns::of(w);
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO workers ({WORKER_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
            ))?
            .execute(params![
                c.id,
                c.name,
                c.enrolled_via,
                c.token_name,
                c.machine_id,
                c.labels,
                c.key_hash,
                c.created_at,
                c.expires_at,
                c.revoked_at,
                c.last_seen_at,
                c.public_key,
                c.ticket_confirmed,
                c.ticket_pending,
                c.ticket_remote,
                c.suspended_at,
            ])?;
        self.write_label_rows(w.id.as_str(), &w.labels)
    }

    fn get_worker(&mut self, id: &WorkerId) -> StoreResult<Option<Worker>> {
        self.one_worker("id", id.as_str())
    }

    fn get_worker_by_name(&mut self, name: &Name) -> StoreResult<Option<Worker>> {
        self.one_worker("name", name.as_str())
    }

    fn get_worker_by_token(&mut self, token: &Name) -> StoreResult<Option<Worker>> {
        self.one_worker("token_name", token.as_str())
    }

    fn list_workers(&mut self) -> StoreResult<Vec<Worker>> {
        let sql = format!("SELECT {WORKER_COLUMNS} FROM workers ORDER BY name");
        self.rows(&sql, [], |row| rows::read_worker(row))
    }

    fn page_workers(&mut self, page: &WorkerPage) -> StoreResult<Vec<Worker>> {
        self.page(pages::workers(page, Dialect::Sqlite), |row| {
            rows::read_worker(row)
        })
    }

    fn set_worker_key(&mut self, id: &WorkerId, key: &SecretHash) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached("UPDATE workers SET key_hash = ?2 WHERE id = ?1")?
            .execute(params![id.as_str(), key.to_hex()])?;
        Ok(n == 1)
    }

    fn set_worker_labels(&mut self, id: &WorkerId, labels: &Labels) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached("UPDATE workers SET labels = ?2 WHERE id = ?1")?
            .execute(params![id.as_str(), codec::labels_to_json(labels)])?;
        if n == 1 {
            self.write_label_rows(id.as_str(), labels)?;
        }
        Ok(n == 1)
    }

    fn bind_worker_machine(&mut self, id: &WorkerId, machine: &MachineId) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE workers SET machine_id = ?2 WHERE id = ?1 AND machine_id IS NULL",
            )?
            .execute(params![id.as_str(), machine.as_str()])?;
        Ok(n == 1)
    }

    fn set_worker_public_key(&mut self, id: &WorkerId, key: &PublicKey) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE workers SET public_key = ?2 WHERE id = ?1 AND public_key IS NULL",
            )?
            .execute(params![id.as_str(), key.to_string()])?;
        Ok(n == 1)
    }

    fn set_worker_tickets(
        &mut self,
        id: &WorkerId,
        tickets: &TicketLedger,
        remote: Option<&str>,
    ) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE workers SET ticket_confirmed = ?2, ticket_pending = ?3,
                     ticket_remote = COALESCE(?4, ticket_remote) WHERE id = ?1",
            )?
            .execute(params![
                id.as_str(),
                tickets.confirmed.as_ref().map(|h| h.to_hex()),
                tickets.pending_to_text(),
                remote
            ])?;
        Ok(n == 1)
    }

    fn suspend_worker(&mut self, id: &WorkerId, at: Timestamp) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE workers SET suspended_at = ?2 WHERE id = ?1 AND suspended_at IS NULL",
            )?
            .execute(params![id.as_str(), at.unix_millis()])?;
        Ok(n == 1)
    }

    fn revoke_worker(&mut self, id: &WorkerId, at: Timestamp) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE workers SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![id.as_str(), at.unix_millis()])?;
        Ok(n == 1)
    }

    fn delete_worker(&mut self, id: &WorkerId) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM workers WHERE id = ?1")?
            .execute([id.as_str()])?;
        self.conn
            .prepare_cached("DELETE FROM worker_labels WHERE worker_id = ?1")?
            .execute([id.as_str()])?;
        Ok(n == 1)
    }

    fn touch_worker(&mut self, id: &WorkerId, at: Timestamp) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE workers SET last_seen_at = ?2
                 WHERE id = ?1 AND (last_seen_at IS NULL OR last_seen_at < ?2)",
            )?
            .execute(params![id.as_str(), at.unix_millis()])?;
        Ok(())
    }

    fn count_workers(&mut self, via: EnrolledVia, since: Option<Timestamp>) -> StoreResult<u64> {
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM workers WHERE enrolled_via = ?1 AND (?2 IS NULL OR created_at >= ?2)",
            )?
            .query_row(params![via.as_str(), since.map(Timestamp::unix_millis)], |row| row.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn fleet_overview(&mut self, now: Timestamp, hours: u32) -> StoreResult<FleetOverview> {
        let hours = hours.max(1);
        let rows = self.page(
            pages::overview(Dialect::Sqlite, now.unix_millis(), hours),
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        Ok(pages::read_overview(rows, hours))
    }

    fn count_seated_workers(&mut self, now: Timestamp, at_most: u64) -> StoreResult<u64> {
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM (SELECT 1 FROM workers WHERE enrolled_via <> ?1
                 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2) LIMIT ?3)",
            )?
            .query_row(
                params![
                    EnrolledVia::Builtin.as_str(),
                    now.unix_millis(),
                    i64::try_from(at_most).unwrap_or(i64::MAX)
                ],
                |row| row.get(0),
            )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn insert_job(&mut self, job: &Job) -> StoreResult<()> {
        let c = JobColumns::from_job(job);
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO jobs ({JOB_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
            ))?
            .execute(params![
                c.id,
                c.command,
                c.env,
                c.target_worker,
                c.selector,
                c.timeout_ms,
                c.queue_deadline,
                c.state,
                c.worker_id,
                c.worker_name,
                c.created_at,
                c.started_at,
                c.finished_at,
                c.exit_code,
                c.reason,
                c.output_bytes,
                c.truncated,
                c.dispatcher,
                c.ending,
                c.signal,
            ])?;
        Ok(())
    }

    fn get_job(&mut self, id: &JobId) -> StoreResult<Option<Job>> {
        let row = self
            .conn
            .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
            .query_row([id.as_str()], read_job_row)
            .optional()?;
        row.map(JobColumns::into_job).transpose()
    }

    fn list_jobs(&mut self, f: &JobFilter) -> StoreResult<Vec<Job>> {
        let statement = pages::jobs(f, Dialect::Sqlite);
        let mut stmt = self.conn.prepare_cached(&statement.sql)?;
        let rows = stmt
            .query_map(
                rusqlite::params_from_iter(statement.params.iter()),
                read_job_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(JobColumns::into_job).collect()
    }

    fn jobs_in_state(&mut self, state: JobState) -> StoreResult<Vec<Job>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt
            .query_map([state.as_str()], read_job_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(JobColumns::into_job).collect()
    }

    fn start_job(
        &mut self,
        id: &JobId,
        worker: &WorkerId,
        worker_name: &Name,
        dispatcher: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE jobs SET state = 'running', worker_id = ?2, worker_name = ?3, started_at = ?4,
                        dispatcher = ?5
                 WHERE id = ?1 AND state = 'queued'",
            )?
            .execute(params![
                id.as_str(),
                worker.as_str(),
                worker_name.as_str(),
                at.unix_millis(),
                dispatcher
            ])?;
        Ok(n == 1)
    }

    fn end_job(&mut self, id: &JobId, from: JobState, end: &JobEnd) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE jobs SET state = ?3, finished_at = ?4, exit_code = ?5, reason = ?6,
                 ending = ?7, signal = ?8
                 WHERE id = ?1 AND state = ?2",
            )?
            .execute(params![
                id.as_str(),
                from.as_str(),
                end.state.as_str(),
                end.at.unix_millis(),
                end.exit_code,
                end.reason,
                end.ending.as_str(),
                end.ending.signal()
            ])?;
        Ok(n == 1)
    }

    fn end_held_job(&mut self, id: &JobId, dispatcher: &str, end: &JobEnd) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE jobs SET state = ?3, finished_at = ?4, exit_code = ?5, reason = ?6,
                 ending = ?7, signal = ?8
                 WHERE id = ?1 AND state = 'running' AND dispatcher = ?2",
            )?
            .execute(params![
                id.as_str(),
                dispatcher,
                end.state.as_str(),
                end.at.unix_millis(),
                end.exit_code,
                end.reason,
                end.ending.as_str(),
                end.ending.signal()
            ])?;
        Ok(n == 1)
    }

    fn running_jobs_of(&mut self, worker: &WorkerId) -> StoreResult<Vec<Job>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'running' AND worker_id = ?1
             ORDER BY created_at, id"
        ))?;
        let rows = stmt
            .query_map([worker.as_str()], read_job_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(JobColumns::into_job).collect()
    }

    fn adopt_job(&mut self, id: &JobId, worker: &WorkerId, dispatcher: &str) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE jobs SET dispatcher = ?3
                 WHERE id = ?1 AND state = 'running' AND worker_id = ?2",
            )?
            .execute(params![id.as_str(), worker.as_str(), dispatcher])?;
        Ok(n == 1)
    }

    fn output_position(&mut self, id: &JobId) -> StoreResult<OutputPosition> {
        let (last, bytes): (i64, i64) = self
            .conn
            .prepare_cached(
                "SELECT COALESCE(MAX(seq), 0), COALESCE(SUM(length(data)), 0)
                 FROM job_output WHERE job_id = ?1",
            )?
            .query_row([id.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(OutputPosition {
            last_seq: u64::try_from(last).unwrap_or(0),
            stored_bytes: u64::try_from(bytes).unwrap_or(0),
        })
    }

    fn append_output(
        &mut self,
        id: &JobId,
        seq: u64,
        stream: u8,
        data: &[u8],
        at: Timestamp,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO job_output (job_id, seq, stream, data, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                id.as_str(),
                i64::try_from(seq).unwrap_or(i64::MAX),
                stream,
                data,
                at.unix_millis()
            ])?;
        Ok(())
    }

    fn set_output_stats(&mut self, id: &JobId, bytes: u64, truncated: bool) -> StoreResult<()> {
        self.conn
            .prepare_cached("UPDATE jobs SET output_bytes = ?2, truncated = ?3 WHERE id = ?1")?
            .execute(params![
                id.as_str(),
                i64::try_from(bytes).unwrap_or(i64::MAX),
                truncated
            ])?;
        Ok(())
    }

    fn read_timed_output(
        &mut self,
        id: &JobId,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<TimedChunk>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, stream, data, at FROM job_output WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(
                params![
                    id.as_str(),
                    i64::try_from(after).unwrap_or(i64::MAX),
                    i64::from(limit)
                ],
                |row| {
                    Ok(TimedChunk {
                        chunk: OutputChunk {
                            seq: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                            stream: row.get(1)?,
                            data: row.get(2)?,
                        },
                        at: row
                            .get::<_, Option<i64>>(3)?
                            .map(Timestamp::from_unix_millis),
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn put_presence(&mut self, p: &Presence) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO worker_presence
                    (worker_id, replica, conn_id, connected_at, running, slots, remote_addr)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (worker_id) DO UPDATE SET replica = excluded.replica,
                    conn_id = excluded.conn_id, connected_at = excluded.connected_at,
                    running = excluded.running, slots = excluded.slots,
                    remote_addr = excluded.remote_addr",
            )?
            .execute(params![
                p.worker.as_str(),
                p.replica,
                i64::try_from(p.conn_id).unwrap_or(i64::MAX),
                p.connected_at.unix_millis(),
                p.running,
                p.slots,
                p.remote_addr
            ])?;
        Ok(())
    }

    fn drop_presence(
        &mut self,
        worker: &WorkerId,
        replica: &str,
        conn_id: u64,
    ) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached(
                "DELETE FROM worker_presence WHERE worker_id = ?1 AND replica = ?2 AND conn_id = ?3",
            )?
            .execute(params![
                worker.as_str(),
                replica,
                i64::try_from(conn_id).unwrap_or(i64::MAX)
            ])?;
        Ok(n == 1)
    }

    fn presence_of(&mut self, worker: &WorkerId) -> StoreResult<Option<Presence>> {
        self.first_row(
            &format!("SELECT {PRESENCE_COLUMNS} FROM worker_presence WHERE worker_id = ?1"),
            [worker.as_str()],
            |row| read_presence(row)?,
        )
    }

    fn all_presence(&mut self) -> StoreResult<Vec<Presence>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {PRESENCE_COLUMNS} FROM worker_presence"))?;
        let rows = stmt
            .query_map([], read_presence)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().collect()
    }

    fn count_present_elsewhere(
        &mut self,
        here: &str,
        labels: &[(String, String)],
    ) -> StoreResult<u64> {
        let statement = pages::present_elsewhere(here, labels, Dialect::Sqlite);
        let count = self.first_row(
            &statement.sql,
            rusqlite::params_from_iter(statement.params.iter()),
            |row| Ok(row.get::<_, i64>(0)?),
        )?;
        Ok(u64::try_from(count.unwrap_or(0)).unwrap_or(0))
    }

    fn set_presence_running(
        &mut self,
        worker: &WorkerId,
        replica: &str,
        conn_id: u64,
        running: u32,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE worker_presence SET running = ?4
                 WHERE worker_id = ?1 AND replica = ?2 AND conn_id = ?3",
            )?
            .execute(params![
                worker.as_str(),
                replica,
                i64::try_from(conn_id).unwrap_or(i64::MAX),
                running
            ])?;
        Ok(())
    }

    fn drop_replica_presence(&mut self, replica: &str) -> StoreResult<u64> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM worker_presence WHERE replica = ?1")?
            .execute([replica])?;
        Ok(n as u64)
    }

    fn beat_replica(&mut self, replica: &str, at: Timestamp) -> StoreResult<bool> {
        let renewed = self
            .conn
            .prepare_cached("UPDATE replicas SET heartbeat_at = ?2 WHERE id = ?1")?
            .execute(params![replica, at.unix_millis()])?;
        if renewed == 1 {
            return Ok(true);
        }
        self.conn
            .prepare_cached(
                "INSERT INTO replicas (id, started_at, heartbeat_at) VALUES (?1, ?2, ?2)",
            )?
            .execute(params![replica, at.unix_millis()])?;
        Ok(false)
    }

    fn insert_ticket_key(&mut self, key: &SealedTicketKey) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached(
                "INSERT INTO tls_ticket_keys (certificate, period, sealed) VALUES (?1, ?2, ?3)
                 ON CONFLICT (certificate, period) DO NOTHING",
            )?
            .execute(params![key.certificate, key.period, key.sealed])?;
        Ok(n == 1)
    }

    fn ticket_keys(&mut self, certificate: &str) -> StoreResult<Vec<SealedTicketKey>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT period, sealed FROM tls_ticket_keys WHERE certificate = ?1
             ORDER BY period DESC",
        )?;
        let rows = stmt
            .query_map([certificate], |row| {
                Ok(SealedTicketKey {
                    certificate: certificate.to_owned(),
                    period: row.get(0)?,
                    sealed: row.get(1)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn drop_ticket_keys_before(&mut self, period: i64) -> StoreResult<u64> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM tls_ticket_keys WHERE period < ?1")?
            .execute([period])?;
        Ok(n as u64)
    }

    fn replicas_silent_since(&mut self, before: Timestamp) -> StoreResult<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM replicas WHERE heartbeat_at < ?1 ORDER BY id")?;
        let rows = stmt
            .query_map([before.unix_millis()], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn drop_replica(&mut self, replica: &str, before: Timestamp) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM replicas WHERE id = ?1 AND heartbeat_at < ?2")?
            .execute(params![replica, before.unix_millis()])?;
        Ok(n == 1)
    }

    fn transfer_jobs(&mut self, from: &str, to: &str) -> StoreResult<u64> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE jobs SET dispatcher = ?2 WHERE state = 'running' AND dispatcher = ?1",
            )?
            .execute(params![from, to])?;
        Ok(n as u64)
    }

    fn append_audit(&mut self, e: &AuditEvent) -> StoreResult<i64> {
        let e = e.clone().bounded();
        self.conn
            .prepare_cached(
                "INSERT INTO audit
                   (at, actor, action, target, remote_addr, outcome, detail, expected)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                e.at.unix_millis(),
                e.actor,
                e.action,
                e.target,
                e.remote_addr,
                e.outcome.as_str(),
                e.detail,
                e.expected,
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    fn audit_after(&mut self, after: i64, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        self.rows(&sql, params![after, i64::from(limit)], |row| {
            rows::read_audit(row)
        })
    }

    fn last_audit_seq(&mut self) -> StoreResult<i64> {
        Ok(self
            .first_row("SELECT COALESCE(MAX(seq), 0) FROM audit", [], |row| {
                row.column(0)
            })?
            .unwrap_or(0))
    }

    fn list_audit(&mut self, f: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let (prefix, like) = rows::audit_patterns(f);
        let (worker, actor) = rows::audit_subject(f);
        // The worker's condition is in the statement only when given: SQLite reads an OR of
        // two indexed equalities along both indexes, which `?5 IS NULL OR …` would prevent.
        let about = if worker.is_some() {
            "AND (target = ?5 OR actor = ?6)"
        } else {
            "AND ?5 IS NULL AND ?6 IS NULL"
        };
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit
             WHERE (?1 IS NULL OR seq < ?1)
               AND (?2 IS NULL OR action LIKE ?2 ESCAPE '\\')
               AND (?3 IS NULL OR target LIKE ?3 ESCAPE '\\' OR actor LIKE ?3 ESCAPE '\\'
                    OR detail LIKE ?3 ESCAPE '\\')
               {about}
             ORDER BY seq DESC LIMIT ?4"
        );
        self.rows(
            &sql,
            params![
                f.before_seq,
                prefix,
                like,
                i64::from(f.limit),
                worker,
                actor
            ],
            |row| rows::read_audit(row),
        )
    }

    fn delete_audit_before(&mut self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        let n = self
            .conn
            .prepare_cached(
                "DELETE FROM audit WHERE seq IN
                   (SELECT seq FROM audit WHERE at < ?1 ORDER BY at LIMIT ?2)",
            )?
            .execute(params![before.unix_millis(), i64::from(limit)])?;
        Ok(n as u64)
    }

    fn ended_jobs_before(&mut self, before: Timestamp, limit: u32) -> StoreResult<Vec<JobId>> {
        self.rows(
            "SELECT id FROM jobs
             WHERE finished_at < ?1 AND state NOT IN ('queued', 'running')
             ORDER BY finished_at LIMIT ?2",
            params![before.unix_millis(), i64::from(limit)],
            |row| codec::job_id(&row.get::<_, String>(0)?),
        )
    }

    fn delete_ended_job(&mut self, id: &JobId) -> StoreResult<bool> {
        // The job's output goes with it: `job_output` cascades.
        let n = self
            .conn
            .prepare_cached(
                "DELETE FROM jobs WHERE id = ?1 AND state NOT IN ('queued', 'running')",
            )?
            .execute([id.as_str()])?;
        Ok(n == 1)
    }

    fn insert_webhook(&mut self, w: &Webhook) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO webhooks (id, url, secret, events, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                w.id,
                w.url,
                w.secret,
                rows::webhook_events(w),
                w.created_at.unix_millis()
            ])?;
        Ok(())
    }

    fn list_webhooks(&mut self) -> StoreResult<Vec<Webhook>> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, id");
        self.rows(&sql, [], |row| rows::read_webhook(row))
    }

    fn delete_webhook(&mut self, id: &str) -> StoreResult<bool> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM webhooks WHERE id = ?1")?
            .execute([id])?;
        Ok(n > 0)
    }

    fn insert_delivery(
        &mut self,
        webhook_id: &str,
        event_seq: i64,
        event_type: EventType,
        at: Timestamp,
    ) -> StoreResult<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO webhook_deliveries
                   (webhook_id, event_seq, event_type, created_at, state, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?4)",
            )?
            .execute(params![
                webhook_id,
                event_seq,
                event_type.as_str(),
                at.unix_millis()
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    fn claim_deliveries(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        only: Option<i64>,
    ) -> StoreResult<Vec<DueDelivery>> {
        // One writer: what this selects stays unclaimed until the update below.
        let ids: Vec<i64> = self.rows(
            "SELECT id FROM webhook_deliveries
             WHERE state = 'pending'
               AND (?3 IS NULL AND next_attempt_at <= ?1 OR id = ?3)
             ORDER BY next_attempt_at LIMIT ?2",
            params![now.unix_millis(), i64::from(limit), only],
            |row| row.column(0),
        )?;
        let query = rows::due_delivery_query("?1");
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            self.conn
                .prepare_cached("UPDATE webhook_deliveries SET next_attempt_at = ?2 WHERE id = ?1")?
                .execute(params![id, lease_until.unix_millis()])?;
            if let Some(due) = self.first_row(&query, [id], |row| rows::read_due_delivery(row))? {
                claimed.push(due);
            }
        }
        Ok(claimed)
    }

    fn finish_attempt(&mut self, id: i64, attempt: &Attempt) -> StoreResult<bool> {
        let c = AttemptColumns::of(attempt, attempt.at);
        let n = self
            .conn
            .prepare_cached(
                "UPDATE webhook_deliveries
                 SET state = ?2, attempts = attempts + 1, next_attempt_at = ?3,
                     last_attempt_at = ?4, last_status = ?5, last_error = ?6, delivered_at = ?7
                 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![
                id,
                c.state,
                c.next_attempt_at,
                c.last_attempt_at,
                c.last_status,
                c.last_error,
                c.delivered_at
            ])?;
        Ok(n > 0)
    }

    fn list_deliveries(
        &mut self,
        webhook_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
             WHERE d.webhook_id = ?1 AND (?2 IS NULL OR d.id < ?2)
             ORDER BY d.id DESC LIMIT ?3"
        );
        self.rows(&sql, params![webhook_id, before, i64::from(limit)], |row| {
            rows::read_delivery(row)
        })
    }

    fn delete_deliveries_before(&mut self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        let n = self
            .conn
            .prepare_cached(
                "DELETE FROM webhook_deliveries WHERE id IN
                   (SELECT id FROM webhook_deliveries
                    WHERE created_at < ?1 AND state <> 'pending'
                    ORDER BY created_at LIMIT ?2)",
            )?
            .execute(params![before.unix_millis(), i64::from(limit)])?;
        Ok(n as u64)
    }

    fn notify(&mut self, _event: &str) -> StoreResult<()> {
        // One SQLite database has one server process: it acts on its own changes directly.
        Ok(())
    }

    fn serialize(&mut self, _scope: Scope) -> StoreResult<()> {
        // Write transactions already run one at a time on the writer thread.
        Ok(())
    }

    fn open_savepoint(&mut self) -> StoreResult<()> {
        // Inside the writer's own savepoint for this unit of work (SQLite nests them).
        Ok(self.conn.execute_batch("SAVEPOINT unit")?)
    }

    fn close_savepoint(&mut self, keep: bool) -> StoreResult<()> {
        let end = if keep {
            "RELEASE unit"
        } else {
            "ROLLBACK TO unit; RELEASE unit"
        };
        Ok(self.conn.execute_batch(end)?)
    }

    fn get_setting(&mut self, key: &str) -> StoreResult<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
            .query_row([key], |row| row.get(0))
            .optional()?)
    }

    fn put_setting(&mut self, key: &str, value: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
        Ok(())
    }
}

const PRESENCE_COLUMNS: &str =
    "worker_id, replica, conn_id, connected_at, running, slots, remote_addr";

fn read_presence(row: &Row<'_>) -> rusqlite::Result<StoreResult<Presence>> {
    let worker: String = row.get(0)?;
    let conn_id: i64 = row.get(2)?;
    let (running, slots): (i64, i64) = (row.get(4)?, row.get(5)?);
    let (replica, connected_at, remote_addr) = (row.get(1)?, row.get(3)?, row.get(6)?);
    Ok(WorkerId::parse(&worker)
        .map_err(|e| crate::StoreError::Corrupt(e.to_string()))
        .map(|worker| Presence {
            worker,
            replica,
            conn_id: u64::try_from(conn_id).unwrap_or(0),
            connected_at: Timestamp::from_unix_millis(connected_at),
            running: u32::try_from(running).unwrap_or(0),
            slots: u32::try_from(slots).unwrap_or(0),
            remote_addr,
        }))
}

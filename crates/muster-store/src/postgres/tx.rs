//! [`Tx`] for [`PgTx`]: one SQL statement per primitive, run inside the transaction the pool
//! thread opened. Statements that first read or insert a token or worker by name take that name's
//! lock first (see [`super::transaction`] for why).
//!
//! Over ~400 lines because it is the whole trait impl, one short method per primitive, which
//! cannot be split across files without a shim per method. The machinery the methods share is in
//! `transaction.rs`, the row shapes in `crate::rows`.

use muster_core::audit::{AuditEvent, AuditRecord};
use muster_core::events::EventType;
use muster_core::identity::PublicKey;
use muster_core::job::{Job, JobId, JobState};
use muster_core::tickets::TicketLedger;
use muster_core::{
    EnrolledVia, Labels, MachineId, Name, SecretHash, Timestamp, Token, Worker, WorkerId,
};
use postgres::Row;

use super::transaction::{PgTx, col};
use crate::codec::{self, JOB_COLUMNS, JobColumns};
use crate::error::StoreResult;
use crate::pages::{self, Dialect, Param, Statement};
use crate::rows::{
    self, AUDIT_COLUMNS, AttemptColumns, DELIVERY_COLUMNS, TOKEN_COLUMNS, TokenColumns,
    WEBHOOK_COLUMNS, WORKER_COLUMNS, WorkerColumns,
};
use crate::tx::{
    Attempt, AuditFilter, Delivery, DueDelivery, FleetOverview, JobEnd, JobFilter, OutputChunk,
    OutputPosition, Presence, Scope, SealedTicketKey, TimedChunk, TokenPage, Tx, Webhook,
    WorkerPage,
};

impl PgTx<'_> {
    /// Replaces the rows of `worker_labels` for this worker with `labels` (the index behind the
    /// `label` filter; the worker row's JSON stays the record).
    fn write_label_rows(&mut self, id: &str, labels: &Labels) -> StoreResult<()> {
        self.execute("DELETE FROM worker_labels WHERE worker_id = $1", &[&id])?;
        for (key, value) in labels.iter() {
            self.execute(
                "INSERT INTO worker_labels (worker_id, key, value) VALUES ($1, $2, $3)",
                &[&id, &key, &value],
            )?;
        }
        Ok(())
    }

    fn page(&mut self, statement: &Statement) -> StoreResult<Vec<Row>> {
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = statement
            .params
            .iter()
            .map(|p| match p {
                Param::Text(t) => t as &(dyn postgres::types::ToSql + Sync),
                Param::Int(i) => i as &(dyn postgres::types::ToSql + Sync),
            })
            .collect();
        if statement.plan_each_time {
            self.query_planned_each_time(&statement.sql, &params)
        } else {
            self.query(&statement.sql, &params)
        }
    }

    fn one_worker(&mut self, column: &str, key: &str) -> StoreResult<Option<Worker>> {
        let sql = format!("SELECT {WORKER_COLUMNS} FROM workers WHERE {column} = $1");
        self.query_opt(&sql, &[&key])?
            .as_ref()
            .map(rows::read_worker)
            .transpose()
    }
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

impl Tx for PgTx<'_> {
    fn insert_token(&mut self, t: &Token) -> StoreResult<()> {
        self.lock_name(&t.name)?;
        let c = TokenColumns::of(t);
        self.execute(
            &format!(
                "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                &c.name,
                &c.secret_hash,
                &c.labels,
                &c.created_at,
                &c.expires_at,
                &c.bound_machine,
                &c.enrolled_at,
                &c.revoked_at,
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
        .map(rows::read_token)
        .transpose()
    }

    fn page_tokens(&mut self, page: &TokenPage) -> StoreResult<Vec<Token>> {
        self.page(&pages::tokens(page, Dialect::Postgres))?
            .iter()
            .map(rows::read_token)
            .collect()
    }

    fn list_tokens(&mut self) -> StoreResult<Vec<Token>> {
        self.query(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, name"),
            &[],
        )?
        .iter()
        .map(rows::read_token)
        .collect()
    }

    fn tokens_expiring(
        &mut self,
        after: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<Token>> {
        self.query(
            &format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens
                 WHERE expires_at > $1 AND expires_at <= $2 AND revoked_at IS NULL
                 ORDER BY expires_at, name LIMIT $3"
            ),
            &[
                &after.unix_millis(),
                &until.unix_millis(),
                &i64::from(limit),
            ],
        )?
        .iter()
        .map(rows::read_token)
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
        let c = WorkerColumns::of(w);
        self.execute(
            &format!(
                "INSERT INTO workers ({WORKER_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            ),
            &[
                &c.id,
                &c.name,
                &c.enrolled_via,
                &c.token_name,
                &c.machine_id,
                &c.labels,
                &c.key_hash,
                &c.created_at,
                &c.expires_at,
                &c.revoked_at,
                &c.last_seen_at,
                &c.public_key,
                &c.ticket_confirmed,
                &c.ticket_pending,
                &c.ticket_remote,
                &c.suspended_at,
            ],
        )?;
        self.write_label_rows(w.id.as_str(), &w.labels)
    }

    fn get_worker(&mut self, id: &WorkerId) -> StoreResult<Option<Worker>> {
        self.one_worker("id", id.as_str())
    }

    fn get_worker_for_update(&mut self, id: &WorkerId) -> StoreResult<Option<Worker>> {
        let sql = format!("SELECT {WORKER_COLUMNS} FROM workers WHERE id = $1 FOR UPDATE");
        self.query_opt(&sql, &[&id.as_str()])?
            .as_ref()
            .map(rows::read_worker)
            .transpose()
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

    fn page_workers(&mut self, page: &WorkerPage) -> StoreResult<Vec<Worker>> {
        self.page(&pages::workers(page, Dialect::Postgres))?
            .iter()
            .map(rows::read_worker)
            .collect()
    }

    fn list_workers(&mut self) -> StoreResult<Vec<Worker>> {
        self.query(
            &format!("SELECT {WORKER_COLUMNS} FROM workers ORDER BY name"),
            &[],
        )?
        .iter()
        .map(rows::read_worker)
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
        if n == 1 {
            self.write_label_rows(id.as_str(), labels)?;
        }
        Ok(n == 1)
    }

    fn bind_worker_machine(&mut self, id: &WorkerId, machine: &MachineId) -> StoreResult<bool> {
        let n = self.execute(
            "UPDATE workers SET machine_id = $2 WHERE id = $1 AND machine_id IS NULL",
            &[&id.as_str(), &machine.as_str()],
        )?;
        Ok(n == 1)
    }

    fn set_worker_public_key(&mut self, id: &WorkerId, key: &PublicKey) -> StoreResult<bool> {
        let n = self.execute(
            "UPDATE workers SET public_key = $2 WHERE id = $1 AND public_key IS NULL",
            &[&id.as_str(), &key.to_string()],
        )?;
        Ok(n == 1)
    }

    fn set_worker_tickets(
        &mut self,
        id: &WorkerId,
        tickets: &TicketLedger,
        remote: Option<&str>,
    ) -> StoreResult<bool> {
        let confirmed = tickets.confirmed.as_ref().map(|h| h.to_hex());
        let n = self.execute(
            "UPDATE workers SET ticket_confirmed = $2, ticket_pending = $3,
                 ticket_remote = COALESCE($4, ticket_remote) WHERE id = $1",
            &[
                &id.as_str(),
                &confirmed,
                &tickets.pending_to_text(),
                &remote,
            ],
        )?;
        Ok(n == 1)
    }

    fn suspend_worker(&mut self, id: &WorkerId, at: Timestamp) -> StoreResult<bool> {
        let n = self.execute(
            "UPDATE workers SET suspended_at = $2 WHERE id = $1 AND suspended_at IS NULL",
            &[&id.as_str(), &at.unix_millis()],
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
        self.execute(
            "DELETE FROM worker_labels WHERE worker_id = $1",
            &[&id.as_str()],
        )?;
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

    fn touch_workers(&mut self, seen: &[(WorkerId, Timestamp)]) -> StoreResult<()> {
        self.touch_many(seen)
    }

    fn get_workers_for_update(&mut self, ids: &[WorkerId]) -> StoreResult<Vec<Worker>> {
        let ids: Vec<&str> = ids.iter().map(WorkerId::as_str).collect();
        self.query(
            &format!(
                "SELECT {WORKER_COLUMNS} FROM workers WHERE id = ANY($1) ORDER BY id FOR UPDATE"
            ),
            &[&ids],
        )?
        .iter()
        .map(rows::read_worker)
        .collect()
    }

    fn get_workers(&mut self, ids: &[WorkerId]) -> StoreResult<Vec<Worker>> {
        let ids: Vec<&str> = ids.iter().map(WorkerId::as_str).collect();
        self.query(
            &format!("SELECT {WORKER_COLUMNS} FROM workers WHERE id = ANY($1)"),
            &[&ids],
        )?
        .iter()
        .map(rows::read_worker)
        .collect()
    }

    fn set_workers_tickets(
        &mut self,
        changes: &[(WorkerId, TicketLedger, Option<String>)],
    ) -> StoreResult<()> {
        self.set_tickets_many(changes)
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

    fn fleet_overview(&mut self, now: Timestamp, hours: u32) -> StoreResult<FleetOverview> {
        let hours = hours.max(1);
        let statement = pages::overview(Dialect::Postgres, now.unix_millis(), hours);
        let rows = self
            .page(&statement)?
            .iter()
            .map(|row| Ok((col(row, 0)?, col(row, 1)?, col(row, 2)?)))
            .collect::<StoreResult<Vec<(String, String, i64)>>>()?;
        Ok(pages::read_overview(rows, hours))
    }

    fn count_seated_workers(&mut self, now: Timestamp, at_most: u64) -> StoreResult<u64> {
        let row = self.query_opt(
            "SELECT COUNT(*) FROM (SELECT 1 FROM workers WHERE enrolled_via <> $1
             AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2) LIMIT $3) AS seated",
            &[
                &EnrolledVia::Builtin.as_str(),
                &now.unix_millis(),
                &i64::try_from(at_most).unwrap_or(i64::MAX),
            ],
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
        self.page(&pages::jobs(f, Dialect::Postgres))?
            .iter()
            .map(job_from_row)
            .collect()
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

    fn end_held_job(&mut self, id: &JobId, dispatcher: &str, end: &JobEnd) -> StoreResult<bool> {
        let n = self.execute(
            "UPDATE jobs SET state = $3, finished_at = $4, exit_code = $5, reason = $6,
             ending = $7, signal = $8
             WHERE id = $1 AND state = 'running' AND dispatcher = $2",
            &[
                &id.as_str(),
                &dispatcher,
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

    fn running_jobs_of(&mut self, worker: &WorkerId) -> StoreResult<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'running' AND worker_id = $1
             ORDER BY created_at, id"
        );
        let rows = self.query(&sql, &[&worker.as_str()])?;
        rows.iter().map(job_from_row).collect()
    }

    fn adopt_job(&mut self, id: &JobId, worker: &WorkerId, dispatcher: &str) -> StoreResult<bool> {
        let n = self.execute(
            "UPDATE jobs SET dispatcher = $3
             WHERE id = $1 AND state = 'running' AND worker_id = $2",
            &[&id.as_str(), &worker.as_str(), &dispatcher],
        )?;
        Ok(n == 1)
    }

    fn output_position(&mut self, id: &JobId) -> StoreResult<OutputPosition> {
        let rows = self.query(
            "SELECT COALESCE(MAX(seq), 0)::BIGINT, COALESCE(SUM(length(data)), 0)::BIGINT
             FROM job_output WHERE job_id = $1",
            &[&id.as_str()],
        )?;
        let (last, bytes): (i64, i64) = match rows.first() {
            Some(row) => (col(row, 0)?, col(row, 1)?),
            None => (0, 0),
        };
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
        self.execute(
            "INSERT INTO job_output (job_id, seq, stream, data, at) VALUES ($1, $2, $3, $4, $5)",
            &[
                &id.as_str(),
                &i64::try_from(seq).unwrap_or(i64::MAX),
                &i16::from(stream),
                &data,
                &at.unix_millis(),
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

    fn read_timed_output(
        &mut self,
        id: &JobId,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<TimedChunk>> {
        let rows = self.query(
            "SELECT seq, stream, data, at FROM job_output WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&id.as_str(), &i64::try_from(after).unwrap_or(i64::MAX), &i64::from(limit)],
        )?;
        rows.iter()
            .map(|row| {
                Ok(TimedChunk {
                    chunk: OutputChunk {
                        seq: u64::try_from(col::<i64>(row, 0)?).unwrap_or(0),
                        stream: u8::try_from(col::<i16>(row, 1)?).unwrap_or(1),
                        data: col(row, 2)?,
                    },
                    at: col::<Option<i64>>(row, 3)?.map(Timestamp::from_unix_millis),
                })
            })
            .collect()
    }

    fn delete_audit_before(&mut self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        self.execute(
            "DELETE FROM audit WHERE seq IN
               (SELECT seq FROM audit WHERE at < $1 ORDER BY at LIMIT $2)",
            &[&before.unix_millis(), &i64::from(limit)],
        )
    }

    fn ended_jobs_before(&mut self, before: Timestamp, limit: u32) -> StoreResult<Vec<JobId>> {
        let rows = self.query(
            "SELECT id FROM jobs
             WHERE finished_at < $1 AND state NOT IN ('queued', 'running')
             ORDER BY finished_at LIMIT $2",
            &[&before.unix_millis(), &i64::from(limit)],
        )?;
        rows.iter()
            .map(|row| codec::job_id(&col::<String>(row, 0)?))
            .collect()
    }

    fn delete_ended_job(&mut self, id: &JobId) -> StoreResult<bool> {
        // The job's output goes with it: `job_output` cascades.
        let n = self.execute(
            "DELETE FROM jobs WHERE id = $1 AND state NOT IN ('queued', 'running')",
            &[&id.as_str()],
        )?;
        Ok(n == 1)
    }

    fn insert_webhook(&mut self, w: &Webhook) -> StoreResult<()> {
        self.execute(
            "INSERT INTO webhooks (id, url, secret, events, created_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &w.id,
                &w.url,
                &w.secret,
                &rows::webhook_events(w),
                &w.created_at.unix_millis(),
            ],
        )?;
        Ok(())
    }

    fn list_webhooks(&mut self) -> StoreResult<Vec<Webhook>> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, id");
        self.query(&sql, &[])?
            .iter()
            .map(rows::read_webhook)
            .collect()
    }

    fn delete_webhook(&mut self, id: &str) -> StoreResult<bool> {
        Ok(self.execute("DELETE FROM webhooks WHERE id = $1", &[&id])? > 0)
    }

    fn insert_delivery(
        &mut self,
        webhook_id: &str,
        event_seq: i64,
        event_type: EventType,
        at: Timestamp,
    ) -> StoreResult<i64> {
        let row = self.query_opt(
            "INSERT INTO webhook_deliveries
               (webhook_id, event_seq, event_type, created_at, state, next_attempt_at)
             VALUES ($1, $2, $3, $4, 'pending', $4) RETURNING id",
            &[
                &webhook_id,
                &event_seq,
                &event_type.as_str(),
                &at.unix_millis(),
            ],
        )?;
        row.as_ref()
            .map(|row| col(row, 0))
            .transpose()?
            .ok_or_else(|| crate::StoreError::Corrupt("an insert returned no id".into()))
    }

    fn claim_deliveries(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        only: Option<i64>,
    ) -> StoreResult<Vec<DueDelivery>> {
        // SKIP LOCKED: replicas claiming at once each take other rows instead of waiting.
        let claimed = self.query(
            "UPDATE webhook_deliveries SET next_attempt_at = $2
             WHERE id IN (
               SELECT id FROM webhook_deliveries
               WHERE state = 'pending'
                 AND ($4::BIGINT IS NULL AND next_attempt_at <= $1 OR id = $4::BIGINT)
               ORDER BY next_attempt_at LIMIT $3
               FOR UPDATE SKIP LOCKED)
             RETURNING id",
            &[
                &now.unix_millis(),
                &lease_until.unix_millis(),
                &i64::from(limit),
                &only,
            ],
        )?;
        let ids = claimed
            .iter()
            .map(|row| col::<i64>(row, 0))
            .collect::<StoreResult<Vec<_>>>()?;
        let query = rows::due_delivery_query("$1");
        let mut due = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = self.query_opt(&query, &[&id])? {
                due.push(rows::read_due_delivery(&row)?);
            }
        }
        Ok(due)
    }

    fn finish_attempt(&mut self, id: i64, attempt: &Attempt) -> StoreResult<bool> {
        let c = AttemptColumns::of(attempt, attempt.at);
        let n = self.execute(
            "UPDATE webhook_deliveries
             SET state = $2, attempts = attempts + 1, next_attempt_at = $3,
                 last_attempt_at = $4, last_status = $5, last_error = $6, delivered_at = $7
             WHERE id = $1 AND state = 'pending'",
            &[
                &id,
                &c.state,
                &c.next_attempt_at,
                &c.last_attempt_at,
                &c.last_status,
                &c.last_error,
                &c.delivered_at,
            ],
        )?;
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
             WHERE d.webhook_id = $1 AND ($2::BIGINT IS NULL OR d.id < $2::BIGINT)
             ORDER BY d.id DESC LIMIT $3"
        );
        self.query(&sql, &[&webhook_id, &before, &i64::from(limit)])?
            .iter()
            .map(rows::read_delivery)
            .collect()
    }

    fn delete_deliveries_before(&mut self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        self.execute(
            "DELETE FROM webhook_deliveries WHERE id IN
               (SELECT id FROM webhook_deliveries
                WHERE created_at < $1 AND state <> 'pending'
                ORDER BY created_at LIMIT $2)",
            &[&before.unix_millis(), &i64::from(limit)],
        )
    }

    fn notify(&mut self, event: &str) -> StoreResult<()> {
        let channel = self.events_channel();
        self.execute("SELECT pg_notify($1, $2)", &[&channel, &event])?;
        Ok(())
    }

    fn serialize(&mut self, scope: Scope) -> StoreResult<()> {
        // Released by COMMIT or ROLLBACK, so a crashed transaction never leaves it held.
        self.execute("SELECT pg_advisory_xact_lock($1)", &[&scope.lock_key()])?;
        Ok(())
    }

    fn open_savepoint(&mut self) -> StoreResult<()> {
        self.savepoint()
    }

    fn close_savepoint(&mut self, keep: bool) -> StoreResult<()> {
        self.end_savepoint(keep)
    }

    fn put_presence(&mut self, p: &Presence) -> StoreResult<()> {
        self.execute(
            "INSERT INTO worker_presence
                (worker_id, replica, conn_id, connected_at, running, slots, remote_addr)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (worker_id) DO UPDATE SET replica = excluded.replica,
                conn_id = excluded.conn_id, connected_at = excluded.connected_at,
                running = excluded.running, slots = excluded.slots,
                remote_addr = excluded.remote_addr",
            &[
                &p.worker.as_str(),
                &p.replica,
                &i64::try_from(p.conn_id).unwrap_or(i64::MAX),
                &p.connected_at.unix_millis(),
                &i32::try_from(p.running).unwrap_or(i32::MAX),
                &i32::try_from(p.slots).unwrap_or(i32::MAX),
                &p.remote_addr,
            ],
        )?;
        Ok(())
    }

    fn drop_presence(
        &mut self,
        worker: &WorkerId,
        replica: &str,
        conn_id: u64,
    ) -> StoreResult<bool> {
        let n = self.execute(
            "DELETE FROM worker_presence WHERE worker_id = $1 AND replica = $2 AND conn_id = $3",
            &[
                &worker.as_str(),
                &replica,
                &i64::try_from(conn_id).unwrap_or(i64::MAX),
            ],
        )?;
        Ok(n == 1)
    }

    fn put_presences(&mut self, rows: &[Presence]) -> StoreResult<()> {
        self.put_presence_many(rows)
    }

    fn drop_presences(&mut self, replica: &str, conns: &[(WorkerId, u64)]) -> StoreResult<u64> {
        self.drop_presence_many(replica, conns)
    }

    fn presence_of(&mut self, worker: &WorkerId) -> StoreResult<Option<Presence>> {
        let rows = self.query(
            &format!("SELECT {PRESENCE_COLUMNS} FROM worker_presence WHERE worker_id = $1"),
            &[&worker.as_str()],
        )?;
        rows.first().map(presence_from_row).transpose()
    }

    fn all_presence(&mut self) -> StoreResult<Vec<Presence>> {
        let rows = self.query(
            &format!("SELECT {PRESENCE_COLUMNS} FROM worker_presence"),
            &[],
        )?;
        rows.iter().map(presence_from_row).collect()
    }

    fn count_present_elsewhere(
        &mut self,
        here: &str,
        labels: &[(String, String)],
    ) -> StoreResult<u64> {
        let rows = self.page(&pages::present_elsewhere(here, labels, Dialect::Postgres))?;
        let count = match rows.first() {
            Some(row) => col::<i64>(row, 0)?,
            None => 0,
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn set_presence_running(
        &mut self,
        worker: &WorkerId,
        replica: &str,
        conn_id: u64,
        running: u32,
    ) -> StoreResult<()> {
        self.execute(
            "UPDATE worker_presence SET running = $4
             WHERE worker_id = $1 AND replica = $2 AND conn_id = $3",
            &[
                &worker.as_str(),
                &replica,
                &i64::try_from(conn_id).unwrap_or(i64::MAX),
                &i32::try_from(running).unwrap_or(i32::MAX),
            ],
        )?;
        Ok(())
    }

    fn drop_replica_presence(&mut self, replica: &str) -> StoreResult<u64> {
        self.execute(
            "DELETE FROM worker_presence WHERE replica = $1",
            &[&replica],
        )
    }

    fn beat_replica(&mut self, replica: &str, at: Timestamp) -> StoreResult<bool> {
        let renewed = self.execute(
            "UPDATE replicas SET heartbeat_at = $2 WHERE id = $1",
            &[&replica, &at.unix_millis()],
        )?;
        if renewed == 1 {
            return Ok(true);
        }
        // Two beats of one replica never race (one task beats), so no conflict to handle.
        self.execute(
            "INSERT INTO replicas (id, started_at, heartbeat_at) VALUES ($1, $2, $2)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            &[&replica, &at.unix_millis()],
        )?;
        Ok(false)
    }

    fn store_clock(&mut self) -> StoreResult<Option<Timestamp>> {
        // `clock_timestamp()`, not `now()`: the latter is the transaction's start, and the
        // point is the instant the lease is written.
        let row = self.query_opt(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
            &[],
        )?;
        Ok(row
            .map(|row| col::<i64>(&row, 0))
            .transpose()?
            .map(Timestamp::from_unix_millis))
    }

    fn replicas_silent_since(&mut self, before: Timestamp) -> StoreResult<Vec<String>> {
        let rows = self.query(
            "SELECT id FROM replicas WHERE heartbeat_at < $1 ORDER BY id",
            &[&before.unix_millis()],
        )?;
        rows.iter().map(|row| col::<String>(row, 0)).collect()
    }

    fn drop_replica(&mut self, replica: &str, before: Timestamp) -> StoreResult<bool> {
        let n = self.execute(
            "DELETE FROM replicas WHERE id = $1 AND heartbeat_at < $2",
            &[&replica, &before.unix_millis()],
        )?;
        Ok(n == 1)
    }

    fn transfer_jobs(&mut self, from: &str, to: &str) -> StoreResult<u64> {
        self.execute(
            "UPDATE jobs SET dispatcher = $2 WHERE state = 'running' AND dispatcher = $1",
            &[&from, &to],
        )
    }

    fn insert_ticket_key(&mut self, key: &SealedTicketKey) -> StoreResult<bool> {
        let n = self.execute(
            "INSERT INTO tls_ticket_keys (certificate, period, sealed) VALUES ($1, $2, $3)
             ON CONFLICT (certificate, period) DO NOTHING",
            &[&key.certificate, &key.period, &key.sealed],
        )?;
        Ok(n == 1)
    }

    fn ticket_keys(&mut self, certificate: &str) -> StoreResult<Vec<SealedTicketKey>> {
        let rows = self.query(
            "SELECT period, sealed FROM tls_ticket_keys WHERE certificate = $1
             ORDER BY period DESC",
            &[&certificate],
        )?;
        rows.iter()
            .map(|row| {
                Ok(SealedTicketKey {
                    certificate: certificate.to_owned(),
                    period: col(row, 0)?,
                    sealed: col(row, 1)?,
                })
            })
            .collect()
    }

    fn drop_ticket_keys_before(&mut self, period: i64) -> StoreResult<u64> {
        self.execute("DELETE FROM tls_ticket_keys WHERE period < $1", &[&period])
    }

    fn append_audit(&mut self, e: &AuditEvent) -> StoreResult<i64> {
        let e = e.clone().bounded();
        let row = self.query_opt(
            "INSERT INTO audit
               (at, actor, action, target, remote_addr, outcome, detail, expected)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
            &[
                &e.at.unix_millis(),
                &e.actor,
                &e.action,
                &e.target,
                &e.remote_addr,
                &e.outcome.as_str(),
                &e.detail,
                &e.expected,
            ],
        )?;
        row.as_ref()
            .map(|row| col(row, 0))
            .transpose()?
            .ok_or_else(|| crate::StoreError::Corrupt("an insert returned no seq".into()))
    }

    fn append_audits(&mut self, events: &[AuditEvent]) -> StoreResult<Vec<i64>> {
        self.append_audit_many(events)
    }

    fn audit_after(&mut self, after: i64, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2");
        self.query(&sql, &[&after, &i64::from(limit)])?
            .iter()
            .map(rows::read_audit)
            .collect()
    }

    fn last_audit_seq(&mut self) -> StoreResult<i64> {
        let row = self.query_opt("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM audit", &[])?;
        Ok(row
            .as_ref()
            .map(|row| col(row, 0))
            .transpose()?
            .unwrap_or(0))
    }

    fn list_audit(&mut self, f: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let (prefix, like) = rows::audit_patterns(f);
        let (worker, actor) = rows::audit_subject(f);
        // ILIKE, not LIKE: SQLite's LIKE ignores ASCII case, and both backends must answer the
        // same. The casts name the parameters' types, which `$1 IS NULL` alone cannot tell. The
        // worker's condition is in the statement only when given, so its plan reads the target
        // and actor indexes (a generic plan of `$5 IS NULL OR …` would not).
        let about = if worker.is_some() {
            "AND (target = $5::TEXT OR actor = $6::TEXT)"
        } else {
            "AND $5::TEXT IS NULL AND $6::TEXT IS NULL"
        };
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit
             WHERE ($1::BIGINT IS NULL OR seq < $1::BIGINT)
               AND ($2::TEXT IS NULL OR action ILIKE $2::TEXT ESCAPE '\\')
               AND ($3::TEXT IS NULL OR target ILIKE $3::TEXT ESCAPE '\\'
                    OR actor ILIKE $3::TEXT ESCAPE '\\' OR detail ILIKE $3::TEXT ESCAPE '\\')
               {about}
             ORDER BY seq DESC LIMIT $4"
        );
        self.query(
            &sql,
            &[
                &f.before_seq,
                &prefix,
                &like,
                &i64::from(f.limit),
                &worker,
                &actor,
            ],
        )?
        .iter()
        .map(rows::read_audit)
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

const PRESENCE_COLUMNS: &str =
    "worker_id, replica, conn_id, connected_at, running, slots, remote_addr";

fn presence_from_row(row: &Row) -> StoreResult<Presence> {
    let worker: String = col(row, 0)?;
    Ok(Presence {
        worker: WorkerId::parse(&worker).map_err(|e| crate::StoreError::Corrupt(e.to_string()))?,
        replica: col(row, 1)?,
        conn_id: u64::try_from(col::<i64>(row, 2)?).unwrap_or(0),
        connected_at: Timestamp::from_unix_millis(col(row, 3)?),
        running: u32::try_from(col::<i32>(row, 4)?).unwrap_or(0),
        slots: u32::try_from(col::<i32>(row, 5)?).unwrap_or(0),
        remote_addr: col(row, 6)?,
    })
}

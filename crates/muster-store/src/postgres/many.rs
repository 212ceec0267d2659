//! Writes of many rows in one statement each (`unnest` over arrays), for what a server writes in
//! bulk: last-seen times, presence rows, audit records. Each statement costs PostgreSQL a parse,
//! a plan lookup and a round trip whatever its size, so a group of connections recorded at once
//! (`flows::sessions`) or a fleet's last-seen times cost a handful of statements instead of
//! several per worker.
//!
//! Rows are sorted by worker id where rows of the `workers` and `worker_presence` tables are
//! locked, so two such statements (this replica's and another's) lock shared rows in one order.

use std::collections::BTreeMap;

use muster_core::audit::AuditEvent;
use muster_core::tickets::TicketLedger;
use muster_core::{Timestamp, WorkerId};

use super::transaction::{PgTx, col};
use crate::error::{StoreError, StoreResult};
use crate::tx::Presence;

fn bigint(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl PgTx<'_> {
    pub(super) fn touch_many(&mut self, seen: &[(WorkerId, Timestamp)]) -> StoreResult<()> {
        // One time per worker, its latest: an UPDATE joined to two rows of one worker would
        // apply either.
        let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
        for (id, at) in seen {
            let at = at.unix_millis();
            latest
                .entry(id.as_str())
                .and_modify(|t| *t = (*t).max(at))
                .or_insert(at);
        }
        if latest.is_empty() {
            return Ok(());
        }
        let (ids, ats): (Vec<&str>, Vec<i64>) = latest.into_iter().unzip();
        self.execute(
            "UPDATE workers AS w SET last_seen_at = v.at
             FROM unnest($1::text[], $2::bigint[]) AS v(id, at)
             WHERE w.id = v.id AND (w.last_seen_at IS NULL OR w.last_seen_at < v.at)",
            &[&ids, &ats],
        )?;
        Ok(())
    }

    pub(super) fn set_tickets_many(
        &mut self,
        changes: &[(WorkerId, TicketLedger, Option<String>)],
    ) -> StoreResult<()> {
        let last: BTreeMap<&str, (&TicketLedger, Option<&str>)> = changes
            .iter()
            .map(|(id, tickets, remote)| (id.as_str(), (tickets, remote.as_deref())))
            .collect();
        if last.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = last.keys().copied().collect();
        let confirmed: Vec<Option<String>> = last
            .values()
            .map(|(t, _)| t.confirmed.as_ref().map(|h| h.to_hex()))
            .collect();
        let pending: Vec<String> = last.values().map(|(t, _)| t.pending_to_text()).collect();
        let remotes: Vec<Option<&str>> = last.values().map(|(_, r)| *r).collect();
        self.execute(
            "UPDATE workers AS w SET ticket_confirmed = v.confirmed, ticket_pending = v.pending,
                 ticket_remote = COALESCE(v.remote, w.ticket_remote)
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                  AS v(id, confirmed, pending, remote)
             WHERE w.id = v.id",
            &[&ids, &confirmed, &pending, &remotes],
        )?;
        Ok(())
    }

    pub(super) fn put_presence_many(&mut self, rows: &[Presence]) -> StoreResult<()> {
        // The later row of one worker holds (ON CONFLICT cannot touch one row twice).
        let last: BTreeMap<&str, &Presence> = rows.iter().map(|p| (p.worker.as_str(), p)).collect();
        if last.is_empty() {
            return Ok(());
        }
        let rows: Vec<&Presence> = last.into_values().collect();
        let workers: Vec<&str> = rows.iter().map(|p| p.worker.as_str()).collect();
        let replicas: Vec<&str> = rows.iter().map(|p| p.replica.as_str()).collect();
        let conns: Vec<i64> = rows.iter().map(|p| bigint(p.conn_id)).collect();
        let since: Vec<i64> = rows.iter().map(|p| p.connected_at.unix_millis()).collect();
        let running: Vec<i32> = rows.iter().map(|p| int(p.running)).collect();
        let slots: Vec<i32> = rows.iter().map(|p| int(p.slots)).collect();
        let remotes: Vec<Option<&str>> = rows.iter().map(|p| p.remote_addr.as_deref()).collect();
        self.execute(
            "INSERT INTO worker_presence
                (worker_id, replica, conn_id, connected_at, running, slots, remote_addr)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                                  $5::int[], $6::int[], $7::text[])
             ON CONFLICT (worker_id) DO UPDATE SET replica = excluded.replica,
                conn_id = excluded.conn_id, connected_at = excluded.connected_at,
                running = excluded.running, slots = excluded.slots,
                remote_addr = excluded.remote_addr",
            &[
                &workers, &replicas, &conns, &since, &running, &slots, &remotes,
            ],
        )?;
        Ok(())
    }

    pub(super) fn drop_presence_many(
        &mut self,
        replica: &str,
        conns: &[(WorkerId, u64)],
    ) -> StoreResult<u64> {
        if conns.is_empty() {
            return Ok(0);
        }
        let mut sorted: Vec<(&str, i64)> = conns
            .iter()
            .map(|(w, c)| (w.as_str(), bigint(*c)))
            .collect();
        sorted.sort_unstable();
        let (workers, ids): (Vec<&str>, Vec<i64>) = sorted.into_iter().unzip();
        self.execute(
            "DELETE FROM worker_presence AS p
             USING unnest($2::text[], $3::bigint[]) AS v(worker_id, conn_id)
             WHERE p.worker_id = v.worker_id AND p.conn_id = v.conn_id AND p.replica = $1",
            &[&replica, &workers, &ids],
        )
    }

    pub(super) fn append_audit_many(&mut self, events: &[AuditEvent]) -> StoreResult<Vec<i64>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let events: Vec<AuditEvent> = events.iter().map(|e| e.clone().bounded()).collect();
        let at: Vec<i64> = events.iter().map(|e| e.at.unix_millis()).collect();
        let actor: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
        let action: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        let target: Vec<&str> = events.iter().map(|e| e.target.as_str()).collect();
        let remote: Vec<Option<&str>> = events.iter().map(|e| e.remote_addr.as_deref()).collect();
        let outcome: Vec<&str> = events.iter().map(|e| e.outcome.as_str()).collect();
        let detail: Vec<&str> = events.iter().map(|e| e.detail.as_str()).collect();
        let expected: Vec<Option<bool>> = events.iter().map(|e| e.expected).collect();
        // Rows are inserted in the order the SELECT yields them, so their identities ascend
        // in the events' order.
        let rows = self.query(
            "INSERT INTO audit (at, actor, action, target, remote_addr, outcome, detail, expected)
             SELECT at, actor, action, target, remote_addr, outcome, detail, expected
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::boolean[])
                  WITH ORDINALITY
                  AS v(at, actor, action, target, remote_addr, outcome, detail, expected, n)
             ORDER BY n
             RETURNING seq",
            &[
                &at, &actor, &action, &target, &remote, &outcome, &detail, &expected,
            ],
        )?;
        let mut seqs = rows
            .iter()
            .map(|row| col::<i64>(row, 0))
            .collect::<StoreResult<Vec<i64>>>()?;
        if seqs.len() != events.len() {
            return Err(StoreError::Corrupt(format!(
                "{} audit records written, {} seqs returned",
                events.len(),
                seqs.len()
            )));
        }
        seqs.sort_unstable();
        Ok(seqs)
    }
}

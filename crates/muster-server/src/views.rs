//! Domain → wire conversions. The server is the only place that knows both; within it, this
//! module is the only place that builds a wire view from a domain value.

use muster_core::audit::AuditRecord;
use muster_core::job::Job;
use muster_core::{Labels, Timestamp, Token, Worker};
use muster_proto::api::{AuditEntry, EnrollmentStatus, JobView, LabelMap, TokenView, WorkerView};
use muster_store::flows::enrollment::Status;

use crate::control::registry::Registry;

pub fn labels(labels: &Labels) -> LabelMap {
    labels.as_map().clone()
}

fn ts(t: Option<Timestamp>) -> Option<String> {
    t.map(Timestamp::to_rfc3339)
}

pub fn token(token: &Token, now: Timestamp, worker: Option<&Worker>) -> TokenView {
    TokenView {
        name: token.name.to_string(),
        state: token.state_at(now).as_str().to_owned(),
        created_at: token.created_at.to_rfc3339(),
        expires_at: token.expires_at.to_rfc3339(),
        bound_machine: token.bound_machine.as_ref().map(ToString::to_string),
        enrolled_at: ts(token.enrolled_at),
        revoked_at: ts(token.revoked_at),
        labels: labels(&token.labels),
        worker: worker.map(|w| w.name.to_string()),
    }
}

pub fn worker(worker: &Worker, now: Timestamp, registry: &Registry) -> WorkerView {
    let session = registry.get(&worker.id);
    let last_seen = session
        .as_ref()
        .map(|s| s.last_seen())
        .or(worker.last_seen_at);
    WorkerView {
        id: worker.id.to_string(),
        name: worker.name.to_string(),
        status: worker.status(session.is_some(), now).as_str().to_owned(),
        enrolled_via: worker.enrolled_via.as_str().to_owned(),
        machine_id: worker.machine_id.as_ref().map(ToString::to_string),
        labels: labels(&worker.labels),
        last_seen_at: ts(last_seen),
        created_at: worker.created_at.to_rfc3339(),
        expires_at: ts(worker.expires_at),
        revoked_at: ts(worker.revoked_at),
        token: worker.token_name.as_ref().map(ToString::to_string),
        running_jobs: session.as_ref().map(|s| s.running()).unwrap_or(0),
        slots: session.as_ref().map(|s| s.slots).unwrap_or(0),
        remote_addr: session
            .as_ref()
            .and_then(|s| s.remote_addr)
            .map(|a| a.ip().to_string()),
    }
}

pub fn audit(record: &AuditRecord) -> AuditEntry {
    let e = &record.event;
    AuditEntry {
        seq: record.seq,
        at: e.at.to_rfc3339(),
        actor: e.actor.clone(),
        action: e.action.clone(),
        target: e.target.clone(),
        remote_addr: e.remote_addr.clone(),
        outcome: e.outcome.as_str().to_owned(),
        detail: e.detail.clone(),
    }
}

pub fn job(job: &Job) -> JobView {
    JobView {
        id: job.id.to_string(),
        state: job.state.as_str().to_owned(),
        worker: job.worker_name.as_ref().map(ToString::to_string),
        exit_code: job.exit_code,
        command: job.command.clone(),
        env_keys: job.env.keys().cloned().collect(),
        selector: job.selector.to_string(),
        created_at: job.created_at.to_rfc3339(),
        started_at: ts(job.started_at),
        finished_at: ts(job.finished_at),
        reason: job.reason.clone(),
        timeout_ms: job
            .timeout
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        output_bytes: job.output_bytes,
        output_truncated: job.truncated,
    }
}

/// Auto-enrollment's settings and counts, with whether it is open at `now`.
pub fn enrollment(status: &Status, now: muster_core::Timestamp) -> EnrollmentStatus {
    let s = &status.settings;
    EnrollmentStatus {
        enabled: s.is_open(now, status.enrolled_in_window),
        secret_set_at: s.secret_set_at.map(|t| t.to_rfc3339()),
        enrolled_count: status.enrolled_count,
        window_closes_at: s.window_closes_at.map(|t| t.to_rfc3339()),
        max_enrollments: s.max_enrollments,
        enrollments_in_window: status.enrolled_in_window,
        name_pattern: s.name_pattern.as_ref().map(|p| p.as_str().to_owned()),
    }
}

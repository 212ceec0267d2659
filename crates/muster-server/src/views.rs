//! Domain → wire conversions. The server is the only place that knows both; within it, this
//! module is the only place that builds a wire view from a domain value.

use muster_core::audit::{AuditRecord, Outcome};
use muster_core::job::{EndingKind, Job, JobState};
use muster_core::{EnrolledVia, Labels, Timestamp, Token, TokenState, Worker, WorkerStatus};
use muster_proto::api::{
    self as wire, AuditEntry, EnrollmentStatus, JobEnding, JobView, LabelMap, TokenView, WorkerView,
};
use muster_store::flows::enrollment::Status;

use muster_store::Presence;

use crate::control::registry::Session;

pub fn labels(labels: &Labels) -> LabelMap {
    labels.as_map().clone()
}

fn ts(t: Option<Timestamp>) -> Option<String> {
    t.map(Timestamp::to_rfc3339)
}

pub fn token(token: &Token, now: Timestamp, worker: Option<&Worker>) -> TokenView {
    TokenView {
        name: token.name.to_string(),
        state: token_state(token.state_at(now)),
        created_at: token.created_at.to_rfc3339(),
        expires_at: token.expires_at.to_rfc3339(),
        bound_machine: token.bound_machine.as_ref().map(ToString::to_string),
        enrolled_at: ts(token.enrolled_at),
        revoked_at: ts(token.revoked_at),
        labels: labels(&token.labels),
        worker: worker.map(|w| w.name.to_string()),
    }
}

/// What is known of a worker's live control channel.
pub enum Live<'a> {
    /// Held by this replica (named): its session.
    Here(&'a Session, &'a str),
    /// Held by another replica: its presence row in the store.
    Elsewhere(&'a Presence),
    Nowhere,
}

impl<'a> Live<'a> {
    /// The worker's channel as this replica knows it: its own session first (fresher), then the
    /// store's presence rows (`presence`, looked up by id).
    pub fn of(
        worker: &muster_core::WorkerId,
        session: Option<&'a Session>,
        presence: Option<&'a Presence>,
        replica: &'a str,
    ) -> Self {
        match (session, presence) {
            (Some(session), _) => Live::Here(session, replica),
            (None, Some(row)) if row.worker == *worker => Live::Elsewhere(row),
            _ => Live::Nowhere,
        }
    }
}

pub fn worker(worker: &Worker, now: Timestamp, live: Live<'_>) -> WorkerView {
    let (connected, last_seen, running, slots, remote, confinement, replica) = match live {
        Live::Here(s, replica) => (
            true,
            Some(s.last_seen()),
            s.running(),
            s.slots,
            s.remote_addr.map(|a| a.ip().to_string()),
            s.confinement.clone(),
            Some(replica.to_owned()),
        ),
        Live::Elsewhere(p) => (
            true,
            None,
            p.running,
            p.slots,
            p.remote_addr.clone(),
            None,
            Some(p.replica.clone()),
        ),
        Live::Nowhere => (false, None, 0, 0, None, None, None),
    };
    WorkerView {
        id: worker.id.to_string(),
        name: worker.name.to_string(),
        status: worker_status(worker.status(connected, now)),
        enrolled_via: enrolled_via(worker.enrolled_via),
        machine_id: worker.machine_id.as_ref().map(ToString::to_string),
        labels: labels(&worker.labels),
        last_seen_at: ts(last_seen.or(worker.last_seen_at)),
        created_at: worker.created_at.to_rfc3339(),
        expires_at: ts(worker.expires_at),
        revoked_at: ts(worker.revoked_at),
        token: worker.token_name.as_ref().map(ToString::to_string),
        running_jobs: running,
        slots,
        remote_addr: remote,
        confinement,
        replica,
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
        outcome: outcome(e.outcome),
        detail: e.detail.clone(),
    }
}

fn outcome(outcome: Outcome) -> wire::AuditOutcome {
    match outcome {
        Outcome::Ok => wire::AuditOutcome::Ok,
        Outcome::Refused => wire::AuditOutcome::Refused,
    }
}

/// The id an event carries everywhere it is seen: its audit record's sequence number.
pub fn event_id(seq: i64) -> String {
    format!("evt_{seq}")
}

/// An audit record as an event (the stream's data, a webhook's body).
pub fn event(record: &AuditRecord) -> wire::Event {
    let e = &record.event;
    let kind = muster_core::events::EventType::of(&e.action, e.outcome);
    wire::Event {
        id: event_id(record.seq),
        kind: kind.map_or_else(|| e.action.clone(), |k| k.as_str().to_owned()),
        at: e.at.to_rfc3339(),
        actor: e.actor.clone(),
        action: e.action.clone(),
        target: e.target.clone(),
        remote_addr: e.remote_addr.clone(),
        outcome: outcome(e.outcome),
        detail: e.detail.clone(),
        expected: e.expected,
    }
}

pub fn webhook(w: &muster_store::Webhook) -> wire::WebhookView {
    wire::WebhookView {
        id: w.id.clone(),
        url: w.url.clone(),
        events: w.events.iter().map(|e| e.as_str().to_owned()).collect(),
        created_at: w.created_at.to_rfc3339(),
    }
}

pub fn delivery(d: &muster_store::Delivery) -> wire::DeliveryView {
    let pending = d.state == muster_store::DeliveryState::Pending;
    wire::DeliveryView {
        id: d.id,
        webhook_id: d.webhook_id.clone(),
        event_id: event_id(d.event_seq),
        event_type: d.event_type.as_str().to_owned(),
        state: d.state.as_str().to_owned(),
        attempts: d.attempts,
        created_at: d.created_at.to_rfc3339(),
        next_attempt_at: pending.then(|| d.next_attempt_at.to_rfc3339()),
        last_attempt_at: ts(d.last_attempt_at),
        last_status: d.last_status,
        last_error: d.last_error.clone(),
        delivered_at: ts(d.delivered_at),
    }
}

pub fn job(job: &Job) -> JobView {
    JobView {
        id: job.id.to_string(),
        state: job_state(job.state),
        worker: job.worker_name.as_ref().map(ToString::to_string),
        exit_code: job.exit_code,
        command: job.command.clone(),
        env_keys: job.env.keys().cloned().collect(),
        selector: job.selector.to_string(),
        created_at: job.created_at.to_rfc3339(),
        started_at: ts(job.started_at),
        finished_at: ts(job.finished_at),
        reason: job.reason.clone(),
        ending: job.ending.map(ending),
        timeout_ms: job
            .timeout
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        output_bytes: job.output_bytes,
        output_truncated: job.truncated,
        placement: None,
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
        expected_names: s.expected_names.as_ref().map(|p| p.as_str().to_owned()),
    }
}

fn token_state(state: TokenState) -> wire::TokenState {
    match state {
        TokenState::Unused => wire::TokenState::Unused,
        TokenState::Enrolled => wire::TokenState::Enrolled,
        TokenState::Expired => wire::TokenState::Expired,
        TokenState::Revoked => wire::TokenState::Revoked,
    }
}

fn worker_status(status: WorkerStatus) -> wire::WorkerStatus {
    match status {
        WorkerStatus::Connected => wire::WorkerStatus::Connected,
        WorkerStatus::Disconnected => wire::WorkerStatus::Disconnected,
        WorkerStatus::Revoked => wire::WorkerStatus::Revoked,
        WorkerStatus::Expired => wire::WorkerStatus::Expired,
        WorkerStatus::Suspended => wire::WorkerStatus::Suspended,
    }
}

fn enrolled_via(via: EnrolledVia) -> wire::EnrolledVia {
    match via {
        EnrolledVia::Token => wire::EnrolledVia::Token,
        EnrolledVia::Secret => wire::EnrolledVia::Secret,
        EnrolledVia::Precreated => wire::EnrolledVia::Precreated,
        EnrolledVia::Builtin => wire::EnrolledVia::Builtin,
    }
}

pub fn job_state(state: JobState) -> wire::JobState {
    match state {
        JobState::Queued => wire::JobState::Queued,
        JobState::Running => wire::JobState::Running,
        JobState::Succeeded => wire::JobState::Succeeded,
        JobState::Failed => wire::JobState::Failed,
        JobState::Cancelled => wire::JobState::Cancelled,
        JobState::Lost => wire::JobState::Lost,
    }
}

fn ending(kind: EndingKind) -> JobEnding {
    match kind {
        EndingKind::Exited(code) => JobEnding::Exited { code },
        EndingKind::Signalled(signal) => JobEnding::Signalled { signal },
        EndingKind::TimedOut => JobEnding::TimedOut,
        EndingKind::Cancelled => JobEnding::Cancelled,
        EndingKind::SpawnFailed => JobEnding::SpawnFailed,
        EndingKind::Lost => JobEnding::Lost,
        EndingKind::QueueTimeout => JobEnding::NoWorker,
    }
}

/// The edition and the license in force, as `muster license show` prints them.
/// The edition `grant` makes this server run.
pub fn edition(grant: Option<&muster_core::license::Grant>) -> wire::Edition {
    use muster_core::license::Edition;
    match Edition::of(grant) {
        Edition::Community => wire::Edition::Community,
        Edition::Trial => wire::Edition::Trial,
        Edition::Licensed => wire::Edition::Licensed,
    }
}

pub fn license(status: &muster_store::flows::license::Status, now: Timestamp) -> wire::LicenseView {
    use muster_core::license::{self as rules, Grant, LicenseState};
    let grant = status.grant.as_ref();
    let licensed = match grant {
        Some(Grant::Licensed(l)) => Some(l),
        _ => None,
    };
    let can_join = match rules::may_join(grant, now) {
        Ok(Some(limit)) => status.workers_used < limit,
        Ok(None) => true,
        Err(_) => false,
    };
    let warning = grant.and_then(|g| {
        g.expiry_warning(now)
            .or_else(|| rules::prepare_warning(Some(g), status.workers_used, now))
    });
    wire::LicenseView {
        edition: edition(grant),
        state: match grant.map_or(LicenseState::Valid, |g| g.state_at(now)) {
            LicenseState::Valid => wire::LicenseState::Valid,
            LicenseState::Expiring => wire::LicenseState::Expiring,
            LicenseState::Grace => wire::LicenseState::Grace,
            LicenseState::Expired => wire::LicenseState::Expired,
        },
        licensee: licensed.map(|l| l.licensee.clone()),
        // Community Edition admits no external worker at all.
        max_workers: grant.map_or(Some(0), Grant::max_workers),
        workers_used: status.workers_used,
        expires_at: grant.map(|g| g.expires_at().to_rfc3339()),
        issuer: licensed.map(|l| l.issuer.clone()),
        id: licensed.map(|l| l.id.clone()),
        issued_at: licensed.map(|l| l.issued_at.to_rfc3339()),
        grace_ends_at: grant.map(|g| g.grace_ends_at().to_rfc3339()),
        can_join,
        warning,
        trial_started_at: status.trial.map(|t| t.started_at.to_rfc3339()),
        trial_ends_at: status.trial.map(|t| t.expires_at.to_rfc3339()),
        last_refused_at: status.last_refused.as_ref().map(|r| r.at.to_rfc3339()),
        last_refused: status.last_refused.as_ref().map(|r| r.message.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire spells every domain state as the domain does: scripts see the same words.
    #[test]
    fn wire_words_match_the_domain() {
        for state in JobState::ALL {
            assert_eq!(job_state(state).as_str(), state.as_str());
        }
        for state in TokenState::ALL {
            assert_eq!(token_state(state).as_str(), state.as_str());
        }
        for status in [
            WorkerStatus::Connected,
            WorkerStatus::Disconnected,
            WorkerStatus::Revoked,
            WorkerStatus::Expired,
        ] {
            assert_eq!(worker_status(status).as_str(), status.as_str());
        }
        for via in [
            EnrolledVia::Token,
            EnrolledVia::Secret,
            EnrolledVia::Precreated,
            EnrolledVia::Builtin,
        ] {
            assert_eq!(enrolled_via(via).as_str(), via.as_str());
        }
    }
}

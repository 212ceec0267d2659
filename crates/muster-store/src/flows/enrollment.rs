//! Auto-enrollment: its settings (one JSON value in `settings`) and enrolling a named machine
//! that presented the shared secret.

use muster_core::audit::{AuditEvent, Outcome};
use muster_core::credentials::SlowHash;
use muster_core::enrollment::{AutoDecision, AutoEnrollment, AutoRefusal, NamePattern};
use muster_core::identity::PublicKey;
use muster_core::license::Joining;
use muster_core::worker::WorkerIdentity;
use muster_core::{EnrolledVia, KeyHash, Labels, MachineId, Name, Timestamp, Worker, WorkerId};
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, StoreResult};
use crate::flows::license;
use crate::flows::tokens::Enrolled;
use crate::tx::Tx;

const KEY: &str = "auto_enrollment";

/// The stored form. Kept apart from the domain type so the domain stays free of serde.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    enabled: bool,
    secret_hash: Option<String>,
    secret_set_at: Option<i64>,
    window_opened_at: Option<i64>,
    window_closes_at: Option<i64>,
    max_enrollments: Option<u64>,
    name_pattern: Option<String>,
    #[serde(default)]
    expected_names: Option<String>,
}

pub fn load(tx: &mut dyn Tx) -> StoreResult<AutoEnrollment> {
    let Some(json) = tx.get_setting(KEY)? else {
        return Ok(AutoEnrollment::default());
    };
    let s: Stored =
        serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("{KEY}: {e}")))?;
    Ok(AutoEnrollment {
        enabled: s.enabled,
        secret: s.secret_hash.map(SlowHash::from_stored),
        secret_set_at: s.secret_set_at.map(Timestamp::from_unix_millis),
        window_opened_at: s.window_opened_at.map(Timestamp::from_unix_millis),
        window_closes_at: s.window_closes_at.map(Timestamp::from_unix_millis),
        max_enrollments: s.max_enrollments,
        name_pattern: s
            .name_pattern
            .map(|p| NamePattern::parse(&p).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()?,
        expected_names: s
            .expected_names
            .map(|p| NamePattern::parse(&p).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()?,
    })
}

fn save(tx: &mut dyn Tx, settings: &AutoEnrollment) -> StoreResult<()> {
    let stored = Stored {
        enabled: settings.enabled,
        secret_hash: settings.secret.as_ref().map(|h| h.as_stored().to_owned()),
        secret_set_at: settings.secret_set_at.map(Timestamp::unix_millis),
        window_opened_at: settings.window_opened_at.map(Timestamp::unix_millis),
        window_closes_at: settings.window_closes_at.map(Timestamp::unix_millis),
        max_enrollments: settings.max_enrollments,
        name_pattern: settings
            .name_pattern
            .as_ref()
            .map(|p| p.as_str().to_owned()),
        expected_names: settings
            .expected_names
            .as_ref()
            .map(|p| p.as_str().to_owned()),
    };
    let json = serde_json::to_string(&stored).map_err(|e| StoreError::Backend(e.to_string()))?;
    tx.put_setting(KEY, &json)
}

/// The settings with the counts `muster enrollment status` shows.
#[derive(Debug, Clone)]
pub struct Status {
    pub settings: AutoEnrollment,
    /// Workers (still) enrolled through the secret.
    pub enrolled_count: u64,
    /// Enrollments since the current window opened.
    pub enrolled_in_window: u64,
}

pub fn status(tx: &mut dyn Tx) -> StoreResult<Status> {
    let settings = load(tx)?;
    let enrolled_count = tx.count_workers(EnrolledVia::Secret, None)?;
    let enrolled_in_window = match settings.window_opened_at {
        Some(opened) => tx.count_workers(EnrolledVia::Secret, Some(opened))?,
        None => enrolled_count,
    };
    Ok(Status {
        settings,
        enrolled_count,
        enrolled_in_window,
    })
}

/// What deciding an enrollment needs: the settings, and the count of enrollments in the current
/// window — counted only when a window limit makes it matter, since every enrollment asks.
pub fn gate(tx: &mut dyn Tx) -> StoreResult<(AutoEnrollment, u64)> {
    let settings = load(tx)?;
    let in_window = match (settings.max_enrollments, settings.window_opened_at) {
        (None, _) => 0,
        (Some(_), opened) => tx.count_workers(EnrolledVia::Secret, opened)?,
    };
    Ok((settings, in_window))
}

/// A change an admin makes. `None` fields leave the setting as it is.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub enabled: Option<bool>,
    /// A new secret (already hashed), set now.
    pub secret: Option<SlowHash>,
    /// Open a new window now with these guard rails (replacing the old ones).
    pub new_window: Option<Window>,
}

#[derive(Debug, Clone, Default)]
pub struct Window {
    pub closes_at: Option<Timestamp>,
    pub max_enrollments: Option<u64>,
    pub name_pattern: Option<NamePattern>,
    /// Names expected to enroll; others are flagged on their `worker.enrolled` event.
    pub expected_names: Option<NamePattern>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefusal {
    #[error("auto-enrollment has no secret yet")]
    NoSecret,
}

/// Applies an admin's change and audits it. The audit record never carries the secret.
pub fn change(
    tx: &mut dyn Tx,
    change: &Change,
    now: Timestamp,
    audit: &AuditEvent,
) -> StoreResult<Result<Status, ChangeRefusal>> {
    let mut settings = load(tx)?;
    if let Some(secret) = &change.secret {
        settings.secret = Some(secret.clone());
        settings.secret_set_at = Some(now);
    }
    if let Some(window) = &change.new_window {
        settings.window_opened_at = Some(now);
        settings.window_closes_at = window.closes_at;
        settings.max_enrollments = window.max_enrollments;
        settings.name_pattern = window.name_pattern.clone();
        settings.expected_names = window.expected_names.clone();
    }
    if let Some(enabled) = change.enabled {
        if enabled && settings.secret.is_none() {
            return Ok(Err(ChangeRefusal::NoSecret));
        }
        settings.enabled = enabled;
    }
    save(tx, &settings)?;
    tx.insert_audit(audit)?;
    Ok(Ok(status(tx)?))
}

/// A machine presenting the secret, verified by the server against the secret set at
/// `verified_secret_set_at` (the secret may have been rotated since; then it no longer counts).
#[derive(Debug, Clone)]
pub struct SecretEnrollment {
    pub name: Name,
    pub machine: MachineId,
    pub labels: Labels,
    pub now: Timestamp,
    pub verified_secret_set_at: Timestamp,
    pub new_worker_id: WorkerId,
    pub new_key: KeyHash,
    /// The key the machine proved it holds (the server checked the proof).
    pub public_key: PublicKey,
    pub remote_addr: Option<String>,
}

/// Enrolls (or re-enrolls, superseding a disconnected predecessor) a worker that presented the
/// secret. `is_connected` answers from the server's live registry. An enrollment is audited in
/// its transaction; a refusal is returned unrecorded, for the server's aggregator of refused
/// attempts.
pub fn enroll(
    tx: &mut dyn Tx,
    req: &SecretEnrollment,
    is_connected: &dyn Fn(&WorkerId) -> bool,
) -> StoreResult<Result<(Enrolled, Option<WorkerId>), AutoRefusal>> {
    let result = enroll_inner(tx, req, is_connected);
    let detail = match &result {
        Ok(Ok((enrolled, None))) => format!("worker {} enrolled", enrolled.worker.id),
        Ok(Ok((enrolled, Some(old)))) => format!(
            "worker {} enrolled, superseding {old} (its key no longer works)",
            enrolled.worker.id
        ),
        Ok(Err(_)) | Err(_) => return result,
    };
    let expected = load(tx)?.is_expected(req.name.as_str());
    tx.insert_audit(&AuditEvent {
        expected,
        ..enrolled_event(req, detail)
    })?;
    if let Ok(Ok((_, Some(old)))) = &result {
        tx.insert_audit(&AuditEvent {
            expected: None,
            action: "worker.superseded".into(),
            ..enrolled_event(req, format!("identity {old} replaced by a new enrollment"))
        })?;
    }
    result
}

fn enrolled_event(req: &SecretEnrollment, detail: String) -> AuditEvent {
    AuditEvent {
        expected: None,
        at: req.now,
        actor: format!("machine:{}", req.machine),
        action: "enroll.secret".into(),
        target: req.name.to_string(),
        remote_addr: req.remote_addr.clone(),
        outcome: Outcome::Ok,
        detail,
    }
}

fn enroll_inner(
    tx: &mut dyn Tx,
    req: &SecretEnrollment,
    is_connected: &dyn Fn(&WorkerId) -> bool,
) -> StoreResult<Result<(Enrolled, Option<WorkerId>), AutoRefusal>> {
    // The count of enrollments in the window, and the name checks below, must still hold when
    // this commits, also when replicas enroll at the same moment.
    tx.serialize(crate::tx::Scope::Enrollment)?;
    let (settings, enrolled_in_window) = gate(tx)?;
    let settings = &settings;
    if let Err(refusal) = settings.check_open(req.now, enrolled_in_window) {
        return Ok(Err(refusal));
    }
    if settings.secret_set_at != Some(req.verified_secret_set_at) {
        // Rotated while this presentation was being verified: it matched the old secret.
        return Ok(Err(AutoRefusal::SecretMismatch));
    }
    let existing = tx.get_worker_by_name(&req.name)?;
    // A token's name is kept for the worker it will enroll, used or not (once it has, the
    // worker's own record says why the name is taken).
    if existing.is_none() && tx.get_token(&req.name)?.is_some() {
        return Ok(Err(AutoRefusal::NameOfToken(req.name.clone())));
    }
    // Connected here (the registry knows at once), or to any replica (the store's presence).
    let connected = match existing.as_ref() {
        Some(w) => is_connected(&w.id) || tx.presence_of(&w.id)?.is_some(),
        None => false,
    };
    let decision = match settings.decide(
        &req.name,
        &req.machine,
        existing.as_ref(),
        connected,
        req.now,
    ) {
        Ok(d) => d,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let joining = match decision {
        AutoDecision::Create => Joining::New,
        AutoDecision::Supersede(_) => Joining::Replacing,
    };
    if let Err(refusal) = license::check_join(tx, req.now, joining)? {
        return Ok(Err(AutoRefusal::License(refusal)));
    }
    let superseded = match decision {
        AutoDecision::Create => None,
        AutoDecision::Supersede(old) => {
            tx.delete_worker(&old)?;
            Some(old)
        }
    };
    let worker = Worker {
        id: req.new_worker_id.clone(),
        name: req.name.clone(),
        enrolled_via: EnrolledVia::Secret,
        token_name: None,
        machine_id: Some(req.machine.clone()),
        labels: req.labels.clone(),
        key_hash: req.new_key.clone(),
        created_at: req.now,
        expires_at: None,
        revoked_at: None,
        last_seen_at: None,
        identity: WorkerIdentity {
            public_key: Some(req.public_key),
            ..WorkerIdentity::default()
        },
    };
    tx.insert_worker(&worker)?;
    Ok(Ok((
        Enrolled {
            worker,
            resumed: false,
        },
        superseded,
    )))
}

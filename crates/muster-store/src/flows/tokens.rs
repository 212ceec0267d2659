//! Enrollment tokens: create, revoke, and enroll a machine with one.

use muster_core::audit::{AuditEvent, Outcome};
use muster_core::identity::PublicKey;
use muster_core::license::Joining;
use muster_core::token::{Presentation, Refusal, RevokeError, RevokeOutcome};
use muster_core::worker::WorkerIdentity;
use muster_core::{
    EnrolledVia, KeyHash, Labels, MachineId, Name, Timestamp, Token, TokenSecret, Worker, WorkerId,
};

use crate::error::{StoreError, StoreResult};
use crate::flows::license;
use crate::tx::Tx;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateTokenRefusal {
    #[error("an enrollment token named `{0}` already exists")]
    TokenExists(Name),
    #[error("a worker named `{0}` already exists; a token's name becomes its worker's name")]
    WorkerExists(Name),
}

/// Stores a new token. Nothing is written when it is refused.
pub fn create(
    tx: &mut dyn Tx,
    token: &Token,
    audit: &AuditEvent,
) -> StoreResult<Result<(), CreateTokenRefusal>> {
    if tx.get_token(&token.name)?.is_some() {
        return Ok(Err(CreateTokenRefusal::TokenExists(token.name.clone())));
    }
    if tx.get_worker_by_name(&token.name)?.is_some() {
        return Ok(Err(CreateTokenRefusal::WorkerExists(token.name.clone())));
    }
    tx.insert_token(token)?;
    tx.insert_audit(audit)?;
    Ok(Ok(()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRevoked {
    /// False when the token was already revoked: the call succeeded and changed nothing.
    pub changed: bool,
    /// The worker enrolled with the token, now revoked too: its session must be cut off.
    pub worker: Option<WorkerId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokeTokenRefusal {
    #[error("no enrollment token named `{0}`")]
    NotFound(Name),
    #[error(transparent)]
    Expired(RevokeError),
}

/// Revokes a token and the worker enrolled with it, in one transaction.
pub fn revoke(
    tx: &mut dyn Tx,
    name: &Name,
    now: Timestamp,
    audit: &AuditEvent,
) -> StoreResult<Result<TokenRevoked, RevokeTokenRefusal>> {
    let Some(token) = tx.get_token(name)? else {
        return Ok(Err(RevokeTokenRefusal::NotFound(name.clone())));
    };
    let outcome = match token.revoke(now) {
        Ok(outcome) => outcome,
        Err(e) => return Ok(Err(RevokeTokenRefusal::Expired(e))),
    };
    let changed = outcome == RevokeOutcome::Revoke && tx.revoke_token(name, now)?;
    let mut worker = None;
    if changed && let Some(w) = tx.get_worker_by_token(name)? {
        tx.revoke_worker(&w.id, now)?;
        worker = Some(w.id);
    }
    let mut audit = audit.clone();
    if !changed {
        audit.detail = "already revoked; nothing changed".into();
    }
    tx.insert_audit(&audit)?;
    Ok(Ok(TokenRevoked { changed, worker }))
}

/// A machine presenting a token, with everything the server decided up front: the id and key
/// hash a new identity gets. The key's plaintext never reaches the store.
#[derive(Debug, Clone)]
pub struct TokenEnrollment {
    pub presented: TokenSecret,
    pub machine: MachineId,
    /// Labels the worker asserts about itself; the token's labels win over them.
    pub labels: Labels,
    pub now: Timestamp,
    pub new_worker_id: WorkerId,
    pub new_key: KeyHash,
    /// The key the machine proved it holds (the server checked the proof).
    pub public_key: PublicKey,
    pub remote_addr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub worker: Worker,
    /// True when the same machine came back with the token (a new key was issued for the same
    /// worker), false when the token was bound just now.
    pub resumed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenEnrollRefusal {
    /// No token of that name, or the secret does not match. One answer for both, so a caller
    /// cannot learn which token names exist.
    #[error("enrollment token `{0}` is not known to this server")]
    Unknown(Name),
    #[error(transparent)]
    Token(Refusal),
    #[error("the worker `{0}` is revoked")]
    WorkerRevoked(Name),
    #[error("a worker named `{0}` already exists, enrolled another way")]
    NameInUse(Name),
    #[error(transparent)]
    Labels(muster_core::labels::LabelError),
    /// A new worker would join, and the edition or the license does not allow it.
    #[error(transparent)]
    License(muster_core::license::JoinRefusal),
}

/// How many times to re-read and re-decide when a concurrent enrollment changed the token
/// between our read and our conditional update (possible on PostgreSQL, never on SQLite, whose
/// writes are serialized). The second attempt always sees the winner's binding.
const MAX_ATTEMPTS: usize = 3;

/// Enrolls a machine with a token: binds an unused token (single use), or lets the bound machine
/// resume with a new key. An enrollment is audited in its transaction; a refusal changes nothing
/// and is returned unrecorded, for the server to record among the refused attempts it
/// aggregates (anyone can send one).
pub fn enroll(
    tx: &mut dyn Tx,
    req: &TokenEnrollment,
) -> StoreResult<Result<Enrolled, TokenEnrollRefusal>> {
    let name = &req.presented.name;
    let result = enroll_inner(tx, req);
    let detail = match &result {
        Ok(Ok(e)) if e.resumed => format!("machine resumed as worker {}", e.worker.id),
        Ok(Ok(e)) => format!("token bound; worker {} enrolled", e.worker.id),
        Ok(Err(_)) | Err(_) => return result,
    };
    tx.insert_audit(&AuditEvent {
        expected: None,
        at: req.now,
        actor: format!("machine:{}", req.machine),
        action: "enroll.token".into(),
        target: name.to_string(),
        remote_addr: req.remote_addr.clone(),
        outcome: Outcome::Ok,
        detail,
    })?;
    result
}

fn enroll_inner(
    tx: &mut dyn Tx,
    req: &TokenEnrollment,
) -> StoreResult<Result<Enrolled, TokenEnrollRefusal>> {
    let name = &req.presented.name;
    for _ in 0..MAX_ATTEMPTS {
        let Some(token) = tx.get_token(name)? else {
            return Ok(Err(TokenEnrollRefusal::Unknown(name.clone())));
        };
        if !token.secret_hash.matches(req.presented.secret()) {
            return Ok(Err(TokenEnrollRefusal::Unknown(name.clone())));
        }
        let presentation = match token.present(&req.machine, req.now) {
            Ok(p) => p,
            Err(refusal) => return Ok(Err(TokenEnrollRefusal::Token(refusal))),
        };
        let existing = tx.get_worker_by_name(name)?;
        if let Some(w) = &existing {
            if w.token_name.as_ref() != Some(name) {
                return Ok(Err(TokenEnrollRefusal::NameInUse(name.clone())));
            }
            if w.revoked_at.is_some() {
                return Ok(Err(TokenEnrollRefusal::WorkerRevoked(name.clone())));
            }
        }
        // The machine id names a key: a machine coming back must hold the key its worker has.
        if let Some(w) = &existing
            && w.identity.public_key.is_some_and(|k| k != req.public_key)
        {
            return Ok(Err(TokenEnrollRefusal::Token(
                Refusal::BoundToAnotherMachine(name.clone()),
            )));
        }
        // Checked before anything is written: a refused enrollment changes nothing.
        let labels = match req.labels.merged_with(&token.labels) {
            Ok(labels) => labels,
            Err(e) => return Ok(Err(TokenEnrollRefusal::Labels(e))),
        };
        // A machine coming back to its worker stays; a new worker joins, if the license lets it.
        if existing.is_none()
            && let Err(refusal) = license::check_join(tx, req.now, Joining::New)?
        {
            return Ok(Err(TokenEnrollRefusal::License(refusal)));
        }
        if presentation == Presentation::Bind && !tx.bind_token(name, &req.machine, req.now)? {
            // Someone bound it between our read and our update: decide again on fresh data.
            continue;
        }
        return Ok(Ok(match existing {
            Some(mut worker) => {
                tx.set_worker_key(&worker.id, &req.new_key)?;
                if worker.identity.public_key.is_none() {
                    tx.set_worker_public_key(&worker.id, &req.public_key)?;
                    worker.identity.public_key = Some(req.public_key);
                }
                if worker.labels != labels {
                    tx.set_worker_labels(&worker.id, &labels)?;
                    worker.labels = labels;
                }
                worker.key_hash = req.new_key.clone();
                Enrolled {
                    worker,
                    resumed: true,
                }
            }
            None => {
                let worker = Worker {
                    id: req.new_worker_id.clone(),
                    name: name.clone(),
                    enrolled_via: EnrolledVia::Token,
                    token_name: Some(name.clone()),
                    machine_id: Some(req.machine.clone()),
                    labels,
                    key_hash: req.new_key.clone(),
                    created_at: req.now,
                    expires_at: Some(token.expires_at),
                    revoked_at: None,
                    last_seen_at: None,
                    identity: WorkerIdentity {
                        public_key: Some(req.public_key),
                        ..WorkerIdentity::default()
                    },
                };
                tx.insert_worker(&worker)?;
                Enrolled {
                    worker,
                    resumed: presentation == Presentation::Resume,
                }
            }
        }));
    }
    Err(StoreError::Backend(format!(
        "enrollment with token `{name}` kept conflicting with concurrent updates"
    )))
}

/// The setting holding the end of the last sweep for `token.expired` events (Unix ms).
const EXPIRED_THROUGH: &str = "events.tokens_expired_through";

/// Writes a `token.expired` audit record (an event) for each unrevoked token whose lifetime
/// ended since the last sweep, at most `limit` per call; returns how many. Nothing marks a
/// token expired (its state is derived from the clock), so a watermark says which expiries were
/// told: the first sweep starts from `now` and tells none from before it. Serialized, so
/// replicas sweeping at once tell each expiry once.
pub fn announce_expired(tx: &mut dyn Tx, now: Timestamp, limit: u32) -> StoreResult<u64> {
    tx.serialize(crate::tx::Scope::Enrollment)?;
    let Some(through) = tx
        .get_setting(EXPIRED_THROUGH)?
        .and_then(|v| v.parse::<i64>().ok())
        .map(Timestamp::from_unix_millis)
    else {
        tx.put_setting(EXPIRED_THROUGH, &now.unix_millis().to_string())?;
        return Ok(0);
    };
    if now <= through {
        return Ok(0);
    }
    let expired = tx.tokens_expiring(through, now, limit)?;
    // A full page: continue from its last expiry next time. (Tokens expiring at that very
    // millisecond beyond the page are not told: with pages of hundreds, a rare loss of an
    // event, never a duplicate.)
    let reached = if expired.len() as u64 == u64::from(limit) {
        expired.last().map_or(now, |t| t.expires_at)
    } else {
        now
    };
    for token in &expired {
        tx.insert_audit(&AuditEvent {
            expected: None,
            at: token.expires_at,
            actor: "server".into(),
            action: "token.expired".into(),
            target: token.name.to_string(),
            remote_addr: None,
            outcome: Outcome::Ok,
            detail: match &token.bound_machine {
                Some(machine) => format!("expired; the worker on machine {machine} is cut off"),
                None => "expired unused".into(),
            },
        })?;
    }
    tx.put_setting(EXPIRED_THROUGH, &reached.unix_millis().to_string())?;
    Ok(expired.len() as u64)
}

//! The fleet's license: what is installed (a verified license, or the trial), the trial's record
//! (once per fleet, kept after it ends), the seats used, and the check every joining external
//! worker passes inside its enrollment's transaction.
//!
//! Everything is in the store and read afresh by each join, so an install, a removal or a trial
//! started through any replica holds on every replica at once, with no restart and nothing to
//! invalidate. The signature of a license is checked by the server when it is installed; the
//! store keeps the verified terms beside the token.

use muster_core::audit::AuditEvent;
use muster_core::license::{self, Grant, JoinRefusal, Joining, License, Trial};
use muster_core::worker::AdmitRefusal;
use muster_core::{EnrolledVia, Timestamp, Worker};
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, StoreResult};
use crate::tx::{Scope, Tx};

/// What is in force: `null` when nothing is (Community Edition).
const GRANT: &str = "license";
/// The fleet's trial, kept once started: a trial runs once per fleet.
const TRIAL: &str = "license_trial";
/// The last join refused by the license, for the admin's banner.
const REFUSED: &str = "license_refused";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StoredGrant {
    Licensed {
        /// The license as installed, for whoever wants to verify it again.
        token: String,
        id: String,
        licensee: String,
        max_workers: Option<u64>,
        issued_at: i64,
        expires_at: i64,
        issuer: String,
        installed_at: i64,
    },
    Trial {
        started_at: i64,
        expires_at: i64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredTrial {
    started_at: i64,
    expires_at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredRefusal {
    at: i64,
    message: String,
}

/// The last external worker the license turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub at: Timestamp,
    /// The refusal, as the worker was told.
    pub message: String,
}

fn read<T: for<'de> Deserialize<'de>>(tx: &mut dyn Tx, key: &str) -> StoreResult<Option<T>> {
    let Some(json) = tx.get_setting(key)? else {
        return Ok(None);
    };
    serde_json::from_str::<Option<T>>(&json).map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))
}

fn write<T: Serialize>(tx: &mut dyn Tx, key: &str, value: &Option<T>) -> StoreResult<()> {
    let json = serde_json::to_string(value).map_err(|e| StoreError::Backend(e.to_string()))?;
    tx.put_setting(key, &json)
}

/// What is in force, if anything.
pub fn grant(tx: &mut dyn Tx) -> StoreResult<Option<Grant>> {
    let ts = Timestamp::from_unix_millis;
    Ok(read::<StoredGrant>(tx, GRANT)?.map(|stored| match stored {
        StoredGrant::Licensed {
            id,
            licensee,
            max_workers,
            issued_at,
            expires_at,
            issuer,
            ..
        } => Grant::Licensed(License {
            id,
            licensee,
            max_workers,
            issued_at: ts(issued_at),
            expires_at: ts(expires_at),
            issuer,
        }),
        StoredGrant::Trial {
            started_at,
            expires_at,
        } => Grant::Trial(Trial {
            started_at: ts(started_at),
            expires_at: ts(expires_at),
        }),
    }))
}

/// The fleet's trial, if it ever started (running or not).
pub fn trial(tx: &mut dyn Tx) -> StoreResult<Option<Trial>> {
    Ok(read::<StoredTrial>(tx, TRIAL)?.map(|t| Trial {
        started_at: Timestamp::from_unix_millis(t.started_at),
        expires_at: Timestamp::from_unix_millis(t.expires_at),
    }))
}

/// Everything `muster license show` and the banner need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub grant: Option<Grant>,
    /// The fleet's trial, if it ever started.
    pub trial: Option<Trial>,
    /// Seats taken: external workers that exist, are not revoked, and have not expired.
    pub workers_used: u64,
    pub last_refused: Option<Refused>,
}

pub fn status(tx: &mut dyn Tx, now: Timestamp) -> StoreResult<Status> {
    Ok(Status {
        grant: grant(tx)?,
        trial: trial(tx)?,
        workers_used: tx.count_seated_workers(now, u64::MAX)?,
        last_refused: last_refused(tx)?,
    })
}

/// The last join the license refused, if any was noted.
pub fn last_refused(tx: &mut dyn Tx) -> StoreResult<Option<Refused>> {
    Ok(read::<StoredRefusal>(tx, REFUSED)?.map(|r| Refused {
        at: Timestamp::from_unix_millis(r.at),
        message: r.message,
    }))
}

/// Installs a verified license in place of whatever was in force (a trial ends with it; its
/// record stays), with its audit record.
pub fn install(
    tx: &mut dyn Tx,
    license: &License,
    token: &str,
    now: Timestamp,
    audit: &AuditEvent,
) -> StoreResult<Status> {
    let stored = StoredGrant::Licensed {
        token: token.to_owned(),
        id: license.id.clone(),
        licensee: license.licensee.clone(),
        max_workers: license.max_workers,
        issued_at: license.issued_at.unix_millis(),
        expires_at: license.expires_at.unix_millis(),
        issuer: license.issuer.clone(),
        installed_at: now.unix_millis(),
    };
    write(tx, GRANT, &Some(stored))?;
    let seats = match license.max_workers {
        Some(n) => format!("{n} workers"),
        None => "no worker limit".to_owned(),
    };
    tx.insert_audit(&AuditEvent {
        expected: None,
        detail: format!(
            "installed license `{}` for `{}` ({seats}, expires {}, issuer {})",
            license.id,
            license.licensee,
            license.expires_at.to_rfc3339(),
            license.issuer
        ),
        ..audit.clone()
    })?;
    status(tx, now)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrialRefusal {
    #[error(
        "this fleet's trial already ran, from {} to {}; a trial runs once per fleet",
        license::day(.0.started_at),
        license::day(.0.expires_at)
    )]
    AlreadyRan(Trial),
    #[error("a license for `{0}` is installed; the trial is for fleets without one")]
    Licensed(String),
}

/// Starts the fleet's one trial, with its audit record.
pub fn start_trial(
    tx: &mut dyn Tx,
    now: Timestamp,
    audit: &AuditEvent,
) -> StoreResult<Result<Status, TrialRefusal>> {
    if let Some(ran) = trial(tx)? {
        return Ok(Err(TrialRefusal::AlreadyRan(ran)));
    }
    if let Some(Grant::Licensed(license)) = grant(tx)? {
        return Ok(Err(TrialRefusal::Licensed(license.licensee)));
    }
    let trial = Trial::starting(now);
    write(
        tx,
        TRIAL,
        &Some(StoredTrial {
            started_at: trial.started_at.unix_millis(),
            expires_at: trial.expires_at.unix_millis(),
        }),
    )?;
    write(
        tx,
        GRANT,
        &Some(StoredGrant::Trial {
            started_at: trial.started_at.unix_millis(),
            expires_at: trial.expires_at.unix_millis(),
        }),
    )?;
    tx.insert_audit(&AuditEvent {
        expected: None,
        detail: format!(
            "started the 30-day trial, ending {}",
            trial.expires_at.to_rfc3339()
        ),
        ..audit.clone()
    })?;
    Ok(Ok(status(tx, now)?))
}

/// Removes whatever is in force (a license, or the trial, which cannot start again): the fleet
/// runs Community Edition. Workers that joined stay. Returns whether anything was removed.
pub fn remove(tx: &mut dyn Tx, now: Timestamp, audit: &AuditEvent) -> StoreResult<(bool, Status)> {
    let current = grant(tx)?;
    let detail = match &current {
        None => "nothing was installed; nothing changed".to_owned(),
        Some(Grant::Licensed(license)) => format!(
            "removed license `{}` for `{}`",
            license.id, license.licensee
        ),
        Some(Grant::Trial(_)) => "ended the trial".to_owned(),
    };
    if current.is_some() {
        write::<StoredGrant>(tx, GRANT, &None)?;
    }
    tx.insert_audit(&AuditEvent {
        expected: None,
        detail,
        ..audit.clone()
    })?;
    Ok((current.is_some(), status(tx, now)?))
}

/// Whether an external worker may join now. Called inside the transaction that adds it: with a
/// seat limit, the count is taken under [`Scope::Enrollment`], so concurrent joins through any
/// replica cannot exceed it.
pub fn check_join(
    tx: &mut dyn Tx,
    now: Timestamp,
    joining: Joining,
) -> StoreResult<Result<(), JoinRefusal>> {
    let grant = grant(tx)?;
    let limit = match license::may_join(grant.as_ref(), now) {
        Ok(Some(limit)) => limit,
        Ok(None) => return Ok(Ok(())),
        Err(refusal) => return Ok(Err(refusal)),
    };
    tx.serialize(Scope::Enrollment)?;
    // Counting stops just past the limit: whether the others leave a seat is decided the same
    // for any count above it, and a large fleet is not scanned whole at every join. A refusal
    // names the exact count.
    let seen = tx.count_seated_workers(now, limit.saturating_add(2))?;
    if license::check_seats(limit, seen, joining).is_ok() {
        return Ok(Ok(()));
    }
    let used = tx.count_seated_workers(now, u64::MAX)?;
    Ok(license::check_seats(limit, used, joining))
}

/// [`check_join`] for a worker that exists and connects for the first time (a pre-created
/// worker), as an admission refusal. The built-in worker never asks.
pub fn check_joining_worker(
    tx: &mut dyn Tx,
    worker: &Worker,
    now: Timestamp,
) -> StoreResult<Result<(), AdmitRefusal>> {
    if worker.enrolled_via == EnrolledVia::Builtin {
        return Ok(Ok(()));
    }
    Ok(check_join(tx, now, Joining::Counted)?.map_err(AdmitRefusal::License))
}

/// Remembers the last join the license refused and what it was told (for the banner admins
/// see). The caller limits
/// how often: anyone can make a join be refused.
pub fn note_refusal(tx: &mut dyn Tx, at: Timestamp, message: &str) -> StoreResult<()> {
    write(
        tx,
        REFUSED,
        &Some(StoredRefusal {
            at: at.unix_millis(),
            message: message.to_owned(),
        }),
    )
}

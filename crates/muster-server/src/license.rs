//! The server's side of editions and licenses: the issuer keys it trusts, the answer a worker
//! gets when the license refuses it, the log line and the banner that tell an admin, and the
//! daily warning while a license nears or passes its end.
//!
//! The rules are `muster_core::license`'s; what is installed lives in the store
//! (`muster_store::flows::license`) and is read afresh by every join, so every replica agrees
//! at once; `ops::license` changes it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use muster_core::Timestamp;
use muster_core::license::{self, Grant, JoinRefusal, LicenseState};
use muster_license::Issuers;
use muster_proto::ErrorCode;
use muster_store::Store;
use muster_store::flows::license::{self as flows, Status};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::error::AppError;
use crate::state::AppState;

/// A refused join is logged (and remembered for the banner) at most this often per replica;
/// the next line counts the ones in between. Anyone can make a join be refused.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// The banner shows a refused join for this long.
const REFUSAL_BANNER_FOR: Duration = Duration::from_secs(24 * 3600);
/// How often the expiry is looked at; it is logged once a day.
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(3600);

/// What a server knows about licenses besides the store: whom it trusts, and its log throttle.
pub struct Licensing {
    pub issuers: Issuers,
    refusals: Mutex<Throttle>,
}

#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    /// Refusals since the last line.
    unlogged: u64,
}

impl Licensing {
    pub fn new(issuers: Issuers) -> Self {
        Self {
            issuers,
            refusals: Mutex::new(Throttle::default()),
        }
    }

    /// Whether this refusal is logged; if so, how many were not since the last line.
    fn should_log(&self) -> Option<u64> {
        let mut throttle = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if throttle
            .last
            .is_some_and(|last| now.duration_since(last) < REFUSAL_LOG_EVERY)
        {
            throttle.unlogged += 1;
            return None;
        }
        throttle.last = Some(now);
        Some(std::mem::take(&mut throttle.unlogged))
    }
}

/// The answer to a worker the license turns away: `license_required` (Community Edition, or a
/// license past its grace) or `license_seats_exhausted`, both 403, with what an admin can do.
pub fn join_error(refusal: &JoinRefusal) -> AppError {
    match refusal {
        JoinRefusal::Community => AppError::forbidden(ErrorCode::LicenseRequired, refusal)
            .with_hint("an admin starts a 30-day trial with `muster license trial` or installs a license with `muster license install FILE`"),
        JoinRefusal::Expired { .. } => AppError::forbidden(ErrorCode::LicenseRequired, refusal)
            .with_hint("an admin installs a renewed license with `muster license install FILE`"),
        JoinRefusal::SeatsExhausted { .. } => AppError::forbidden(ErrorCode::LicenseSeatsExhausted, refusal)
            .with_hint("an admin frees a seat with `muster workers remove NAME`, or installs a license with more workers with `muster license install FILE`"),
    }
}

/// Whether an error is the license refusing a join.
pub fn is_join_refusal(error: &AppError) -> bool {
    matches!(
        error.code,
        ErrorCode::LicenseRequired | ErrorCode::LicenseSeatsExhausted
    )
}

/// A join the license refused: logged at WARN with what the worker was told, and remembered for
/// the admins' banner, at most once a minute per replica. (Its audit record goes through the
/// aggregator of refused attempts, as every refused join's does.)
pub async fn refused(app: &AppState, error: &AppError) {
    if !is_join_refusal(error) {
        return;
    }
    let Some(unlogged) = app.licensing.should_log() else {
        return;
    };
    let hint = error.hint.as_deref().unwrap_or_default();
    if unlogged > 0 {
        tracing::warn!(
            more = unlogged,
            "an external worker was refused: {}; hint: {hint} ({unlogged} more refused since the last such line)",
            error.message
        );
    } else {
        tracing::warn!(
            "an external worker was refused: {}; hint: {hint}",
            error.message
        );
    }
    let (now, message) = (app.clock.now(), error.message.clone());
    let noted = app
        .store
        .write(move |tx| flows::note_refusal(tx, now, &message))
        .await;
    if let Err(e) = noted {
        tracing::error!(error = %e, "cannot remember a refused join");
    }
}

/// How loud a banner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Warning,
    Error,
}

/// What every page of the web UI says about the license, if anything: an expiry near or past,
/// or external workers refused recently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    pub level: Level,
    pub text: String,
}

pub fn banner(status: &Status, now: Timestamp) -> Option<Banner> {
    let grant = status.grant.as_ref();
    if let Some(grant) = grant
        && let Some(text) = grant.expiry_warning(now)
    {
        let level = match grant.state_at(now) {
            LicenseState::Expired => Level::Error,
            _ => Level::Warning,
        };
        return Some(Banner { level, text });
    }
    let refused = status.last_refused.as_ref()?;
    if refused.at.until(now) > REFUSAL_BANNER_FOR {
        return None;
    }
    // Only while it still holds: a license installed since lifts it.
    let still = match license::may_join(grant, now) {
        Err(_) => true,
        Ok(Some(limit)) => status.workers_used >= limit,
        Ok(None) => false,
    };
    still.then(|| Banner {
        level: Level::Error,
        text: format!(
            "external workers are being refused (last at {}): {}",
            refused.at.to_rfc3339(),
            refused.message
        ),
    })
}

/// The banner for a page now, read from the store (the seats are counted only when a recent
/// refusal makes them matter).
pub async fn current_banner(app: &AppState) -> Option<Banner> {
    let now = app.clock.now();
    let read = app
        .store
        .read(move |tx| {
            let grant = flows::grant(tx)?;
            let last_refused = flows::last_refused(tx)?;
            let counts = last_refused.is_some()
                && matches!(license::may_join(grant.as_ref(), now), Ok(Some(_)));
            let workers_used = if counts {
                tx.count_seated_workers(now, u64::MAX)?
            } else {
                0
            };
            Ok(Status {
                grant,
                trial: None,
                workers_used,
                last_refused,
            })
        })
        .await;
    match read {
        Ok(status) => banner(&status, now),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the license for the banner");
            None
        }
    }
}

/// The one line an admin command prints on stderr, if any: for a command that prepared an
/// external worker, why none could join now (`used`: the seats taken); otherwise an expiry near
/// or past.
pub fn admin_warning(
    grant: Option<&Grant>,
    used: u64,
    now: Timestamp,
    prepares_worker: bool,
) -> Option<String> {
    if prepares_worker && let Some(warning) = license::prepare_warning(grant, used, now) {
        return Some(warning);
    }
    grant.and_then(|g| g.expiry_warning(now))
}

/// Logs the edition at start, then the expiry warning once a day while there is one, until
/// `stop`.
pub async fn warn_daily(store: Store, clock: Clock, mut stop: watch::Receiver<bool>) {
    let mut last_day = None;
    let mut first = true;
    loop {
        let now = clock.now();
        match store.read(move |tx| flows::status(tx, now)).await {
            Ok(status) => {
                if first {
                    log_edition(&status);
                    first = false;
                }
                let today = license::day(now);
                if let Some(warning) = status.grant.as_ref().and_then(|g| g.expiry_warning(now))
                    && last_day.as_ref() != Some(&today)
                {
                    tracing::warn!("{warning}");
                    last_day = Some(today);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the license"),
        }
        tokio::select! {
            () = tokio::time::sleep(EXPIRY_CHECK_EVERY) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

fn log_edition(status: &Status) {
    match &status.grant {
        None => tracing::info!(
            "muster Community Edition: external workers cannot join until a license is installed (`muster license trial`, `muster license install FILE`)"
        ),
        Some(Grant::Trial(trial)) => tracing::info!(
            "trial: no worker limit, until {}",
            trial.expires_at.to_rfc3339()
        ),
        Some(Grant::Licensed(l)) => tracing::info!(
            licensee = %l.licensee,
            "license `{}`: {}, until {}, {} of them used",
            l.id,
            l.max_workers.map_or_else(|| "no worker limit".to_owned(), |n| format!("{n} workers")),
            l.expires_at.to_rfc3339(),
            status.workers_used
        ),
    }
}

//! Editions and licences: which edition a fleet runs, the state a licence is in at a given
//! moment, and whether one more external worker may join. The rules of PRODUCT.md's "Editions
//! and licences", written once.
//!
//! A licence gates joining, never staying: nothing here is asked when a worker that already
//! joined reconnects, so no licence change, expiry or removal ever disconnects a worker or stops
//! a job. Expiry is gentle: warnings from [`WARN_BEFORE`] the end, then [`GRACE`] during which
//! nothing changes but the warnings, and only then are new external workers refused, as in
//! Community Edition.

use std::time::Duration;

use crate::time::Timestamp;

const DAY: Duration = Duration::from_secs(24 * 3600);
/// Warnings start this long before a licence (or the trial) ends.
pub const WARN_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// After a licence ends, joining stays open this long.
pub const GRACE: Duration = Duration::from_secs(14 * 24 * 3600);
/// How long the trial lasts.
pub const TRIAL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The terms of a verified licence: the fields of the signed document, and who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct License {
    pub id: String,
    pub licensee: String,
    /// External workers it allows; `None` for no limit.
    pub max_workers: Option<u64>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// The fingerprint of the key that signed it.
    pub issuer: String,
}

/// The fleet's trial: once per fleet, no worker limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trial {
    pub started_at: Timestamp,
    pub expires_at: Timestamp,
}

impl Trial {
    pub fn starting(now: Timestamp) -> Self {
        Self {
            started_at: now,
            expires_at: now.saturating_add(TRIAL),
        }
    }
}

/// What a fleet runs on besides Community Edition: an installed licence or the trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Licensed(License),
    Trial(Trial),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    /// No licence: the built-in worker only.
    Community,
    Trial,
    Licensed,
}

impl Edition {
    /// The edition in force: Community Edition when nothing is granted.
    pub fn of(grant: Option<&Grant>) -> Self {
        match grant {
            None => Edition::Community,
            Some(Grant::Trial(_)) => Edition::Trial,
            Some(Grant::Licensed(_)) => Edition::Licensed,
        }
    }
}

/// Where a licence (or the trial) is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LicenseState {
    Valid,
    /// Ends within [`WARN_BEFORE`].
    Expiring,
    /// Ended less than [`GRACE`] ago: joining is still open.
    Grace,
    /// Ended, grace included: new external workers are refused.
    Expired,
}

impl Grant {
    pub fn expires_at(&self) -> Timestamp {
        match self {
            Grant::Licensed(license) => license.expires_at,
            Grant::Trial(trial) => trial.expires_at,
        }
    }

    /// When joining closes.
    pub fn grace_ends_at(&self) -> Timestamp {
        self.expires_at().saturating_add(GRACE)
    }

    /// External workers it allows; `None` for no limit (the trial has none).
    pub fn max_workers(&self) -> Option<u64> {
        match self {
            Grant::Licensed(license) => license.max_workers,
            Grant::Trial(_) => None,
        }
    }

    pub fn state_at(&self, now: Timestamp) -> LicenseState {
        let expires = self.expires_at();
        if now >= self.grace_ends_at() {
            LicenseState::Expired
        } else if now >= expires {
            LicenseState::Grace
        } else if now >= expires.saturating_sub(WARN_BEFORE) {
            LicenseState::Expiring
        } else {
            LicenseState::Valid
        }
    }

    /// What it is called in a sentence.
    fn called(&self) -> String {
        match self {
            Grant::Licensed(license) => format!("the license for `{}`", license.licensee),
            Grant::Trial(_) => "the trial".to_owned(),
        }
    }

    /// The one line an admin should read now about its expiry, if any.
    pub fn expiry_warning(&self, now: Timestamp) -> Option<String> {
        let what = self.called();
        let fix = match self {
            Grant::Licensed(_) => "install a renewed license with `muster license install FILE`",
            Grant::Trial(_) => "install a license with `muster license install FILE`",
        };
        let (expires, grace_ends) = (self.expires_at(), self.grace_ends_at());
        Some(match self.state_at(now) {
            LicenseState::Valid => return None,
            LicenseState::Expiring => format!(
                "{what} expires on {} ({}); {fix}",
                day(expires),
                from_now(now.until(expires))
            ),
            LicenseState::Grace => format!(
                "{what} expired on {}; new external workers can join until {} ({}), then they are refused; {fix}",
                day(expires),
                day(grace_ends),
                from_now(now.until(grace_ends))
            ),
            LicenseState::Expired => format!(
                "{what} expired on {} and its grace period ended on {}: new external workers cannot join (workers that joined keep working); {fix}",
                day(expires),
                day(grace_ends)
            ),
        })
    }
}

/// Why an external worker may not join the fleet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefusal {
    #[error(
        "this server runs muster Community Edition, where only the built-in worker runs jobs: external workers cannot join"
    )]
    Community,
    #[error(
        "{what} expired on {} and its grace period ended on {}: external workers cannot join", day(*.expired_at), day(*.grace_ended_at)
    )]
    Expired {
        /// `the license for `ACME`` or `the trial`.
        what: String,
        expired_at: Timestamp,
        grace_ended_at: Timestamp,
    },
    #[error("all {limit} worker seats of the license are taken ({used} of {limit} used)")]
    SeatsExhausted { used: u64, limit: u64 },
}

/// How a joining worker stands to the seats already counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joining {
    /// A worker that does not exist yet.
    New,
    /// A new worker that replaces one that counts (a re-enrollment superseding its predecessor).
    Replacing,
    /// A worker that exists and counts already (a pre-created worker connecting for the first
    /// time).
    Counted,
}

/// Whether external workers may join at all at `now`. `Ok(Some(limit))`: up to `limit` seats
/// (see [`check_seats`]); `Ok(None)`: without limit.
pub fn may_join(grant: Option<&Grant>, now: Timestamp) -> Result<Option<u64>, JoinRefusal> {
    let Some(grant) = grant else {
        return Err(JoinRefusal::Community);
    };
    if grant.state_at(now) == LicenseState::Expired {
        return Err(JoinRefusal::Expired {
            what: grant.called(),
            expired_at: grant.expires_at(),
            grace_ended_at: grant.grace_ends_at(),
        });
    }
    Ok(grant.max_workers())
}

/// Whether a worker may join when `used` seats are taken (the built-in worker never takes one)
/// and the licence allows `limit`.
pub fn check_seats(limit: u64, used: u64, joining: Joining) -> Result<(), JoinRefusal> {
    let taken_by_others = match joining {
        Joining::New => used,
        Joining::Replacing | Joining::Counted => used.saturating_sub(1),
    };
    if taken_by_others >= limit {
        return Err(JoinRefusal::SeatsExhausted { used, limit });
    }
    Ok(())
}

/// The warning for an admin preparing an external worker (a token, a pre-created worker,
/// auto-enrollment) while none could join: why, and what to do.
pub fn prepare_warning(grant: Option<&Grant>, used: u64, now: Timestamp) -> Option<String> {
    match may_join(grant, now) {
        Err(JoinRefusal::Community) => Some(
            "this server runs Community Edition: no external worker can join until a license is installed; start a 30-day trial with `muster license trial` or install a license with `muster license install FILE`".to_owned(),
        ),
        Err(refusal) => Some(format!(
            "{refusal} until a license is installed; install one with `muster license install FILE`"
        )),
        Ok(Some(limit)) if used >= limit => Some(format!(
            "all {limit} worker seats of the license are taken ({used} of {limit} used): no new worker can join until a seat is freed (`muster workers remove NAME`) or a license with more seats is installed"
        )),
        Ok(_) => None,
    }
}

/// `2026-12-30`: a licence's dates are days.
pub fn day(at: Timestamp) -> String {
    let text = at.to_rfc3339();
    text.get(..10).unwrap_or(&text).to_owned()
}

fn from_now(left: Duration) -> String {
    match left.as_secs() / DAY.as_secs() {
        0 => "in less than a day".to_owned(),
        1 => "in 1 day".to_owned(),
        days => format!("in {days} days"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_unix_millis(1_800_000_000_000);

    fn days(n: u64) -> Duration {
        DAY * u32::try_from(n).unwrap()
    }

    fn licensed(max_workers: Option<u64>, expires_in: Duration) -> Grant {
        Grant::Licensed(License {
            id: "lic-1".into(),
            licensee: "ACME".into(),
            max_workers,
            issued_at: T0,
            expires_at: T0.saturating_add(expires_in),
            issuer: "k4.pid.test".into(),
        })
    }

    #[test]
    fn states_follow_the_calendar() {
        let grant = licensed(Some(5), days(100));
        let at = |d: u64| T0.saturating_add(days(d));
        let cases = [
            (at(0), LicenseState::Valid),
            (at(69), LicenseState::Valid),
            (at(70), LicenseState::Expiring),
            (at(99), LicenseState::Expiring),
            (at(100), LicenseState::Grace),
            (at(113), LicenseState::Grace),
            (at(114), LicenseState::Expired),
            (at(1000), LicenseState::Expired),
        ];
        for (now, want) in cases {
            assert_eq!(grant.state_at(now), want, "at {now}");
        }
    }

    #[test]
    fn a_trial_lasts_thirty_days_without_a_limit_and_warns_throughout() {
        let trial = Grant::Trial(Trial::starting(T0));
        assert_eq!(trial.expires_at(), T0.saturating_add(days(30)));
        assert_eq!(trial.max_workers(), None);
        assert_eq!(trial.state_at(T0), LicenseState::Expiring);
        assert_eq!(may_join(Some(&trial), T0), Ok(None));
        let warning = trial.expiry_warning(T0).unwrap();
        assert!(warning.starts_with("the trial expires on "), "{warning}");
        assert!(warning.contains("(in 30 days)"), "{warning}");
    }

    #[test]
    fn joining_is_closed_without_a_grant_and_after_grace_only() {
        assert_eq!(may_join(None, T0), Err(JoinRefusal::Community));
        let grant = licensed(Some(3), days(10));
        assert_eq!(may_join(Some(&grant), T0), Ok(Some(3)));
        // In grace joining stays open.
        assert_eq!(
            may_join(Some(&grant), T0.saturating_add(days(23))),
            Ok(Some(3))
        );
        let refusal = may_join(Some(&grant), T0.saturating_add(days(24))).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            format!(
                "the license for `ACME` expired on {} and its grace period ended on {}: external workers cannot join",
                day(T0.saturating_add(days(10))),
                day(T0.saturating_add(days(24)))
            )
        );
    }

    #[test]
    fn seats_count_others_than_the_joining_worker() {
        assert_eq!(check_seats(3, 2, Joining::New), Ok(()));
        assert_eq!(
            check_seats(3, 3, Joining::New),
            Err(JoinRefusal::SeatsExhausted { used: 3, limit: 3 })
        );
        // A re-enrollment that supersedes a counted worker takes its seat.
        assert_eq!(check_seats(3, 3, Joining::Replacing), Ok(()));
        // A pre-created worker already counts: it joins while the others leave it a seat.
        assert_eq!(check_seats(3, 3, Joining::Counted), Ok(()));
        assert_eq!(
            check_seats(3, 4, Joining::Counted),
            Err(JoinRefusal::SeatsExhausted { used: 4, limit: 3 })
        );
        assert_eq!(
            check_seats(0, 0, Joining::New),
            Err(JoinRefusal::SeatsExhausted { used: 0, limit: 0 })
        );
        assert_eq!(
            JoinRefusal::SeatsExhausted { used: 3, limit: 3 }.to_string(),
            "all 3 worker seats of the license are taken (3 of 3 used)"
        );
    }

    #[test]
    fn warnings_name_the_dates_and_the_fix() {
        let grant = licensed(None, days(10));
        assert_eq!(licensed(None, days(31)).expiry_warning(T0), None);
        let expiring = grant.expiry_warning(T0).unwrap();
        assert!(
            expiring.starts_with("the license for `ACME` expires on "),
            "{expiring}"
        );
        assert!(expiring.contains("(in 10 days)"), "{expiring}");
        assert!(expiring.contains("muster license install"), "{expiring}");
        let grace = grant.expiry_warning(T0.saturating_add(days(11))).unwrap();
        assert!(grace.contains("can join until"), "{grace}");
        let expired = grant.expiry_warning(T0.saturating_add(days(30))).unwrap();
        assert!(expired.contains("cannot join"), "{expired}");
    }

    #[test]
    fn preparing_a_worker_warns_when_none_could_join() {
        let community = prepare_warning(None, 0, T0).unwrap();
        assert!(community.contains("Community Edition"), "{community}");
        assert!(community.contains("muster license trial"), "{community}");
        let full = prepare_warning(Some(&licensed(Some(2), days(100))), 2, T0).unwrap();
        assert!(full.contains("(2 of 2 used)"), "{full}");
        assert_eq!(
            prepare_warning(Some(&licensed(Some(2), days(100))), 1, T0),
            None
        );
        let expired = prepare_warning(
            Some(&licensed(None, days(1))),
            0,
            T0.saturating_add(days(20)),
        )
        .unwrap();
        assert!(expired.contains("cannot join"), "{expired}");
    }

    #[test]
    fn days_are_dates() {
        assert_eq!(day(T0), "2027-01-15");
        assert_eq!(from_now(Duration::from_secs(3600)), "in less than a day");
        assert_eq!(from_now(days(1)), "in 1 day");
    }
}

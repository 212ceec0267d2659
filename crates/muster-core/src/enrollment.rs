//! Auto-enrollment with the shared secret: its settings and guard rails, and the decision whether
//! a named machine presenting the (already verified) secret may enroll.

use std::time::Duration;

use crate::credentials::{MachineId, SlowHash};
use crate::name::{Name, shorten};
use crate::time::Timestamp;
use crate::worker::{EnrolledVia, Worker, WorkerId};

/// A worker enrolled this recently by another machine, and not yet seen connected, is treated as
/// taken: two machines racing for one name end with the first identity, and the second is told
/// the name is in use instead of silently superseding the first.
pub const FRESH_ENROLLMENT_GRACE: Duration = Duration::from_secs(60);

/// A pattern worker names must match, like `ingest-*`: the name alphabet plus `*` (any run of
/// characters) and `?` (one character).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "name pattern `{0}` is malformed: use 1–63 characters of a-z, 0-9, `-`, `_`, with `*` for any run of characters and `?` for one"
)]
pub struct NamePatternError(String);

impl NamePattern {
    pub fn parse(input: &str) -> Result<Self, NamePatternError> {
        let ok = !input.is_empty()
            && input.chars().count() <= 63
            && input
                .chars()
                .all(|c| crate::name::is_name_char(c) || c == '*' || c == '?');
        if ok {
            Ok(Self(input.to_owned()))
        } else {
            Err(NamePatternError(shorten(input)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes())
    }
}

/// Iterative glob match with backtracking to the last `*`: linear in practice, no recursion.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// The auto-enrollment settings as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AutoEnrollment {
    pub enabled: bool,
    pub secret: Option<SlowHash>,
    /// When the secret was set; also identifies the secret, so a cache of verified
    /// presentations can tell a rotated secret from the current one.
    pub secret_set_at: Option<Timestamp>,
    /// When the current enrollment window opened (the last `enable`).
    pub window_opened_at: Option<Timestamp>,
    /// The window closes by itself at this time (`enable --for 2h`).
    pub window_closes_at: Option<Timestamp>,
    /// ... or after this many enrollments (`enable --max-enrollments 50`).
    pub max_enrollments: Option<u64>,
    pub name_pattern: Option<NamePattern>,
    /// Names an admin expects (`enable --expect`): others still enroll, flagged unexpected on
    /// their `worker.enrolled` event.
    pub expected_names: Option<NamePattern>,
}

impl AutoEnrollment {
    /// Whether `name` is one the admin expects: `None` when no pattern is set.
    pub fn is_expected(&self, name: &str) -> Option<bool> {
        self.expected_names.as_ref().map(|p| p.matches(name))
    }
}

/// Why a machine may not enroll with the secret. Each is audited and has its own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutoRefusal {
    #[error("auto-enrollment is disabled on this server")]
    Disabled,
    #[error("the auto-enrollment window closed at {0}")]
    WindowClosed(Timestamp),
    #[error("the auto-enrollment window allowed {0} enrollments and they have all been used")]
    LimitReached(u64),
    #[error("the enrollment secret does not match")]
    SecretMismatch,
    #[error("worker name `{name}` does not match the allowed pattern `{pattern}`")]
    NameNotAllowed { name: Name, pattern: String },
    #[error("name `{0}` is already in use by a connected worker")]
    NameInUseConnected(Name),
    #[error("name `{0}` was just enrolled by another machine")]
    NameJustTaken(Name),
    #[error(
        "name `{name}` belongs to a worker enrolled by {via}, which auto-enrollment may not replace"
    )]
    NameTakenOtherKind { name: Name, via: &'static str },
    #[error("worker `{0}` was revoked; an admin must remove it before the name can enroll again")]
    Revoked(Name),
    #[error("too many failed enrollment attempts from this address")]
    RateLimited,
    #[error("name `{0}` belongs to an enrollment token")]
    NameOfToken(Name),
    #[error("name `{0}` is reserved for the server's built-in worker")]
    NameReserved(Name),
    /// The edition or the licence does not let another external worker join.
    #[error(transparent)]
    License(crate::license::JoinRefusal),
}

/// What an accepted enrollment does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoDecision {
    /// A new worker.
    Create,
    /// Replace the existing, disconnected worker of that name: its key stops working.
    Supersede(WorkerId),
}

impl AutoEnrollment {
    /// Whether new enrollments are accepted at all right now, given how many the current window
    /// has seen. Checked before the (expensive) secret verification.
    pub fn check_open(&self, now: Timestamp, enrolled_in_window: u64) -> Result<(), AutoRefusal> {
        if !self.enabled || self.secret.is_none() {
            return Err(AutoRefusal::Disabled);
        }
        if let Some(closes) = self.window_closes_at
            && now >= closes
        {
            return Err(AutoRefusal::WindowClosed(closes));
        }
        if let Some(max) = self.max_enrollments
            && enrolled_in_window >= max
        {
            return Err(AutoRefusal::LimitReached(max));
        }
        Ok(())
    }

    /// The effective switch: enabled, with a secret, inside its window.
    pub fn is_open(&self, now: Timestamp, enrolled_in_window: u64) -> bool {
        self.check_open(now, enrolled_in_window).is_ok()
    }

    pub fn check_name(&self, name: &Name) -> Result<(), AutoRefusal> {
        match &self.name_pattern {
            Some(p) if !p.matches(name.as_str()) => Err(AutoRefusal::NameNotAllowed {
                name: name.clone(),
                pattern: p.as_str().to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Decides for a machine whose secret has been verified. `existing` is the worker holding the
    /// name, if any; `connected` says whether it has a live channel right now.
    pub fn decide(
        &self,
        name: &Name,
        machine: &MachineId,
        existing: Option<&Worker>,
        connected: bool,
        now: Timestamp,
    ) -> Result<AutoDecision, AutoRefusal> {
        self.check_name(name)?;
        if name.as_str() == crate::worker::BUILTIN_NAME {
            return Err(AutoRefusal::NameReserved(name.clone()));
        }
        let Some(worker) = existing else {
            return Ok(AutoDecision::Create);
        };
        if worker.enrolled_via != EnrolledVia::Secret {
            return Err(AutoRefusal::NameTakenOtherKind {
                name: name.clone(),
                via: worker.enrolled_via.as_str(),
            });
        }
        if worker.revoked_at.is_some() {
            return Err(AutoRefusal::Revoked(name.clone()));
        }
        if connected {
            return Err(AutoRefusal::NameInUseConnected(name.clone()));
        }
        let same_machine = worker.machine_id.as_ref() == Some(machine);
        let fresh =
            worker.last_seen_at.is_none() && worker.created_at.until(now) < FRESH_ENROLLMENT_GRACE;
        if fresh && !same_machine {
            return Err(AutoRefusal::NameJustTaken(name.clone()));
        }
        Ok(AutoDecision::Supersede(worker.id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::SecretHash;
    use crate::labels::Labels;

    fn settings() -> AutoEnrollment {
        AutoEnrollment {
            enabled: true,
            secret: Some(SlowHash::from_stored("$argon2id$stub".into())),
            secret_set_at: Some(Timestamp::from_unix_millis(0)),
            ..Default::default()
        }
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    fn worker(via: EnrolledVia, machine: &str, created: i64, seen: Option<i64>) -> Worker {
        Worker {
            id: WorkerId::parse(&"c".repeat(32)).unwrap(),
            name: Name::parse("ingest-1").unwrap(),
            enrolled_via: via,
            token_name: None,
            machine_id: Some(MachineId::parse(machine).unwrap()),
            labels: Labels::new(),
            key_hash: SecretHash::of("k"),
            created_at: at(created),
            expires_at: None,
            revoked_at: None,
            last_seen_at: seen.map(at),
            identity: Default::default(),
        }
    }

    #[test]
    fn patterns_glob() {
        let p = NamePattern::parse("ingest-*").unwrap();
        assert!(p.matches("ingest-01"));
        assert!(p.matches("ingest-"));
        assert!(!p.matches("egress-01"));
        let q = NamePattern::parse("a?c*z").unwrap();
        assert!(q.matches("abcz") && q.matches("abc-long-z") && !q.matches("acz"));
        assert!(NamePattern::parse("Bad*").is_err());
        assert!(NamePattern::parse("").is_err());
    }

    #[test]
    fn guard_rails_close_the_window() {
        let mut s = settings();
        assert_eq!(s.check_open(at(0), 0), Ok(()));
        s.window_closes_at = Some(at(1000));
        assert_eq!(
            s.check_open(at(1000), 0),
            Err(AutoRefusal::WindowClosed(at(1000)))
        );
        s.window_closes_at = None;
        s.max_enrollments = Some(2);
        assert_eq!(s.check_open(at(0), 1), Ok(()));
        assert_eq!(s.check_open(at(0), 2), Err(AutoRefusal::LimitReached(2)));
        s.enabled = false;
        assert_eq!(s.check_open(at(0), 0), Err(AutoRefusal::Disabled));
        assert_eq!(
            AutoEnrollment::default().check_open(at(0), 0),
            Err(AutoRefusal::Disabled)
        );
    }

    #[test]
    fn decisions_about_an_existing_name() {
        let s = settings();
        let name = Name::parse("ingest-1").unwrap();
        let a = MachineId::parse("machine-a").unwrap();
        assert_eq!(
            s.decide(&name, &a, None, false, at(0)),
            Ok(AutoDecision::Create)
        );
        let old = worker(EnrolledVia::Secret, "machine-b", 0, Some(10));
        assert_eq!(
            s.decide(&name, &a, Some(&old), false, at(100_000)),
            Ok(AutoDecision::Supersede(old.id.clone()))
        );
        assert_eq!(
            s.decide(&name, &a, Some(&old), true, at(100_000)),
            Err(AutoRefusal::NameInUseConnected(name.clone()))
        );
        let fresh = worker(EnrolledVia::Secret, "machine-b", 0, None);
        assert_eq!(
            s.decide(&name, &a, Some(&fresh), false, at(1000)),
            Err(AutoRefusal::NameJustTaken(name.clone()))
        );
        let fresh_same = worker(EnrolledVia::Secret, "machine-a", 0, None);
        assert!(matches!(
            s.decide(&name, &a, Some(&fresh_same), false, at(1000)),
            Ok(AutoDecision::Supersede(_))
        ));
        let token = worker(EnrolledVia::Token, "machine-b", 0, Some(1));
        assert!(matches!(
            s.decide(&name, &a, Some(&token), false, at(100_000)),
            Err(AutoRefusal::NameTakenOtherKind { .. })
        ));
        let mut revoked = old.clone();
        revoked.revoked_at = Some(at(5));
        assert_eq!(
            s.decide(&name, &a, Some(&revoked), false, at(100_000)),
            Err(AutoRefusal::Revoked(name.clone()))
        );
        let mut patterned = settings();
        patterned.name_pattern = Some(NamePattern::parse("egress-*").unwrap());
        assert!(matches!(
            patterned.decide(&name, &a, None, false, at(0)),
            Err(AutoRefusal::NameNotAllowed { .. })
        ));
    }
}

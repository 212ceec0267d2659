//! Enrollment tokens and their state machine.
//!
//! ```text
//! unused ──► enrolled ──► expired
//!   │            │
//!   ▼            ▼
//! revoked     revoked
//! ```
//!
//! `unused` also becomes `expired` when its lifetime elapses. `expired` and `revoked` are
//! terminal. This module is the only place these rules are written down: the store asks
//! [`Token::present`] and [`Token::revoke`] what to do and applies the answer atomically.

use std::fmt;

use crate::credentials::{MachineId, SecretHash};
use crate::labels::Labels;
use crate::name::Name;
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenState {
    Unused,
    Enrolled,
    Expired,
    Revoked,
}

impl TokenState {
    pub const ALL: [TokenState; 4] = [
        TokenState::Unused,
        TokenState::Enrolled,
        TokenState::Expired,
        TokenState::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Unused => "unused",
            TokenState::Enrolled => "enrolled",
            TokenState::Expired => "expired",
            TokenState::Revoked => "revoked",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, TokenState::Expired | TokenState::Revoked)
    }

    /// The edges of the state machine, and nothing else. Staying in the same state is not a
    /// transition and is always allowed.
    pub fn can_become(self, next: TokenState) -> bool {
        use TokenState::*;
        self == next
            || matches!(
                (self, next),
                (Unused, Enrolled)
                    | (Unused, Expired)
                    | (Unused, Revoked)
                    | (Enrolled, Expired)
                    | (Enrolled, Revoked)
            )
    }
}

impl fmt::Display for TokenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token as stored. Its state is not stored: it is derived from these fields and the clock, so
/// a token past its deadline reads `expired` without anything having to touch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub name: Name,
    pub secret_hash: SecretHash,
    pub labels: Labels,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub bound_machine: Option<MachineId>,
    pub enrolled_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// What presenting a token with a machine id leads to, when it is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presentation {
    /// The token was unused: bind it to this machine (`unused → enrolled`). The store must make
    /// this a conditional update that succeeds only if the token is still unbound and unrevoked.
    Bind,
    /// The token is already bound to this machine: the same machine is coming back.
    Resume,
}

/// Why a token was refused. Each maps to its own message and worker exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("enrollment token `{0}` is bound to another machine")]
    BoundToAnotherMachine(Name),
    #[error("enrollment token `{0}` has expired")]
    Expired(Name),
    #[error("enrollment token `{0}` has been revoked")]
    Revoked(Name),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// `unused|enrolled → revoked`: set `revoked_at` (conditionally on it still being unset).
    Revoke,
    /// Already revoked: succeeds and changes nothing.
    AlreadyRevoked,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    #[error("enrollment token `{0}` has already expired; an expired token cannot be revoked")]
    Expired(Name),
}

impl Token {
    /// The creation rule: a token lives from `now` for `lifetime`.
    pub fn new(
        name: Name,
        secret_hash: SecretHash,
        labels: Labels,
        now: Timestamp,
        lifetime: std::time::Duration,
    ) -> Self {
        Self {
            name,
            secret_hash,
            labels,
            created_at: now,
            expires_at: now.saturating_add(lifetime),
            bound_machine: None,
            enrolled_at: None,
            revoked_at: None,
        }
    }

    /// The effective state at `now`.
    pub fn state_at(&self, now: Timestamp) -> TokenState {
        if self.revoked_at.is_some() {
            // Revocation is only ever applied before expiry, and is terminal.
            TokenState::Revoked
        } else if now >= self.expires_at {
            TokenState::Expired
        } else if self.bound_machine.is_some() {
            TokenState::Enrolled
        } else {
            TokenState::Unused
        }
    }

    /// A machine presents this token (whose secret has already been checked).
    pub fn present(&self, machine: &MachineId, now: Timestamp) -> Result<Presentation, Refusal> {
        match self.state_at(now) {
            TokenState::Unused => Ok(Presentation::Bind),
            TokenState::Enrolled if self.bound_machine.as_ref() == Some(machine) => {
                Ok(Presentation::Resume)
            }
            TokenState::Enrolled => Err(Refusal::BoundToAnotherMachine(self.name.clone())),
            TokenState::Expired => Err(Refusal::Expired(self.name.clone())),
            TokenState::Revoked => Err(Refusal::Revoked(self.name.clone())),
        }
    }

    /// Applies an accepted presentation to the record (what the store persists).
    pub fn apply_presentation(
        &mut self,
        presentation: &Presentation,
        machine: &MachineId,
        now: Timestamp,
    ) {
        if *presentation == Presentation::Bind {
            self.bound_machine = Some(machine.clone());
            self.enrolled_at = Some(now);
        }
    }

    /// An admin revokes this token.
    pub fn revoke(&self, now: Timestamp) -> Result<RevokeOutcome, RevokeError> {
        match self.state_at(now) {
            TokenState::Unused | TokenState::Enrolled => Ok(RevokeOutcome::Revoke),
            TokenState::Revoked => Ok(RevokeOutcome::AlreadyRevoked),
            TokenState::Expired => Err(RevokeError::Expired(self.name.clone())),
        }
    }

    /// Applies a revocation to the record (what the store persists).
    pub fn apply_revoke(&mut self, outcome: &RevokeOutcome, now: Timestamp) {
        if *outcome == RevokeOutcome::Revoke {
            self.revoked_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn machine(s: &str) -> MachineId {
        MachineId::parse(s).unwrap()
    }

    fn token_at(now: i64, lifetime_ms: u64) -> Token {
        Token::new(
            Name::parse("tok").unwrap(),
            SecretHash::of("s"),
            Labels::new(),
            Timestamp::from_unix_millis(now),
            Duration::from_millis(lifetime_ms),
        )
    }

    const T0: i64 = 1_000_000;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(T0 + ms)
    }

    #[test]
    fn unused_binds_then_same_machine_resumes_and_others_are_refused() {
        let mut t = token_at(T0, 10_000);
        let a = machine("machine-a");
        assert_eq!(t.state_at(at(0)), TokenState::Unused);
        let p = t.present(&a, at(1)).unwrap();
        assert_eq!(p, Presentation::Bind);
        t.apply_presentation(&p, &a, at(1));
        assert_eq!(t.state_at(at(2)), TokenState::Enrolled);
        assert_eq!(t.present(&a, at(3)), Ok(Presentation::Resume));
        assert_eq!(
            t.present(&machine("machine-b"), at(3)),
            Err(Refusal::BoundToAnotherMachine(t.name.clone()))
        );
    }

    #[test]
    fn expiry_counts_from_creation_and_is_terminal() {
        let mut t = token_at(T0, 10_000);
        let a = machine("machine-a");
        t.apply_presentation(&Presentation::Bind, &a, at(9_000));
        assert_eq!(t.state_at(at(9_999)), TokenState::Enrolled);
        assert_eq!(
            t.state_at(at(10_000)),
            TokenState::Expired,
            "the deadline itself is expired"
        );
        assert_eq!(
            t.present(&a, at(10_000)),
            Err(Refusal::Expired(t.name.clone()))
        );
        assert_eq!(
            t.revoke(at(10_001)),
            Err(RevokeError::Expired(t.name.clone()))
        );
        let unused = token_at(T0, 5);
        assert_eq!(unused.state_at(at(5)), TokenState::Expired);
    }

    #[test]
    fn revoke_is_idempotent_and_wins_over_later_expiry() {
        let mut t = token_at(T0, 10_000);
        assert_eq!(t.revoke(at(1)), Ok(RevokeOutcome::Revoke));
        t.apply_revoke(&RevokeOutcome::Revoke, at(1));
        assert_eq!(t.revoke(at(2)), Ok(RevokeOutcome::AlreadyRevoked));
        assert_eq!(t.state_at(at(20_000)), TokenState::Revoked);
        assert_eq!(
            t.present(&machine("machine-a"), at(2)),
            Err(Refusal::Revoked(t.name.clone()))
        );
    }

    #[test]
    fn the_edge_table_is_exactly_the_documented_one() {
        use TokenState::*;
        let allowed = [
            (Unused, Enrolled),
            (Unused, Expired),
            (Unused, Revoked),
            (Enrolled, Expired),
            (Enrolled, Revoked),
        ];
        for from in TokenState::ALL {
            for to in TokenState::ALL {
                let expected = from == to || allowed.contains(&(from, to));
                assert_eq!(from.can_become(to), expected, "{from} -> {to}");
            }
        }
    }
}

#[cfg(test)]
mod properties {
    //! Whatever operations happen in whatever order at whatever times, every observed change of
    //! effective state is an edge of the documented machine.
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[derive(Debug, Clone)]
    enum Op {
        Present(u8),
        Revoke,
        Wait(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3).prop_map(Op::Present),
            Just(Op::Revoke),
            (0u16..2000).prop_map(Op::Wait),
        ]
    }

    proptest! {
        #[test]
        fn only_documented_transitions_happen(lifetime in 1u64..5000, ops in proptest::collection::vec(op(), 0..40)) {
            let machines: Vec<MachineId> = (0..3).map(|i| MachineId::parse(&format!("machine-{i}")).unwrap()).collect();
            let start = Timestamp::from_unix_millis(1_000_000);
            let mut now = start;
            let mut token = Token::new(Name::parse("p").unwrap(), SecretHash::of("s"), Labels::new(), now, Duration::from_millis(lifetime));
            let mut state = token.state_at(now);
            let mut binder: Option<u8> = None;
            for op in ops {
                match op {
                    Op::Wait(ms) => now = now.saturating_add(Duration::from_millis(u64::from(ms))),
                    Op::Present(m) => {
                        let before = token.state_at(now);
                        match token.present(&machines[m as usize], now) {
                            Ok(p) => {
                                prop_assert!(matches!(before, TokenState::Unused | TokenState::Enrolled));
                                if p == Presentation::Resume { prop_assert_eq!(binder, Some(m)); }
                                if p == Presentation::Bind { prop_assert_eq!(binder, None); binder = Some(m); }
                                token.apply_presentation(&p, &machines[m as usize], now);
                            }
                            Err(Refusal::BoundToAnotherMachine(_)) => prop_assert!(binder.is_some() && binder != Some(m)),
                            Err(Refusal::Expired(_)) => prop_assert_eq!(before, TokenState::Expired),
                            Err(Refusal::Revoked(_)) => prop_assert_eq!(before, TokenState::Revoked),
                        }
                    }
                    Op::Revoke => {
                        let before = token.state_at(now);
                        match token.revoke(now) {
                            Ok(outcome) => token.apply_revoke(&outcome, now),
                            Err(RevokeError::Expired(_)) => prop_assert_eq!(before, TokenState::Expired),
                        }
                    }
                }
                let after = token.state_at(now);
                prop_assert!(state.can_become(after), "{} -> {}", state, after);
                if state.is_terminal() { prop_assert_eq!(state, after); }
                state = after;
            }
        }
    }
}

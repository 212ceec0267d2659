//! Workers: the identity every enrollment ends in, and the rule for admitting a connection.

use std::fmt;

use crate::credentials::{KeyHash, MachineId};
use crate::identity::PublicKey;
use crate::labels::Labels;
use crate::name::Name;
use crate::tickets::TicketLedger;
use crate::time::Timestamp;

/// The name of the server's built-in worker, reserved for it: nothing else may take it, also
/// when the built-in worker is switched off.
pub const BUILTIN_NAME: &str = "builtin";

/// A worker's id: 128 random bits, hex. Stable for the life of the identity; a superseded
/// worker gets a new one, so its old cached id stops being recognised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("worker id `{0}` is malformed: worker ids are 32 hexadecimal digits")]
pub struct WorkerIdError(String);

impl WorkerId {
    pub fn parse(input: &str) -> Result<Self, WorkerIdError> {
        let ok = input.len() == 32 && input.bytes().all(|b| b.is_ascii_hexdigit());
        if ok {
            Ok(Self(input.to_ascii_lowercase()))
        } else {
            Err(WorkerIdError(crate::name::shorten(input)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a worker came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnrolledVia {
    Token,
    Secret,
    Precreated,
    Builtin,
}

impl EnrolledVia {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrolledVia::Token => "token",
            EnrolledVia::Secret => "secret",
            EnrolledVia::Precreated => "precreated",
            EnrolledVia::Builtin => "builtin",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        Some(match input {
            "token" => EnrolledVia::Token,
            "secret" => EnrolledVia::Secret,
            "precreated" => EnrolledVia::Precreated,
            "builtin" => EnrolledVia::Builtin,
            _ => return None,
        })
    }
}

/// What `muster workers list` shows in STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkerStatus {
    Connected,
    Disconnected,
    Revoked,
    Expired,
    /// Its identity was used from two places at once (a copied state dir): cut off until an
    /// admin removes it and the machine enrolls again.
    Suspended,
}

impl WorkerStatus {
    pub const ALL: [WorkerStatus; 5] = [
        WorkerStatus::Connected,
        WorkerStatus::Disconnected,
        WorkerStatus::Revoked,
        WorkerStatus::Expired,
        WorkerStatus::Suspended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Connected => "connected",
            WorkerStatus::Disconnected => "disconnected",
            WorkerStatus::Revoked => "revoked",
            WorkerStatus::Expired => "expired",
            WorkerStatus::Suspended => "suspended",
        }
    }
}

/// A worker as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    pub id: WorkerId,
    pub name: Name,
    pub enrolled_via: EnrolledVia,
    /// The enrollment token this worker enrolled with, if any.
    pub token_name: Option<Name>,
    /// The machine this identity is bound to. `None` only for a pre-created worker that has not
    /// connected yet: the first machine to connect with its key binds it.
    pub machine_id: Option<MachineId>,
    pub labels: Labels,
    pub key_hash: KeyHash,
    pub created_at: Timestamp,
    /// A token-enrolled worker inherits its token's hard deadline.
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_seen_at: Option<Timestamp>,
    /// The key it proves itself with, its tickets, and whether it was found copied.
    pub identity: WorkerIdentity,
}

/// What tells this worker's machine from any other: its public key (recorded at enrollment, or
/// at the first connection of a worker enrolled before keys existed), the tickets that tell it
/// from a copy of its state dir, and the verdict if a copy was found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerIdentity {
    pub public_key: Option<PublicKey>,
    pub tickets: TicketLedger,
    /// Where the connection that confirmed the current ticket came from.
    pub ticket_remote: Option<String>,
    pub suspended_at: Option<Timestamp>,
}

/// Why a connecting worker was turned away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitRefusal {
    #[error("worker identity is not known to this server")]
    UnknownIdentity,
    #[error("worker `{0}` is bound to another machine")]
    OtherMachine(Name),
    #[error("worker `{0}` is suspended: its identity was used from two places at once")]
    Suspended(Name),
    #[error("worker `{0}` has been revoked")]
    Revoked(Name),
    #[error("worker `{0}` has expired with its enrollment token")]
    Expired(Name),
    /// A pre-created worker's first connection is its joining, which the edition or the
    /// licence refuses.
    #[error(transparent)]
    License(crate::license::JoinRefusal),
}

/// An admitted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Everything matches.
    Admit,
    /// A pre-created worker connecting for the first time: bind it to this machine.
    AdmitAndBind,
}

impl Worker {
    pub fn status(&self, connected: bool, now: Timestamp) -> WorkerStatus {
        if self.revoked_at.is_some() {
            WorkerStatus::Revoked
        } else if self.identity.suspended_at.is_some() {
            WorkerStatus::Suspended
        } else if self.expires_at.is_some_and(|deadline| now >= deadline) {
            WorkerStatus::Expired
        } else if connected {
            WorkerStatus::Connected
        } else {
            WorkerStatus::Disconnected
        }
    }

    /// A worker presents its API key from `machine`. The key is checked in constant time. A wrong
    /// key reads the same as an unknown id, so the answer does not tell a prober which ids exist.
    pub fn admit(
        &self,
        presented_key: &str,
        machine: &MachineId,
        now: Timestamp,
    ) -> Result<Admission, AdmitRefusal> {
        if !self.key_hash.matches(presented_key) {
            return Err(AdmitRefusal::UnknownIdentity);
        }
        match self.status(false, now) {
            WorkerStatus::Revoked => return Err(AdmitRefusal::Revoked(self.name.clone())),
            WorkerStatus::Expired => return Err(AdmitRefusal::Expired(self.name.clone())),
            WorkerStatus::Suspended => return Err(AdmitRefusal::Suspended(self.name.clone())),
            WorkerStatus::Connected | WorkerStatus::Disconnected => {}
        }
        match &self.machine_id {
            None => Ok(Admission::AdmitAndBind),
            Some(bound) if bound == machine => Ok(Admission::Admit),
            Some(_) => Err(AdmitRefusal::OtherMachine(self.name.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::SecretHash;

    fn worker() -> Worker {
        Worker {
            id: WorkerId::parse(&"a".repeat(32)).unwrap(),
            name: Name::parse("w1").unwrap(),
            enrolled_via: EnrolledVia::Token,
            token_name: None,
            machine_id: Some(MachineId::parse("machine-a").unwrap()),
            labels: Labels::new(),
            key_hash: SecretHash::of("mk_key"),
            created_at: Timestamp::from_unix_millis(0),
            expires_at: Some(Timestamp::from_unix_millis(1000)),
            revoked_at: None,
            last_seen_at: None,
            identity: Default::default(),
        }
    }

    #[test]
    fn admits_only_the_right_key_from_the_right_machine_in_time() {
        let w = worker();
        let a = MachineId::parse("machine-a").unwrap();
        let b = MachineId::parse("machine-b").unwrap();
        let now = Timestamp::from_unix_millis(10);
        assert_eq!(w.admit("mk_key", &a, now), Ok(Admission::Admit));
        assert_eq!(
            w.admit("mk_wrong", &a, now),
            Err(AdmitRefusal::UnknownIdentity)
        );
        assert_eq!(
            w.admit("mk_key", &b, now),
            Err(AdmitRefusal::OtherMachine(w.name.clone()))
        );
        assert_eq!(
            w.admit("mk_key", &a, Timestamp::from_unix_millis(1000)),
            Err(AdmitRefusal::Expired(w.name.clone()))
        );
        let mut revoked = w.clone();
        revoked.revoked_at = Some(now);
        assert_eq!(
            revoked.admit("mk_key", &a, now),
            Err(AdmitRefusal::Revoked(w.name.clone()))
        );
    }

    #[test]
    fn precreated_worker_binds_on_first_connect() {
        let mut w = worker();
        w.machine_id = None;
        w.expires_at = None;
        let a = MachineId::parse("machine-a").unwrap();
        assert_eq!(
            w.admit("mk_key", &a, Timestamp::from_unix_millis(5)),
            Ok(Admission::AdmitAndBind)
        );
    }

    #[test]
    fn status_precedence() {
        let mut w = worker();
        let now = Timestamp::from_unix_millis(10);
        assert_eq!(w.status(true, now), WorkerStatus::Connected);
        assert_eq!(w.status(false, now), WorkerStatus::Disconnected);
        assert_eq!(
            w.status(true, Timestamp::from_unix_millis(2000)),
            WorkerStatus::Expired
        );
        w.revoked_at = Some(now);
        assert_eq!(w.status(true, now), WorkerStatus::Revoked);
    }
}

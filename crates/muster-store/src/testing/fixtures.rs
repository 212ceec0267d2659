//! What every case builds on: a fixed clock origin, names, audit events, tokens, enrollment
//! requests and pre-created workers.

use std::time::Duration;

use muster_core::audit::{AuditEvent, Outcome};
use muster_core::{
    ApiKey, EnrolledVia, Labels, MachineId, Name, SecretHash, Timestamp, Token, TokenSecret,
    Worker, WorkerId,
};
use rand::rngs::OsRng;

use crate::Store;
use crate::flows::tokens::{self, Enrolled, TokenEnrollRefusal, TokenEnrollment};
use crate::flows::workers;

pub const T0: i64 = 1_800_000_000_000;

pub fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + ms)
}

pub fn name(s: &str) -> Name {
    Name::parse(s).expect("test name")
}

pub fn machine(s: &str) -> MachineId {
    MachineId::parse(s).expect("test machine id")
}

pub fn audit(action: &str, target: &str) -> AuditEvent {
    AuditEvent {
        expected: None,
        at: at(0),
        actor: "admin".into(),
        action: action.into(),
        target: target.into(),
        remote_addr: Some("127.0.0.1".into()),
        outcome: Outcome::Ok,
        detail: String::new(),
    }
}

/// Starts the fleet's trial, so external workers may join (without a limit). Cases that enroll
/// or connect workers begin with it; without it a store is Community Edition, and the license
/// cases start from there.
pub async fn licensed(store: &Store) {
    let ev = audit("license.changed", "license");
    store
        .write(move |tx| crate::flows::license::start_trial(tx, at(0), &ev))
        .await
        .expect("store")
        .expect("the trial starts");
}

/// Creates a token living `lifetime_ms` from `at(0)` and returns its plaintext.
pub async fn make_token(store: &Store, token_name: &str, lifetime_ms: u64) -> TokenSecret {
    let secret = TokenSecret::generate(name(token_name), &mut OsRng);
    let token = Token::new(
        name(token_name),
        secret.hash(),
        Labels::parse_list("pool=a").expect("labels"),
        at(0),
        Duration::from_millis(lifetime_ms),
    );
    let ev = audit("token.create", token_name);
    store
        .write(move |tx| tokens::create(tx, &token, &ev))
        .await
        .expect("store")
        .expect("token created");
    secret
}

pub fn enrollment(secret: &TokenSecret, machine_id: &str, now: i64) -> (TokenEnrollment, ApiKey) {
    let key = ApiKey::generate(&mut OsRng);
    let req = TokenEnrollment {
        presented: secret.clone(),
        machine: machine(machine_id),
        labels: Labels::parse_list("os=linux,pool=worker-says").expect("labels"),
        now: at(now),
        new_worker_id: WorkerId::parse(&muster_core::credentials::generate_id(&mut OsRng))
            .expect("id"),
        new_key: key.hash(),
        public_key: machine_key(machine_id).public_key(),
        remote_addr: Some("127.0.0.2".into()),
    };
    (req, key)
}

/// The key pair of the test machine `machine_id`: the same machine always holds the same key.
pub fn machine_key(machine_id: &str) -> muster_core::identity::WorkerKey {
    let mut seed = [7u8; 32];
    for (i, b) in machine_id.bytes().enumerate() {
        seed[i % 32] = seed[i % 32].wrapping_mul(31).wrapping_add(b);
    }
    muster_core::identity::WorkerKey::from_seed(seed)
}

pub async fn enroll(store: &Store, req: TokenEnrollment) -> Result<Enrolled, TokenEnrollRefusal> {
    store
        .write(move |tx| tokens::enroll(tx, &req))
        .await
        .expect("store")
}

pub fn precreated(worker_name: &str) -> Worker {
    Worker {
        id: WorkerId::parse(&muster_core::credentials::generate_id(&mut OsRng)).expect("id"),
        name: name(worker_name),
        enrolled_via: EnrolledVia::Precreated,
        token_name: None,
        machine_id: None,
        labels: Labels::new(),
        key_hash: SecretHash::of("mk_precreated"),
        created_at: at(0),
        expires_at: None,
        revoked_at: None,
        last_seen_at: None,
        identity: Default::default(),
    }
}

/// Stores a pre-created worker called `worker_name` (see [`precreated`]) and returns it.
pub async fn create_precreated(store: &Store, worker_name: &str) -> Worker {
    let worker = precreated(worker_name);
    let stored = worker.clone();
    store
        .write(move |tx| workers::create(tx, &stored, at(0), None))
        .await
        .expect("store")
        .expect("created");
    worker
}

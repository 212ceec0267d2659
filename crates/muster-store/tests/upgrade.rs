//! Upgrading in place: a database written by an earlier build of muster, kept as a fixture, is
//! opened (and migrated) by this build, and what it held still works: the tokens, the workers,
//! their API keys, public keys and tickets.
//!
//! `fixtures/schema-v7.db` was made by [`make_fixture`] with the schema as it stood at version 7,
//! and `fixtures/schema-v7.json` holds the plaintexts it was made with (test values, nothing
//! real). Fixtures are never regenerated: when the schema moves on, run the generator once more
//! to add a fixture of the new version beside the old ones, and give it a test of its own here:
//!
//! ```text
//! cargo test -p muster-store --test upgrade -- --ignored make_fixture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use muster_core::audit::{AuditEvent, Outcome};
use muster_core::credentials::generate_id;
use muster_core::identity::WorkerKey;
use muster_core::tickets::Ticket;
use muster_core::token::{Refusal, TokenState};
use muster_core::{
    ApiKey, EnrolledVia, Labels, MachineId, Name, SecretHash, Timestamp, Token, TokenSecret,
    Worker, WorkerId,
};
use muster_store::Store;
use muster_store::flows::identity::{self, ConnectRefusal, Connection, Opened};
use muster_store::flows::tokens::{self, TokenEnrollRefusal, TokenEnrollment};
use muster_store::flows::workers;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

/// The plaintexts a fixture was made with.
#[derive(Debug, Serialize, Deserialize)]
struct Plaintexts {
    schema_version: i64,
    /// A token that enrolled `machine`.
    used_token: String,
    /// A token nobody used yet.
    unused_token: String,
    machine: String,
    worker_id: String,
    worker_api_key: String,
    /// The seed of the worker's key pair, hex.
    worker_key_seed: String,
    /// The ticket the worker confirmed at its last connection (`SEQ.VALUE`).
    worker_ticket: String,
    precreated_id: String,
    precreated_api_key: String,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// When the fixture's things were made: 2026-01-01. Its tokens live for a century.
const MADE_AT_MS: i64 = 1_767_225_600_000;
const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

fn made_at() -> Timestamp {
    Timestamp::from_unix_millis(MADE_AT_MS)
}

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Timestamp::from_unix_millis(i64::try_from(ms).unwrap())
}

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn audit(action: &str, target: &str) -> AuditEvent {
    AuditEvent {
        expected: None,
        at: made_at(),
        actor: "admin".into(),
        action: action.into(),
        target: target.into(),
        remote_addr: Some("127.0.0.1".into()),
        outcome: Outcome::Ok,
        detail: String::new(),
    }
}

fn key_from_seed(hex_seed: &str) -> WorkerKey {
    WorkerKey::from_seed(hex::decode(hex_seed).unwrap().try_into().unwrap())
}

async fn create_token(store: &Store, token_name: &str) -> TokenSecret {
    let secret = TokenSecret::generate(name(token_name), &mut OsRng);
    let token = Token::new(
        name(token_name),
        secret.hash(),
        Labels::parse_list("pool=fixture").unwrap(),
        made_at(),
        CENTURY,
    );
    let event = audit("token.create", token_name);
    store
        .write(move |tx| tokens::create(tx, &token, &event))
        .await
        .unwrap()
        .unwrap();
    secret
}

fn token_enrollment(
    token: &str,
    machine: &str,
    key: &WorkerKey,
    at: Timestamp,
) -> (TokenEnrollment, ApiKey) {
    let api_key = ApiKey::generate(&mut OsRng);
    let request = TokenEnrollment {
        presented: TokenSecret::parse(token).unwrap(),
        machine: MachineId::parse(machine).unwrap(),
        labels: Labels::parse_list("os=linux").unwrap(),
        now: at,
        new_worker_id: WorkerId::parse(&generate_id(&mut OsRng)).unwrap(),
        new_key: api_key.hash(),
        public_key: key.public_key(),
        remote_addr: Some("127.0.0.2".into()),
    };
    (request, api_key)
}

fn connection(
    worker: &str,
    api_key: &str,
    machine: &str,
    key: &WorkerKey,
    presented: Option<&Ticket>,
    at: Timestamp,
) -> (Connection, Ticket) {
    let seq = presented.map_or(1, |t| t.seq + 1);
    let issued = Ticket::generate(seq, &mut OsRng);
    let c = Connection {
        worker: WorkerId::parse(worker).unwrap(),
        api_key: api_key.to_owned(),
        machine: MachineId::parse(machine).unwrap(),
        public_key: key.public_key(),
        presented: presented.map(Ticket::hash),
        issued: issued.hash(),
        now: at,
    };
    (c, issued)
}

/// Makes a fixture of the current schema: run once per schema version, by hand (see the module
/// doc). It writes `fixtures/schema-vN.db` and `fixtures/schema-vN.json`.
#[tokio::test]
#[ignore = "a generator, run by hand once per schema version"]
async fn make_fixture() {
    let version = muster_store::sqlite::LATEST_SCHEMA;
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("muster.db");
    let store = Store::open_sqlite(&db).unwrap();

    let used = create_token(&store, "fixture-used").await;
    let unused = create_token(&store, "fixture-unused").await;
    let machine = "fixture-machine-0001";
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut OsRng, &mut seed);
    let key = WorkerKey::from_seed(seed);
    let (request, api_key) = token_enrollment(&used.expose(), machine, &key, made_at());
    let enrolled = store
        .write(move |tx| tokens::enroll(tx, &request))
        .await
        .unwrap()
        .unwrap();
    // One connection, its ticket saved and confirmed: the worker's settled state.
    let worker_id = enrolled.worker.id.to_string();
    let (c, ticket) = connection(&worker_id, api_key.expose(), machine, &key, None, made_at());
    assert!(matches!(
        store
            .write(move |tx| identity::open_session(tx, &c))
            .await
            .unwrap(),
        Ok(Opened::Admitted { .. })
    ));
    let (id, hash) = (enrolled.worker.id.clone(), ticket.hash());
    assert!(
        store
            .write(move |tx| identity::confirm_ticket(tx, &id, &hash, Some("127.0.0.2")))
            .await
            .unwrap()
    );

    let precreated_key = ApiKey::generate(&mut OsRng);
    let precreated = Worker {
        id: WorkerId::parse(&generate_id(&mut OsRng)).unwrap(),
        name: name("fixture-precreated"),
        enrolled_via: EnrolledVia::Precreated,
        token_name: None,
        machine_id: None,
        labels: Labels::new(),
        key_hash: SecretHash::of(precreated_key.expose()),
        created_at: made_at(),
        expires_at: None,
        revoked_at: None,
        last_seen_at: None,
        identity: Default::default(),
    };
    let stored = precreated.clone();
    let event = audit("worker.create", "fixture-precreated");
    store
        .write(move |tx| workers::create(tx, &stored, made_at(), Some(&event)))
        .await
        .unwrap()
        .unwrap();
    store.close();

    let out = fixtures().join(format!("schema-v{version}.db"));
    let _ = std::fs::remove_file(&out);
    let taken = muster_store::sqlite::snapshot(&db, &out).unwrap();
    assert_eq!(taken.schema_version, version);
    let plaintexts = Plaintexts {
        schema_version: version,
        used_token: used.expose(),
        unused_token: unused.expose(),
        machine: machine.into(),
        worker_id,
        worker_api_key: api_key.expose().into(),
        worker_key_seed: hex::encode(seed),
        worker_ticket: ticket.encode(),
        precreated_id: precreated.id.to_string(),
        precreated_api_key: precreated_key.expose().into(),
    };
    std::fs::write(
        fixtures().join(format!("schema-v{version}.json")),
        serde_json::to_string_pretty(&plaintexts).unwrap() + "\n",
    )
    .unwrap();
    println!("wrote {}", out.display());
}

/// Opens a copy of fixture `version` with this build: it is migrated in place.
fn open_fixture(version: i64) -> (Store, Plaintexts, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("muster.db");
    std::fs::copy(fixtures().join(format!("schema-v{version}.db")), &db).unwrap();
    let text = std::fs::read_to_string(fixtures().join(format!("schema-v{version}.json"))).unwrap();
    let plaintexts: Plaintexts = serde_json::from_str(&text).unwrap();
    assert_eq!(plaintexts.schema_version, version);
    let store = Store::open_sqlite(&db).expect("this build opens and migrates the old database");
    (store, plaintexts, dir)
}

#[tokio::test]
async fn a_database_from_schema_v7_keeps_tokens_workers_and_keys_working() {
    let (store, p, dir) = open_fixture(7);
    let now = now();

    // The tokens, as they were.
    let tokens = store.read(|tx| tx.list_tokens()).await.unwrap();
    let state = |n: &str| {
        tokens
            .iter()
            .find(|t| t.name.as_str() == n)
            .unwrap_or_else(|| panic!("token {n} is gone"))
            .state_at(now)
    };
    assert_eq!(state("fixture-used"), TokenState::Enrolled);
    assert_eq!(state("fixture-unused"), TokenState::Unused);

    // Migration 0009 copied the workers' labels into the rows the `label` filter reads.
    let labelled = store
        .read(move |tx| {
            tx.page_workers(&muster_store::WorkerPage {
                after: None,
                sort: muster_store::WorkerSort::Name,
                descending: false,
                name_contains: None,
                labels: vec![muster_store::LabelMatch {
                    key: "os".into(),
                    value: Some("linux".into()),
                }],
                status: None,
                present: false,
                now,
                limit: 10,
            })
        })
        .await
        .unwrap();
    assert_eq!(
        labelled.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
        ["fixture-used"],
        "the label filter finds the worker labelled before the upgrade"
    );

    // The enrolled worker connects with its API key, its key pair and the ticket it holds.
    let key = key_from_seed(&p.worker_key_seed);
    let ticket = Ticket::parse(&p.worker_ticket).unwrap();
    let (c, _) = connection(
        &p.worker_id,
        &p.worker_api_key,
        &p.machine,
        &key,
        Some(&ticket),
        now,
    );
    match store
        .write(move |tx| identity::open_session(tx, &c))
        .await
        .unwrap()
    {
        Ok(Opened::Admitted { worker, key_bound }) => {
            assert!(!key_bound, "its key was bound before the upgrade");
            assert_eq!(worker.name.as_str(), "fixture-used");
        }
        other => panic!("the enrolled worker is not admitted: {other:?}"),
    }
    // Its API key is still checked: a wrong one is refused.
    let (c, _) = connection(&p.worker_id, "mk_wrong", &p.machine, &key, None, now);
    assert!(matches!(
        store
            .write(move |tx| identity::open_session(tx, &c))
            .await
            .unwrap(),
        Err(ConnectRefusal::Admit(_))
    ));
    // Another key pair is refused.
    let other = WorkerKey::from_seed([9; 32]);
    let (c, _) = connection(
        &p.worker_id,
        &p.worker_api_key,
        &p.machine,
        &other,
        None,
        now,
    );
    assert!(matches!(
        store
            .write(move |tx| identity::open_session(tx, &c))
            .await
            .unwrap(),
        Err(ConnectRefusal::OtherKey(_))
    ));

    // The used token still enrolls only its machine.
    let (request, _) = token_enrollment(&p.used_token, &p.machine, &key, now);
    let resumed = store
        .write(move |tx| tokens::enroll(tx, &request))
        .await
        .unwrap()
        .expect("the bound machine enrolls again");
    assert!(resumed.resumed);
    assert_eq!(resumed.worker.id.as_str(), p.worker_id);
    let (request, _) = token_enrollment(&p.used_token, "another-machine-0001", &other, now);
    assert!(matches!(
        store
            .write(move |tx| tokens::enroll(tx, &request))
            .await
            .unwrap(),
        Err(TokenEnrollRefusal::Token(Refusal::BoundToAnotherMachine(_)))
    ));
    // A database from before editions is Community Edition: what joined stays (above), and a
    // new machine joins once a license (here the trial) is there.
    let ev = audit("license.changed", "license");
    store
        .write(move |tx| muster_store::flows::license::start_trial(tx, now, &ev))
        .await
        .unwrap()
        .expect("the trial starts");
    // The unused one enrolls a new machine.
    let fresh = WorkerKey::from_seed([5; 32]);
    let (request, _) = token_enrollment(&p.unused_token, "new-machine-0001", &fresh, now);
    let enrolled = store
        .write(move |tx| tokens::enroll(tx, &request))
        .await
        .unwrap()
        .expect("an unused token enrolls");
    assert!(!enrolled.resumed);

    // The pre-created worker connects with its API key for the first time.
    let (c, _) = connection(
        &p.precreated_id,
        &p.precreated_api_key,
        "precreated-machine-1",
        &fresh,
        None,
        now,
    );
    assert!(matches!(
        store
            .write(move |tx| identity::open_session(tx, &c))
            .await
            .unwrap(),
        Ok(Opened::Admitted {
            key_bound: true,
            ..
        })
    ));
    store.close();
    drop(dir);
}

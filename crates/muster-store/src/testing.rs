//! The conformance suite every backend must pass: the same flows, the same answers.
//!
//! A backend's tests call [`run_all`] with a factory that makes an empty store. Each case gets a
//! fresh one, so cases cannot lean on each other.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use muster_core::audit::{AuditEvent, Outcome};
use muster_core::token::{Refusal, RevokeError};
use muster_core::worker::AdmitRefusal;
use muster_core::{
    ApiKey, EnrolledVia, Labels, MachineId, Name, SecretHash, Timestamp, Token, TokenSecret,
    TokenState, Worker, WorkerId,
};
use rand::rngs::OsRng;

use muster_core::credentials::SlowHash;
use muster_core::enrollment::{AutoRefusal, NamePattern};

use muster_core::job::{Ending, EndingKind, Job, JobId, JobState, Selector};

use crate::flows::enrollment::{self, SecretEnrollment};
use crate::flows::jobs;
use crate::flows::tokens::{self, Enrolled, TokenEnrollRefusal, TokenEnrollment};
use crate::flows::workers;
use crate::tx::JobFilter;
use crate::{AuditFilter, Store, StoreError};

type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Case = (&'static str, fn(Store) -> CaseFuture);

/// Every case, by name.
pub fn cases() -> Vec<Case> {
    vec![
        ("token_create_get_list", |s| {
            Box::pin(token_create_get_list(s))
        }),
        ("token_names_are_unique_across_workers", |s| {
            Box::pin(token_names_are_unique_across_workers(s))
        }),
        ("enroll_binds_then_resumes_and_refuses_others", |s| {
            Box::pin(enroll_binds_then_resumes_and_refuses_others(s))
        }),
        ("enroll_refuses_unknown_wrong_expired_revoked", |s| {
            Box::pin(enroll_refuses_unknown_wrong_expired_revoked(s))
        }),
        ("racing_machines_exactly_one_wins", |s| {
            Box::pin(racing_machines_exactly_one_wins(s))
        }),
        ("revoke_token_transitions", |s| {
            Box::pin(revoke_token_transitions(s))
        }),
        ("admit_checks_key_machine_and_binds_precreated", |s| {
            Box::pin(admit_checks_key_machine_and_binds_precreated(s))
        }),
        ("revoke_and_remove_workers", |s| {
            Box::pin(revoke_and_remove_workers(s))
        }),
        ("failed_write_rolls_back_alone", |s| {
            Box::pin(failed_write_rolls_back_alone(s))
        }),
        ("audit_filters", |s| Box::pin(audit_filters(s))),
        ("settings_round_trip", |s| Box::pin(settings_round_trip(s))),
        ("touch_keeps_the_latest", |s| {
            Box::pin(touch_keeps_the_latest(s))
        }),
        ("jobs_start_once_end_once_and_recover", |s| {
            Box::pin(jobs_start_once_end_once_and_recover(s))
        }),
        ("job_output_is_stored_in_order", |s| {
            Box::pin(job_output_is_stored_in_order(s))
        }),
        ("secret_enrollment_settings_and_guard_rails", |s| {
            Box::pin(secret_enrollment_settings_and_guard_rails(s))
        }),
        ("secret_enrollment_supersedes_only_when_allowed", |s| {
            Box::pin(secret_enrollment_supersedes_only_when_allowed(s))
        }),
    ]
}

/// Runs every case against stores made by `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Store>,
{
    for (name, case) in cases() {
        eprintln!("conformance: {name}");
        case(make().await).await;
    }
}

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
        at: at(0),
        actor: "admin".into(),
        action: action.into(),
        target: target.into(),
        remote_addr: Some("127.0.0.1".into()),
        outcome: Outcome::Ok,
        detail: String::new(),
    }
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
        remote_addr: Some("127.0.0.2".into()),
    };
    (req, key)
}

pub async fn enroll(store: &Store, req: TokenEnrollment) -> Result<Enrolled, TokenEnrollRefusal> {
    store
        .write(move |tx| tokens::enroll(tx, &req))
        .await
        .expect("store")
}

async fn token_create_get_list(store: Store) {
    make_token(&store, "alpha", 60_000).await;
    make_token(&store, "beta", 1).await;
    let list = store.read(|tx| tx.list_tokens()).await.expect("list");
    let names: Vec<_> = list.iter().map(|t| t.name.as_str().to_owned()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    let alpha = store
        .read(|tx| tx.get_token(&name("alpha")))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(alpha.state_at(at(1)), TokenState::Unused);
    assert_eq!(alpha.labels.get("pool"), Some("a"));
    assert_eq!(alpha.expires_at, at(60_000));
    assert!(
        store
            .read(|tx| tx.get_token(&name("nope")))
            .await
            .expect("get")
            .is_none()
    );
}

async fn token_names_are_unique_across_workers(store: Store) {
    make_token(&store, "dup", 60_000).await;
    let again = Token::new(
        name("dup"),
        SecretHash::of("x"),
        Labels::new(),
        at(1),
        Duration::from_secs(1),
    );
    let ev = audit("token.create", "dup");
    let refused = store
        .write(move |tx| tokens::create(tx, &again, &ev))
        .await
        .expect("store");
    assert_eq!(
        refused,
        Err(tokens::CreateTokenRefusal::TokenExists(name("dup")))
    );

    let w = precreated("taken");
    let ev = audit("worker.create", "taken");
    store
        .write(move |tx| workers::create(tx, &w, at(0), Some(&ev)))
        .await
        .expect("store")
        .expect("created");
    let clash = Token::new(
        name("taken"),
        SecretHash::of("x"),
        Labels::new(),
        at(1),
        Duration::from_secs(1),
    );
    let ev = audit("token.create", "taken");
    let refused = store
        .write(move |tx| tokens::create(tx, &clash, &ev))
        .await
        .expect("store");
    assert_eq!(
        refused,
        Err(tokens::CreateTokenRefusal::WorkerExists(name("taken")))
    );
}

async fn enroll_binds_then_resumes_and_refuses_others(store: Store) {
    let secret = make_token(&store, "t1", 60_000).await;
    let (req, key) = enrollment(&secret, "machine-a", 10);
    let first = enroll(&store, req).await.expect("bound");
    assert!(!first.resumed);
    assert_eq!(first.worker.name.as_str(), "t1");
    assert_eq!(first.worker.enrolled_via, EnrolledVia::Token);
    assert_eq!(
        first.worker.expires_at,
        Some(at(60_000)),
        "the worker inherits the deadline"
    );
    assert_eq!(
        first.worker.labels.get("pool"),
        Some("a"),
        "token labels win"
    );
    assert_eq!(first.worker.labels.get("os"), Some("linux"));
    assert!(first.worker.key_hash.matches(key.expose()));

    let token = store
        .read(|tx| tx.get_token(&name("t1")))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(token.state_at(at(20)), TokenState::Enrolled);
    assert_eq!(token.bound_machine, Some(machine("machine-a")));
    assert_eq!(token.enrolled_at, Some(at(10)));

    let (again, new_key) = enrollment(&secret, "machine-a", 30);
    let resumed = enroll(&store, again).await.expect("same machine resumes");
    assert!(resumed.resumed);
    assert_eq!(resumed.worker.id, first.worker.id, "same worker");
    let stored = store
        .read(move |tx| tx.get_worker(&first.worker.id))
        .await
        .expect("get")
        .expect("exists");
    assert!(
        stored.key_hash.matches(new_key.expose()),
        "a new key was issued"
    );
    assert!(
        !stored.key_hash.matches(key.expose()),
        "the old key no longer works"
    );

    let (other, _) = enrollment(&secret, "machine-b", 40);
    assert_eq!(
        enroll(&store, other).await,
        Err(TokenEnrollRefusal::Token(Refusal::BoundToAnotherMachine(
            name("t1")
        )))
    );
    let records = store
        .read(|tx| {
            tx.list_audit(&AuditFilter {
                action_prefix: Some("enroll.".into()),
                limit: 10,
                ..Default::default()
            })
        })
        .await
        .expect("audit");
    assert_eq!(records.len(), 3, "every attempt is audited");
    assert_eq!(records[0].event.outcome, Outcome::Refused);
    assert!(
        records[0].event.detail.contains("another machine"),
        "{:?}",
        records[0]
    );
    assert_eq!(records[0].event.remote_addr.as_deref(), Some("127.0.0.2"));
    for r in &records {
        assert!(!r.event.detail.contains(secret.secret()));
    }
}

async fn enroll_refuses_unknown_wrong_expired_revoked(store: Store) {
    let unknown = TokenSecret::generate(name("ghost"), &mut OsRng);
    let (req, _) = enrollment(&unknown, "machine-a", 1);
    assert_eq!(
        enroll(&store, req).await,
        Err(TokenEnrollRefusal::Unknown(name("ghost")))
    );

    let real = make_token(&store, "real", 60_000).await;
    let forged = TokenSecret::parse(&format!("real.{}", "A".repeat(43))).expect("shape");
    let (req, _) = enrollment(&forged, "machine-a", 1);
    assert_eq!(
        enroll(&store, req).await,
        Err(TokenEnrollRefusal::Unknown(name("real")))
    );
    let token = store
        .read(|tx| tx.get_token(&name("real")))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(token.bound_machine, None, "a wrong secret binds nothing");

    let short = make_token(&store, "short", 100).await;
    let (req, _) = enrollment(&short, "machine-a", 100);
    assert_eq!(
        enroll(&store, req).await,
        Err(TokenEnrollRefusal::Token(Refusal::Expired(name("short"))))
    );

    let ev = audit("token.revoke", "real");
    store
        .write(move |tx| tokens::revoke(tx, &name("real"), at(2), &ev))
        .await
        .expect("store")
        .expect("revoked");
    let (req, _) = enrollment(&real, "machine-a", 3);
    assert_eq!(
        enroll(&store, req).await,
        Err(TokenEnrollRefusal::Token(Refusal::Revoked(name("real"))))
    );
    assert!(
        store
            .read(|tx| tx.list_workers())
            .await
            .expect("list")
            .is_empty()
    );
}

async fn racing_machines_exactly_one_wins(store: Store) {
    let secret = make_token(&store, "race", 60_000).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        let (req, _) = enrollment(&secret, &format!("machine-{i:02}"), 5);
        tasks.push(tokio::spawn(async move { enroll(&store, req).await }));
    }
    let mut winners = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(e) => {
                assert!(!e.resumed);
                winners += 1;
            }
            Err(TokenEnrollRefusal::Token(Refusal::BoundToAnotherMachine(_))) => {}
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(
        store
            .read(|tx| tx.list_workers())
            .await
            .expect("list")
            .len(),
        1
    );
}

async fn revoke_token_transitions(store: Store) {
    let unused = "unused-tok";
    make_token(&store, unused, 60_000).await;
    let ev = audit("token.revoke", unused);
    let r = store
        .write(move |tx| tokens::revoke(tx, &name(unused), at(1), &ev))
        .await
        .expect("store");
    assert_eq!(
        r,
        Ok(tokens::TokenRevoked {
            changed: true,
            worker: None
        })
    );
    let ev = audit("token.revoke", unused);
    let r = store
        .write(move |tx| tokens::revoke(tx, &name(unused), at(2), &ev))
        .await
        .expect("store");
    assert_eq!(
        r,
        Ok(tokens::TokenRevoked {
            changed: false,
            worker: None
        }),
        "idempotent"
    );

    let secret = make_token(&store, "bound-tok", 60_000).await;
    let (req, _) = enrollment(&secret, "machine-a", 1);
    let enrolled = enroll(&store, req).await.expect("bound");
    let ev = audit("token.revoke", "bound-tok");
    let r = store
        .write(move |tx| tokens::revoke(tx, &name("bound-tok"), at(3), &ev))
        .await
        .expect("store");
    assert_eq!(
        r,
        Ok(tokens::TokenRevoked {
            changed: true,
            worker: Some(enrolled.worker.id.clone())
        })
    );
    let w = store
        .read(move |tx| tx.get_worker(&enrolled.worker.id))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        w.revoked_at,
        Some(at(3)),
        "the worker is revoked with its token"
    );

    make_token(&store, "old-tok", 10).await;
    let ev = audit("token.revoke", "old-tok");
    let r = store
        .write(move |tx| tokens::revoke(tx, &name("old-tok"), at(10), &ev))
        .await
        .expect("store");
    assert_eq!(
        r,
        Err(tokens::RevokeTokenRefusal::Expired(RevokeError::Expired(
            name("old-tok")
        )))
    );
    let t = store
        .read(|tx| tx.get_token(&name("old-tok")))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(t.revoked_at, None, "a refused revoke changes nothing");

    let ev = audit("token.revoke", "missing");
    let r = store
        .write(move |tx| tokens::revoke(tx, &name("missing"), at(1), &ev))
        .await
        .expect("store");
    assert_eq!(
        r,
        Err(tokens::RevokeTokenRefusal::NotFound(name("missing")))
    );
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
    }
}

async fn admit_checks_key_machine_and_binds_precreated(store: Store) {
    let w = precreated("pre");
    let id = w.id.clone();
    store
        .write(move |tx| workers::create(tx, &w, at(0), None))
        .await
        .expect("store")
        .expect("created");

    let admit = |key: &'static str, m: &'static str| {
        let store = store.clone();
        let id = id.clone();
        async move {
            store
                .write(move |tx| workers::admit(tx, &id, key, &machine(m), at(5)))
                .await
                .expect("store")
        }
    };
    assert_eq!(
        admit("mk_wrong", "machine-a").await.map(|w| w.name),
        Err(AdmitRefusal::UnknownIdentity)
    );
    let first = admit("mk_precreated", "machine-a").await.expect("admitted");
    assert_eq!(
        first.machine_id,
        Some(machine("machine-a")),
        "bound on first connect"
    );
    assert!(admit("mk_precreated", "machine-a").await.is_ok());
    assert_eq!(
        admit("mk_precreated", "machine-b").await.map(|w| w.name),
        Err(AdmitRefusal::OtherMachine(name("pre")))
    );
    let missing = WorkerId::parse(&"0".repeat(32)).expect("id");
    let r = store
        .read(move |tx| workers::admit(tx, &missing, "k", &machine("machine-a"), at(5)))
        .await
        .expect("store");
    assert_eq!(r.map(|w| w.name), Err(AdmitRefusal::UnknownIdentity));
}

async fn revoke_and_remove_workers(store: Store) {
    let secret = make_token(&store, "tw", 60_000).await;
    let (req, key) = enrollment(&secret, "machine-a", 1);
    let enrolled = enroll(&store, req).await.expect("bound");
    let ev = audit("worker.revoke", "tw");
    let r = store
        .write(move |tx| workers::revoke(tx, &name("tw"), at(2), &ev))
        .await
        .expect("store")
        .expect("ok");
    assert!(r.changed);
    assert_eq!(r.id, enrolled.worker.id);
    let t = store
        .read(|tx| tx.get_token(&name("tw")))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        t.state_at(at(3)),
        TokenState::Revoked,
        "its token is revoked too"
    );
    let id = enrolled.worker.id.clone();
    let k = key.expose().to_owned();
    let r = store
        .read(move |tx| workers::admit(tx, &id, &k, &machine("machine-a"), at(3)))
        .await
        .expect("store");
    assert_eq!(r.map(|w| w.name), Err(AdmitRefusal::Revoked(name("tw"))));
    let ev = audit("worker.revoke", "tw");
    let again = store
        .write(move |tx| workers::revoke(tx, &name("tw"), at(4), &ev))
        .await
        .expect("store")
        .expect("ok");
    assert!(!again.changed);

    let ev = audit("worker.remove", "tw");
    let removed = store
        .write(move |tx| workers::remove(tx, &name("tw"), &ev))
        .await
        .expect("store");
    assert_eq!(removed, Ok(enrolled.worker.id));
    assert!(
        store
            .read(|tx| tx.get_worker_by_name(&name("tw")))
            .await
            .expect("get")
            .is_none()
    );
    let ev = audit("worker.remove", "tw");
    let removed = store
        .write(move |tx| workers::remove(tx, &name("tw"), &ev))
        .await
        .expect("store");
    assert_eq!(removed, Err(workers::WorkerRefusal::NotFound(name("tw"))));
}

async fn failed_write_rolls_back_alone(store: Store) {
    // Submit a failing and a succeeding write together, so that on a batching backend they share
    // one transaction: the failure must undo only its own changes.
    let failing = store.write(|tx| {
        tx.put_setting("doomed", "1")?;
        Err::<(), _>(StoreError::Conflict("deliberate".into()))
    });
    let succeeding = store.write(|tx| tx.put_setting("kept", "1"));
    let (f, s) = tokio::join!(failing, succeeding);
    assert!(matches!(f, Err(StoreError::Conflict(_))));
    s.expect("the other write commits");
    assert_eq!(
        store
            .read(|tx| tx.get_setting("doomed"))
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        store
            .read(|tx| tx.get_setting("kept"))
            .await
            .expect("read")
            .as_deref(),
        Some("1")
    );
}

async fn audit_filters(store: Store) {
    for (action, target) in [
        ("token.create", "a"),
        ("token.revoke", "a"),
        ("worker.revoke", "b_%"),
    ] {
        let ev = audit(action, target);
        store
            .write(move |tx| tx.insert_audit(&ev))
            .await
            .expect("audit");
    }
    let all = store
        .read(|tx| {
            tx.list_audit(&AuditFilter {
                limit: 10,
                ..Default::default()
            })
        })
        .await
        .expect("list");
    assert_eq!(all.len(), 3);
    assert!(all[0].seq > all[1].seq, "newest first");
    let tokens = store
        .read(|tx| {
            tx.list_audit(&AuditFilter {
                action_prefix: Some("token.".into()),
                limit: 10,
                ..Default::default()
            })
        })
        .await
        .expect("list");
    assert_eq!(tokens.len(), 2);
    let literal = store
        .read(|tx| {
            tx.list_audit(&AuditFilter {
                contains: Some("b_%".into()),
                limit: 10,
                ..Default::default()
            })
        })
        .await
        .expect("list");
    assert_eq!(
        literal.len(),
        1,
        "LIKE wildcards in the filter are matched literally"
    );
    let before = all[0].seq;
    let paged = store
        .read(move |tx| {
            tx.list_audit(&AuditFilter {
                before_seq: Some(before),
                limit: 1,
                ..Default::default()
            })
        })
        .await
        .expect("list");
    assert_eq!(paged.len(), 1);
    assert_eq!(paged[0].seq, all[1].seq);
}

async fn settings_round_trip(store: Store) {
    assert_eq!(
        store.read(|tx| tx.get_setting("k")).await.expect("read"),
        None
    );
    store
        .write(|tx| tx.put_setting("k", "v1"))
        .await
        .expect("write");
    store
        .write(|tx| tx.put_setting("k", "v2"))
        .await
        .expect("write");
    assert_eq!(
        store
            .read(|tx| tx.get_setting("k"))
            .await
            .expect("read")
            .as_deref(),
        Some("v2")
    );
}

async fn touch_keeps_the_latest(store: Store) {
    let w = precreated("seen");
    let id = w.id.clone();
    store
        .write(move |tx| workers::create(tx, &w, at(0), None))
        .await
        .expect("store")
        .expect("created");
    let seen = vec![(id.clone(), at(50)), (id.clone(), at(20))];
    store
        .write(move |tx| workers::touch_many(tx, &seen))
        .await
        .expect("touch");
    let w = store
        .read(move |tx| tx.get_worker(&id))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(w.last_seen_at, Some(at(50)));
}

fn secret_request(
    worker_name: &str,
    machine_id: &str,
    now: i64,
    verified: Timestamp,
) -> (SecretEnrollment, ApiKey) {
    let key = ApiKey::generate(&mut OsRng);
    let req = SecretEnrollment {
        name: name(worker_name),
        machine: machine(machine_id),
        labels: Labels::new(),
        now: at(now),
        verified_secret_set_at: verified,
        new_worker_id: WorkerId::parse(&muster_core::credentials::generate_id(&mut OsRng))
            .expect("id"),
        new_key: key.hash(),
        remote_addr: Some("127.0.0.3".into()),
    };
    (req, key)
}

type SecretResult = Result<(Enrolled, Option<WorkerId>), AutoRefusal>;

async fn secret_enroll(
    store: &Store,
    req: SecretEnrollment,
    connected: Option<WorkerId>,
) -> SecretResult {
    store
        .write(move |tx| {
            enrollment::enroll(tx, &req, &|id: &WorkerId| connected.as_ref() == Some(id))
        })
        .await
        .expect("store")
}

async fn change(
    store: &Store,
    change: enrollment::Change,
    now: i64,
) -> Result<enrollment::Status, enrollment::ChangeRefusal> {
    let ev = audit("enrollment.change", "auto-enrollment");
    store
        .write(move |tx| enrollment::change(tx, &change, at(now), &ev))
        .await
        .expect("store")
}

fn stub_hash() -> SlowHash {
    SlowHash::from_stored(
        "$argon2id$v=19$m=19456,t=2,p=1$c3R1YnN0dWI$c3R1YnN0dWJzdHVic3R1YnN0dWI".into(),
    )
}

async fn secret_enrollment_settings_and_guard_rails(store: Store) {
    let status = store.read(enrollment::status).await.expect("status");
    assert!(!status.settings.enabled, "off by default");
    let (req, _) = secret_request("w1", "machine-a", 1, at(0));
    assert_eq!(
        secret_enroll(&store, req, None).await.map(|_| ()),
        Err(AutoRefusal::Disabled)
    );

    let refused = change(
        &store,
        enrollment::Change {
            enabled: Some(true),
            ..Default::default()
        },
        1,
    )
    .await;
    assert_eq!(
        refused.map(|_| ()),
        Err(enrollment::ChangeRefusal::NoSecret),
        "no secret, no enabling"
    );

    let window = enrollment::Window {
        closes_at: Some(at(10_000)),
        max_enrollments: Some(2),
        name_pattern: Some(NamePattern::parse("w*").expect("pattern")),
    };
    let on = enrollment::Change {
        enabled: Some(true),
        secret: Some(stub_hash()),
        new_window: Some(window),
    };
    let status = change(&store, on, 5).await.expect("enabled");
    assert!(status.settings.enabled);
    assert_eq!(status.settings.secret_set_at, Some(at(5)));
    let set_at = at(5);

    let (req, _) = secret_request("x1", "machine-a", 6, set_at);
    assert!(matches!(
        secret_enroll(&store, req, None).await,
        Err(AutoRefusal::NameNotAllowed { .. })
    ));
    let (req, key) = secret_request("w1", "machine-a", 6, set_at);
    let (enrolled, superseded) = secret_enroll(&store, req, None).await.expect("enrolled");
    assert_eq!(superseded, None);
    assert_eq!(enrolled.worker.enrolled_via, EnrolledVia::Secret);
    assert!(enrolled.worker.key_hash.matches(key.expose()));
    let (req, _) = secret_request("w2", "machine-b", 7, set_at);
    secret_enroll(&store, req, None)
        .await
        .expect("second enrollment");
    let (req, _) = secret_request("w3", "machine-c", 8, set_at);
    assert_eq!(
        secret_enroll(&store, req, None).await.map(|_| ()),
        Err(AutoRefusal::LimitReached(2))
    );
    let status = store.read(enrollment::status).await.expect("status");
    assert_eq!((status.enrolled_count, status.enrolled_in_window), (2, 2));

    // A new window resets the count; its deadline closes it.
    let reopen = enrollment::Change {
        enabled: Some(true),
        new_window: Some(enrollment::Window {
            closes_at: Some(at(100)),
            ..Default::default()
        }),
        ..Default::default()
    };
    change(&store, reopen, 50).await.expect("reopened");
    let (req, _) = secret_request("w3", "machine-c", 60, set_at);
    secret_enroll(&store, req, None)
        .await
        .expect("inside the new window");
    let (req, _) = secret_request("w4", "machine-d", 100, set_at);
    assert_eq!(
        secret_enroll(&store, req, None).await.map(|_| ()),
        Err(AutoRefusal::WindowClosed(at(100)))
    );

    // Rotation: a presentation verified against the old secret no longer counts.
    let rotate = enrollment::Change {
        secret: Some(stub_hash()),
        new_window: Some(Default::default()),
        ..Default::default()
    };
    let status = change(&store, rotate, 200).await.expect("rotated");
    assert!(status.settings.enabled, "rotation keeps auto-enrollment on");
    let (req, _) = secret_request("w5", "machine-e", 201, set_at);
    assert_eq!(
        secret_enroll(&store, req, None).await.map(|_| ()),
        Err(AutoRefusal::SecretMismatch)
    );
    let (req, _) = secret_request("w5", "machine-e", 201, at(200));
    secret_enroll(&store, req, None)
        .await
        .expect("the new secret works");

    change(
        &store,
        enrollment::Change {
            enabled: Some(false),
            ..Default::default()
        },
        300,
    )
    .await
    .expect("disabled");
    let (req, _) = secret_request("w6", "machine-f", 301, at(200));
    assert_eq!(
        secret_enroll(&store, req, None).await.map(|_| ()),
        Err(AutoRefusal::Disabled)
    );
    let ids: Vec<_> = store
        .read(|tx| tx.list_workers())
        .await
        .expect("list")
        .into_iter()
        .map(|w| w.name.to_string())
        .collect();
    assert_eq!(
        ids,
        ["w1", "w2", "w3", "w5"],
        "enrolled workers are untouched by disable and rotate"
    );

    let records = store
        .read(|tx| {
            tx.list_audit(&AuditFilter {
                action_prefix: Some("enroll.secret".into()),
                limit: 50,
                ..Default::default()
            })
        })
        .await
        .expect("audit");
    assert_eq!(records.len(), 10, "every attempt is audited");
    assert!(records.iter().any(|r| {
        r.event.outcome == Outcome::Refused
            && r.event
                .detail
                .contains("does not match the allowed pattern")
    }));
}

async fn secret_enrollment_supersedes_only_when_allowed(store: Store) {
    let on = enrollment::Change {
        enabled: Some(true),
        secret: Some(stub_hash()),
        new_window: Some(Default::default()),
    };
    let set_at = change(&store, on, 0)
        .await
        .expect("enabled")
        .settings
        .secret_set_at
        .expect("set");
    let (req, old_key) = secret_request("node", "machine-a", 1, set_at);
    let (first, _) = secret_enroll(&store, req, None).await.expect("enrolled");

    // Another machine right after: the name is taken (it has not even connected yet).
    let (req, _) = secret_request("node", "machine-b", 2, set_at);
    assert_eq!(
        secret_enroll(&store, req, None).await.map(|_| ()),
        Err(AutoRefusal::NameJustTaken(name("node")))
    );
    // Connected right now: refused.
    let (req, _) = secret_request("node", "machine-b", 120_000, set_at);
    assert_eq!(
        secret_enroll(&store, req, Some(first.worker.id.clone()))
            .await
            .map(|_| ()),
        Err(AutoRefusal::NameInUseConnected(name("node")))
    );
    // Not connected, later: the new enrollment supersedes the old identity.
    let (req, _) = secret_request("node", "machine-b", 120_000, set_at);
    let (second, superseded) = secret_enroll(&store, req, None).await.expect("superseded");
    assert_eq!(superseded, Some(first.worker.id.clone()));
    assert_ne!(second.worker.id, first.worker.id);
    let old_id = first.worker.id.clone();
    let k = old_key.expose().to_owned();
    let admitted = store
        .read(move |tx| workers::admit(tx, &old_id, &k, &machine("machine-a"), at(120_001)))
        .await
        .expect("store");
    assert_eq!(
        admitted.map(|w| w.name),
        Err(AdmitRefusal::UnknownIdentity),
        "the old key is useless"
    );
    let audit_rows = store
        .read(|tx| {
            tx.list_audit(&AuditFilter {
                action_prefix: Some("worker.superseded".into()),
                limit: 5,
                ..Default::default()
            })
        })
        .await
        .expect("audit");
    assert_eq!(audit_rows.len(), 1);
    assert!(
        audit_rows[0]
            .event
            .detail
            .contains(first.worker.id.as_str())
    );

    // A name held by a token-enrolled worker is never taken over by the secret.
    let secret = make_token(&store, "tok-node", 600_000).await;
    let (req, _) = enrollment(&secret, "machine-t", 1);
    enroll(&store, req).await.expect("token enrolled");
    let (req, _) = secret_request("tok-node", "machine-x", 300_000, set_at);
    assert!(matches!(
        secret_enroll(&store, req, None).await,
        Err(AutoRefusal::NameTakenOtherKind { .. })
    ));
}

pub fn job(id: &str, created: i64) -> Job {
    Job {
        id: JobId::parse(id).expect("job id"),
        command: vec!["echo".into(), "hi".into()],
        env: [("K".to_owned(), "secret-value".to_owned())].into(),
        selector: Selector {
            worker: None,
            labels: Labels::parse_list("pool=a").expect("labels"),
        },
        timeout: Some(Duration::from_secs(30)),
        queue_deadline: at(created + 600_000),
        state: JobState::Queued,
        worker_id: None,
        worker_name: None,
        created_at: at(created),
        started_at: None,
        finished_at: None,
        exit_code: None,
        reason: None,
        output_bytes: 0,
        truncated: false,
        dispatcher: None,
        ending: None,
    }
}

async fn submit_job(store: &Store, j: Job) {
    let ev = audit("job.submit", j.id.as_str());
    store
        .write(move |tx| jobs::submit(tx, &j, &ev))
        .await
        .expect("submitted");
}

async fn jobs_start_once_end_once_and_recover(store: Store) {
    for (i, id) in [
        "00000000000000a1",
        "00000000000000a2",
        "00000000000000a3",
        "00000000000000a4",
    ]
    .iter()
    .enumerate()
    {
        submit_job(&store, job(id, i as i64)).await;
    }
    let got = store
        .read(|tx| tx.get_job(&JobId::parse("00000000000000a1").expect("id")))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got, job("00000000000000a1", 0), "a job round-trips whole");
    let queued = store
        .read(|tx| tx.jobs_in_state(JobState::Queued))
        .await
        .expect("queued");
    assert_eq!(
        queued.iter().map(|j| j.id.to_string()).collect::<Vec<_>>()[0],
        "00000000000000a1",
        "oldest first"
    );

    let w = precreated("runner");
    let (wid, wname) = (w.id.clone(), w.name.clone());
    let a1 = JobId::parse("00000000000000a1").expect("id");
    let assignment = jobs::Assignment {
        job: a1.clone(),
        worker: wid.clone(),
        worker_name: wname.clone(),
        dispatcher: "replica-a".into(),
    };
    let twice = vec![assignment.clone(), assignment];
    let started = store
        .write(move |tx| jobs::start_many(tx, &twice, at(10)))
        .await
        .expect("start");
    assert_eq!(started, [true, false], "a job starts at most once");

    let id = a1.clone();
    let ended = store
        .write(move |tx| jobs::end(tx, &id, &Ending::Exited(3), at(20)))
        .await
        .expect("end")
        .expect("ended");
    assert_eq!(
        (ended.state, ended.exit_code, ended.worker_name.clone()),
        (JobState::Failed, Some(3), Some(wname.clone()))
    );
    assert_eq!(
        ended.ending,
        Some(EndingKind::Exited(3)),
        "the kind is kept"
    );
    let id = a1.clone();
    let again = store
        .write(move |tx| jobs::end(tx, &id, &Ending::Lost("late".into()), at(30)))
        .await
        .expect("end");
    assert_eq!(again, None, "an ended job does not end again");

    // Cancel: queued → cancelled; running → reported; ended → reported.
    let a2 = JobId::parse("00000000000000a2").expect("id");
    let ev = audit("job.cancel", "a2");
    let id = a2.clone();
    let c = store
        .write(move |tx| jobs::cancel(tx, &id, at(40), &ev))
        .await
        .expect("cancel");
    assert!(
        matches!(c, jobs::Cancel::Dequeued(ref j)
            if j.state == JobState::Cancelled && j.ending == Some(EndingKind::Cancelled)),
        "{c:?}"
    );
    let a3 = JobId::parse("00000000000000a3").expect("id");
    let start = vec![
        jobs::Assignment {
            job: a3.clone(),
            worker: wid.clone(),
            worker_name: wname.clone(),
            dispatcher: "replica-a".into(),
        },
        // Another replica's running job: not this replica's to write off at its restart.
        jobs::Assignment {
            job: JobId::parse("00000000000000a4").expect("id"),
            worker: wid.clone(),
            worker_name: wname.clone(),
            dispatcher: "replica-b".into(),
        },
    ];
    store
        .write(move |tx| jobs::start_many(tx, &start, at(50)))
        .await
        .expect("start");
    let ev = audit("job.cancel", "a3");
    let id = a3.clone();
    let c = store
        .write(move |tx| jobs::cancel(tx, &id, at(60), &ev))
        .await
        .expect("cancel");
    assert!(matches!(c, jobs::Cancel::Running(_)), "{c:?}");
    let ev = audit("job.cancel", "a1");
    let c = store
        .write(move |tx| jobs::cancel(tx, &a1, at(60), &ev))
        .await
        .expect("cancel");
    assert!(matches!(c, jobs::Cancel::AlreadyEnded(_)), "{c:?}");

    // Restart of replica a: its running job is lost; replica b's is not.
    let lost = store
        .write(|tx| jobs::lose_running(tx, "replica-a", at(70)))
        .await
        .expect("recover");
    assert_eq!(lost, std::slice::from_ref(&a3));
    let j3 = store
        .read(move |tx| tx.get_job(&a3))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(j3.state, JobState::Lost);
    assert!(
        j3.reason
            .as_deref()
            .unwrap_or_default()
            .contains("restarted")
    );
    let queued = store
        .read(|tx| tx.jobs_in_state(JobState::Queued))
        .await
        .expect("queued");
    assert!(queued.is_empty());
    let still = store
        .read(|tx| tx.jobs_in_state(JobState::Running))
        .await
        .expect("running");
    assert_eq!(
        still
            .iter()
            .map(|j| (j.id.to_string(), j.dispatcher.clone()))
            .collect::<Vec<_>>(),
        [("00000000000000a4".to_owned(), Some("replica-b".to_owned()))],
        "another replica's running job is left alone"
    );
    let listed = store
        .read(|tx| {
            tx.list_jobs(&JobFilter {
                state: None,
                worker: None,
                limit: 2,
            })
        })
        .await
        .expect("list");
    assert_eq!(
        listed.iter().map(|j| j.id.to_string()).collect::<Vec<_>>(),
        ["00000000000000a4", "00000000000000a3"]
    );
    let by_worker = store
        .read(move |tx| {
            tx.list_jobs(&JobFilter {
                state: Some(JobState::Lost),
                worker: Some(wname),
                limit: 10,
            })
        })
        .await
        .expect("list");
    assert_eq!(by_worker.len(), 1);
}

async fn job_output_is_stored_in_order(store: Store) {
    submit_job(&store, job("00000000000000b1", 0)).await;
    let id = JobId::parse("00000000000000b1").expect("id");
    let jid = id.clone();
    store
        .write(move |tx| {
            for seq in 1..=5u64 {
                tx.append_output(
                    &jid,
                    seq,
                    if seq % 2 == 0 { 2 } else { 1 },
                    format!("chunk{seq}\0").as_bytes(),
                )?;
            }
            tx.set_output_stats(&jid, 35, true)
        })
        .await
        .expect("output");
    let jid = id.clone();
    let chunks = store
        .read(move |tx| tx.read_output(&jid, 2, 2))
        .await
        .expect("read");
    assert_eq!(chunks.iter().map(|c| c.seq).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(chunks[1].stream, 2);
    assert_eq!(chunks[0].data, b"chunk3\0", "binary-safe");
    let j = store
        .read(move |tx| tx.get_job(&id))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((j.output_bytes, j.truncated), (35, true));
}

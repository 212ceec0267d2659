//! Editions and licenses: Community Edition refuses every join and changes nothing; the trial
//! runs once per fleet; a license replaces the trial and is removed; seats count the external
//! workers that can still connect and are judged inside the enrollment, also when enrollments
//! race; a license past its grace refuses joins but never a worker that joined.
//! (Over 400 lines: one case per rule, sharing the helpers at the top.)

use std::time::Duration;

use muster_core::enrollment::AutoRefusal;
use muster_core::license::{GRACE, Grant, JoinRefusal, License, TRIAL};
use muster_core::worker::AdmitRefusal;
use muster_core::{EnrolledVia, Timestamp, TokenSecret, WorkerId};

use super::identity::{connection, open};
use super::secret_enrollment::{change, secret_enroll, secret_request, stub_hash};
use super::{
    at, audit, create_precreated, enroll, enrollment, licensed, machine, make_token, name,
    precreated,
};
use crate::flows::identity::ConnectRefusal;
use crate::flows::license::{self, Status, TrialRefusal};
use crate::flows::tokens::TokenEnrollRefusal;
use crate::flows::{self, workers};
use crate::{AuditFilter, Store};

const DAY_MS: i64 = 24 * 3600 * 1000;

fn terms(max_workers: Option<u64>, expires_in_days: i64) -> License {
    License {
        id: "lic-test".into(),
        licensee: "ACME".into(),
        max_workers,
        issued_at: at(0),
        expires_at: at(expires_in_days * DAY_MS),
        issuer: "k4.pid.test".into(),
    }
}

pub async fn install(store: &Store, license: License) -> Status {
    let ev = audit("license.changed", "license");
    store
        .write(move |tx| license::install(tx, &license, "v4.public.test", at(0), &ev))
        .await
        .expect("store")
}

/// The details of the audit records of license changes, newest first.
async fn license_details(store: &Store) -> Vec<String> {
    let records = store
        .read(|tx| {
            tx.list_audit(&AuditFilter {
                action_prefix: Some("license.".into()),
                limit: 10,
                ..Default::default()
            })
        })
        .await
        .expect("audit");
    records.into_iter().map(|r| r.event.detail).collect()
}

async fn status(store: &Store, now: Timestamp) -> Status {
    store
        .read(move |tx| license::status(tx, now))
        .await
        .expect("status")
}

async fn start_trial(store: &Store, now: i64) -> Result<Status, TrialRefusal> {
    let ev = audit("license.changed", "license");
    store
        .write(move |tx| license::start_trial(tx, at(now), &ev))
        .await
        .expect("store")
}

async fn remove(store: &Store) -> (bool, Status) {
    let ev = audit("license.changed", "license");
    store
        .write(move |tx| license::remove(tx, at(0), &ev))
        .await
        .expect("store")
}

/// Turns auto-enrollment on with a stub secret; returns when the secret was set.
async fn secret_on(store: &Store) -> Timestamp {
    let on = flows::enrollment::Change {
        enabled: Some(true),
        secret: Some(stub_hash()),
        new_window: Some(Default::default()),
    };
    change(store, on, 0)
        .await
        .expect("enabled")
        .settings
        .secret_set_at
        .expect("set")
}

async fn token_enroll(
    store: &Store,
    secret: &TokenSecret,
    m: &str,
    now: i64,
) -> Result<WorkerId, TokenEnrollRefusal> {
    let (req, _) = enrollment(secret, m, now);
    enroll(store, req).await.map(|e| e.worker.id)
}

pub async fn community_edition_refuses_every_join_and_changes_nothing(store: Store) {
    let now = at(5);
    assert_eq!(status(&store, now).await.grant, None);
    // A token: refused, and still unused.
    let secret = make_token(&store, "tok", 60_000).await;
    assert_eq!(
        token_enroll(&store, &secret, "machine-a", 5).await,
        Err(TokenEnrollRefusal::License(JoinRefusal::Community))
    );
    let token = store
        .read(|tx| tx.get_token(&name("tok")))
        .await
        .expect("store")
        .expect("token");
    assert_eq!(token.bound_machine, None, "the token was not bound");
    // The secret: refused.
    let set_at = secret_on(&store).await;
    let (req, _) = secret_request("auto", "machine-b", 5, set_at);
    assert_eq!(
        secret_enroll(&store, req, None).await.map(|_| ()),
        Err(AutoRefusal::License(JoinRefusal::Community))
    );
    // A pre-created worker's first connection: refused, and still unbound.
    let worker = create_precreated(&store, "pre").await;
    let (c, _) = connection(&worker, "machine-a", None);
    assert_eq!(
        open(&store, c).await.map(|_| ()),
        Err(ConnectRefusal::Admit(AdmitRefusal::License(
            JoinRefusal::Community
        )))
    );
    let id = worker.id.clone();
    assert_eq!(
        store
            .write(move |tx| workers::admit(tx, &id, "mk_precreated", &machine("machine-a"), now))
            .await
            .expect("store")
            .map(|w| w.name),
        Err(AdmitRefusal::License(JoinRefusal::Community)),
        "the protocol-1 admission too"
    );
    let workers = store.read(|tx| tx.list_workers()).await.expect("list");
    assert_eq!(workers.len(), 1, "only the pre-created worker exists");
    assert_eq!(workers[0].machine_id, None, "and it is not bound");
}

pub async fn the_trial_runs_once_per_fleet(store: Store) {
    let started = start_trial(&store, 10)
        .await
        .expect("the first trial starts");
    let trial = started.trial.expect("recorded");
    assert_eq!(trial.started_at, at(10));
    assert_eq!(trial.expires_at, at(10).saturating_add(TRIAL));
    assert_eq!(started.grant, Some(Grant::Trial(trial)));
    assert_eq!(
        start_trial(&store, 20).await,
        Err(TrialRefusal::AlreadyRan(trial))
    );
    // Removing it ends it for good.
    let (removed, after) = remove(&store).await;
    assert!(removed);
    assert_eq!(after.grant, None);
    assert_eq!(after.trial, Some(trial), "the record stays");
    assert_eq!(
        start_trial(&store, 30).await,
        Err(TrialRefusal::AlreadyRan(trial))
    );
    let (removed, _) = remove(&store).await;
    assert!(!removed, "nothing left to remove");
    let details = license_details(&store).await;
    assert_eq!(details.len(), 3, "{details:?}");
    assert!(details[0].contains("nothing changed"), "{details:?}");
    assert!(details[1].contains("ended the trial"), "{details:?}");
    assert!(
        details[2].starts_with("started the 30-day trial"),
        "{details:?}"
    );
}

pub async fn an_installed_license_replaces_the_trial_until_removed(store: Store) {
    start_trial(&store, 0).await.expect("trial");
    let installed = install(&store, terms(Some(5), 365)).await;
    assert_eq!(installed.grant, Some(Grant::Licensed(terms(Some(5), 365))));
    assert!(installed.trial.is_some(), "the trial's record stays");
    // The trial is for fleets without a license; and it already ran.
    let (removed, _) = remove(&store).await;
    assert!(removed);
    assert!(matches!(
        start_trial(&store, 5).await,
        Err(TrialRefusal::AlreadyRan(_))
    ));

    // Installing again replaces what is in force.
    let fresh = install(&store, terms(None, 30)).await;
    assert!(matches!(fresh.grant, Some(Grant::Licensed(_))));
    let details = license_details(&store).await;
    assert!(
        details[0].starts_with("installed license `lic-test` for `ACME` (no worker limit"),
        "{details:?}"
    );
}

pub async fn a_trial_is_refused_over_an_installed_license(store: Store) {
    install(&store, terms(Some(2), 365)).await;
    assert_eq!(
        start_trial(&store, 5).await,
        Err(TrialRefusal::Licensed("ACME".into()))
    );
    assert_eq!(status(&store, at(5)).await.trial, None, "nothing recorded");
}

pub async fn seats_count_the_external_workers_that_can_still_connect(store: Store) {
    licensed(&store).await;
    let seats = |now: i64| {
        let store = store.clone();
        async move { status(&store, at(now)).await.workers_used }
    };
    assert_eq!(seats(1).await, 0);
    // The built-in worker never takes a seat.
    let builtin = muster_core::Worker {
        name: name("builtin"),
        enrolled_via: EnrolledVia::Builtin,
        machine_id: Some(machine("machine-s")),
        ..precreated("builtin")
    };
    store
        .write(move |tx| workers::create(tx, &builtin, at(0), None))
        .await
        .expect("store")
        .expect("created");
    assert_eq!(seats(1).await, 0);
    // A pre-created worker takes one as soon as it exists.
    create_precreated(&store, "pre").await;
    assert_eq!(seats(1).await, 1);
    // A token's worker takes one until its token expires.
    let secret = make_token(&store, "tok", 60_000).await;
    token_enroll(&store, &secret, "machine-a", 5)
        .await
        .expect("enrolled");
    assert_eq!(seats(10).await, 2);
    assert_eq!(seats(60_000).await, 1, "expired with its token");
    // Counting can stop early: a join only asks whether the others leave a seat.
    let capped = store
        .read(|tx| tx.count_seated_workers(at(10), 1))
        .await
        .expect("store");
    assert_eq!(capped, 1);
    // A revoked worker frees its seat.
    let ev = audit("worker.revoke", "pre");
    store
        .write(move |tx| workers::revoke(tx, &name("pre"), at(11), &ev))
        .await
        .expect("store")
        .expect("revoked");
    assert_eq!(seats(12).await, 1);
}

pub async fn seats_are_judged_in_the_enrollment(store: Store) {
    install(&store, terms(Some(2), 365)).await;
    let set_at = secret_on(&store).await;
    let first = make_token(&store, "t1", 3_600_000).await;
    token_enroll(&store, &first, "machine-a", 5)
        .await
        .expect("first seat");
    let (req, _) = secret_request("auto", "machine-b", 6, set_at);
    secret_enroll(&store, req, None).await.expect("second seat");
    let third = make_token(&store, "t3", 3_600_000).await;
    assert_eq!(
        token_enroll(&store, &third, "machine-c", 7).await,
        Err(TokenEnrollRefusal::License(JoinRefusal::SeatsExhausted {
            used: 2,
            limit: 2
        }))
    );
    let (req, _) = secret_request("auto-2", "machine-d", 7, set_at);
    assert_eq!(
        secret_enroll(&store, req, None).await.map(|_| ()),
        Err(AutoRefusal::License(JoinRefusal::SeatsExhausted {
            used: 2,
            limit: 2
        }))
    );
    // A worker coming back keeps its seat: resuming with its token, or superseding itself.
    token_enroll(&store, &first, "machine-a", 8)
        .await
        .expect("the same machine resumes");
    let (req, _) = secret_request("auto", "machine-e", 120_000, set_at);
    secret_enroll(&store, req, None)
        .await
        .expect("a re-enrollment takes its predecessor's seat");
    // A pre-created worker counts once it exists; with the others taking every seat, its first
    // connection is refused.
    let pre = create_precreated(&store, "pre").await;
    let (c, _) = connection(&pre, "machine-a", None);
    assert_eq!(
        open(&store, c).await.map(|_| ()),
        Err(ConnectRefusal::Admit(AdmitRefusal::License(
            JoinRefusal::SeatsExhausted { used: 3, limit: 2 }
        )))
    );
    // However far over the limit pre-created workers go, a refusal names the exact count.
    for extra in ["pre-2", "pre-3", "pre-4"] {
        create_precreated(&store, extra).await;
    }
    let (c, _) = connection(&pre, "machine-a", None);
    assert_eq!(
        open(&store, c).await.map(|_| ()),
        Err(ConnectRefusal::Admit(AdmitRefusal::License(
            JoinRefusal::SeatsExhausted { used: 6, limit: 2 }
        )))
    );
    for extra in ["pre-2", "pre-3", "pre-4"] {
        let ev = audit("worker.remove", extra);
        store
            .write(move |tx| workers::remove(tx, &name(extra), &ev))
            .await
            .expect("store")
            .expect("removed");
    }
    // Revoking a worker frees a seat at once.
    let ev = audit("worker.revoke", "t1");
    store
        .write(move |tx| workers::revoke(tx, &name("t1"), at(120_001), &ev))
        .await
        .expect("store")
        .expect("revoked");
    let (c, _) = connection(&pre, "machine-a", None);
    assert!(open(&store, c).await.is_ok(), "the freed seat is taken");
}

pub async fn a_license_past_its_grace_refuses_joins_but_not_workers_that_joined(store: Store) {
    install(&store, terms(None, 10)).await;
    let pre = create_precreated(&store, "pre").await;
    let (c, _) = connection(&pre, "machine-a", None);
    open(&store, c).await.expect("joined while valid");
    let expired = at(10 * DAY_MS);
    let past_grace = expired.saturating_add(GRACE);
    // In grace: joining stays open.
    let secret = make_token(&store, "late", (40 * DAY_MS) as u64).await;
    let in_grace = (10 * DAY_MS) + 1;
    token_enroll(&store, &secret, "machine-b", in_grace)
        .await
        .expect("joins in grace");
    // Past it: refused, naming the dates.
    let other = make_token(&store, "later", (40 * DAY_MS) as u64).await;
    let when = past_grace.unix_millis() - at(0).unix_millis();
    let refusal = token_enroll(&store, &other, "machine-c", when)
        .await
        .expect_err("refused past its grace");
    assert_eq!(
        refusal,
        TokenEnrollRefusal::License(JoinRefusal::Expired {
            what: "the license for `ACME`".into(),
            expired_at: expired,
            grace_ended_at: past_grace,
        })
    );
    // The worker that joined still connects, and the token's worker still resumes.
    let id = pre.id.clone();
    let admitted = store
        .write(move |tx| {
            workers::admit(
                tx,
                &id,
                "mk_precreated",
                &machine("machine-a"),
                past_grace.saturating_add(Duration::from_secs(1)),
            )
        })
        .await
        .expect("store");
    assert!(admitted.is_ok(), "{admitted:?}");
    token_enroll(&store, &secret, "machine-b", when + 1)
        .await
        .expect("a worker that joined comes back with its token");
}

pub async fn a_refused_join_is_remembered_for_the_banner(store: Store) {
    assert_eq!(status(&store, at(0)).await.last_refused, None);
    store
        .write(|tx| license::note_refusal(tx, at(3), "no seats"))
        .await
        .expect("store");
    let noted = status(&store, at(4)).await.last_refused.expect("noted");
    assert_eq!(noted.at, at(3));
    assert_eq!(noted.message, "no seats");
}

/// Sends `attempts` machines, each with its own token, to enroll at once, spread over `stores`
/// (one store, or replicas sharing one database), under a license of `seats` workers. Returns
/// how many joined; every other must be refused for want of a seat.
pub async fn race_for_seats(stores: &[Store], seats: u64, attempts: usize) -> usize {
    install(&stores[0], terms(Some(seats), 365)).await;
    let mut secrets = Vec::new();
    for i in 0..attempts {
        secrets.push(make_token(&stores[0], &format!("seat-{i:02}"), 3_600_000).await);
    }
    let tasks: Vec<_> = secrets
        .into_iter()
        .enumerate()
        .map(|(i, secret)| {
            let store = stores[i % stores.len()].clone();
            tokio::spawn(async move {
                token_enroll(&store, &secret, &format!("seat-m-{i:02}"), 5).await
            })
        })
        .collect();
    let mut joined = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => joined += 1,
            Err(TokenEnrollRefusal::License(JoinRefusal::SeatsExhausted { limit, .. })) => {
                assert_eq!(limit, seats);
            }
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    for store in stores {
        assert_eq!(
            status(store, at(6)).await.workers_used,
            joined as u64,
            "every replica counts the same seats"
        );
    }
    joined
}

pub async fn concurrent_enrollments_never_exceed_the_seats(store: Store) {
    assert_eq!(race_for_seats(&[store], 3, 12).await, 3);
}

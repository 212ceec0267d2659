//! Workers: admitting a connection (key, machine, binding a pre-created worker on first
//! connect), revoking and removing (never the built-in worker), and last-seen times that only
//! move forward.

use muster_core::worker::AdmitRefusal;
use muster_core::{EnrolledVia, TokenState, Worker, WorkerId};

use super::{
    at, audit, create_precreated, enroll, enrollment, machine, make_token, name, precreated,
};
use crate::Store;
use crate::flows::workers;

pub async fn admit_checks_key_machine_and_binds_precreated(store: Store) {
    super::licensed(&store).await;
    let id = create_precreated(&store, "pre").await.id;

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

pub async fn revoke_and_remove_workers(store: Store) {
    super::licensed(&store).await;
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

pub async fn touch_keeps_the_latest(store: Store) {
    let id = create_precreated(&store, "seen").await.id;
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

pub async fn the_builtin_worker_is_neither_revoked_nor_removed(store: Store) {
    let builtin = Worker {
        enrolled_via: EnrolledVia::Builtin,
        ..precreated("local")
    };
    let id = builtin.id.clone();
    store
        .write(move |tx| tx.insert_worker(&builtin))
        .await
        .expect("store");
    let ev = audit("worker.revoke", "local");
    let revoked = store
        .write(move |tx| workers::revoke(tx, &name("local"), at(1), &ev))
        .await
        .expect("store");
    assert_eq!(revoked, Err(workers::WorkerRefusal::Builtin));
    let ev = audit("worker.remove", "local");
    let removed = store
        .write(move |tx| workers::remove(tx, &name("local"), &ev))
        .await
        .expect("store");
    assert_eq!(removed, Err(workers::WorkerRefusal::Builtin));
    let stored = store
        .read(move |tx| tx.get_worker(&id))
        .await
        .expect("get")
        .expect("still there");
    assert_eq!(
        (stored.enrolled_via, stored.revoked_at),
        (EnrolledVia::Builtin, None)
    );
}

/// Removing a token-enrolled worker revokes its token: the machine it was bound to cannot
/// present the token again and come back as a new worker.
pub async fn removing_a_worker_keeps_its_token_from_bringing_it_back(store: Store) {
    super::licensed(&store).await;
    let secret = make_token(&store, "gone", 60_000).await;
    let (req, _) = enrollment(&secret, "machine-a", 1);
    enroll(&store, req).await.expect("bound");
    let ev = audit("worker.remove", "gone");
    store
        .write(move |tx| workers::remove(tx, &name("gone"), &ev))
        .await
        .expect("store")
        .expect("removed");
    let (again, _) = enrollment(&secret, "machine-a", 2);
    assert_eq!(
        enroll(&store, again).await.map(|e| e.worker.name),
        Err(crate::flows::tokens::TokenEnrollRefusal::Token(
            muster_core::token::Refusal::Revoked(name("gone"))
        ))
    );
    assert!(
        store
            .read(|tx| tx.get_worker_by_name(&name("gone")))
            .await
            .expect("get")
            .is_none(),
        "the worker did not come back"
    );
}

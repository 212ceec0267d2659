//! Enrolling with a token: the first machine binds it and the same machine resumes; another
//! machine, an unknown token, a wrong secret, an expired or a revoked token are refused; of
//! machines racing for one token, exactly one wins.

use muster_core::audit::Outcome;
use muster_core::token::Refusal;
use muster_core::{EnrolledVia, TokenSecret, TokenState};
use rand::rngs::OsRng;

use super::{at, audit, enroll, enrollment, machine, make_token, name};
use crate::flows::tokens::{self, TokenEnrollRefusal};
use crate::{AuditFilter, Store};

pub async fn enroll_binds_then_resumes_and_refuses_others(store: Store) {
    super::licensed(&store).await;
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
    // The refusal changed nothing and is left to the server, which aggregates refused attempts.
    assert_eq!(records.len(), 2, "each enrollment is audited with it");
    assert!(records.iter().all(|r| r.event.outcome == Outcome::Ok));
    assert!(
        records[0].event.detail.contains("resumed"),
        "{:?}",
        records[0]
    );
    assert_eq!(records[0].event.remote_addr.as_deref(), Some("127.0.0.2"));
    for r in &records {
        assert!(!r.event.detail.contains(secret.secret()));
    }
}

pub async fn enroll_refuses_unknown_wrong_expired_revoked(store: Store) {
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

pub async fn racing_machines_exactly_one_wins(store: Store) {
    super::licensed(&store).await;
    let secret = make_token(&store, "race", 60_000).await;
    let winners = race_to_enroll(std::slice::from_ref(&store), &secret, "machine").await;
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

/// Sends 16 machines (`{machines}-00` to `{machines}-15`) to enroll with `secret` at once, spread
/// over `stores` (one store, or replicas sharing one database), and returns how many won. Every
/// other machine must be refused because the token is bound to another machine.
pub async fn race_to_enroll(stores: &[Store], secret: &TokenSecret, machines: &str) -> usize {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let (req, _) = enrollment(secret, &format!("{machines}-{i:02}"), 5);
            tokio::spawn(async move { enroll(&store, req).await })
        })
        .collect();
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
    winners
}

//! Tokens: create, get and list; one namespace with workers; revoking in every state.

use std::time::Duration;

use muster_core::token::RevokeError;
use muster_core::{Labels, SecretHash, Token, TokenState};

use super::{at, audit, enroll, enrollment, make_token, name, precreated};
use crate::Store;
use crate::flows::tokens;
use crate::flows::workers;

pub async fn token_create_get_list(store: Store) {
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

pub async fn token_names_are_unique_across_workers(store: Store) {
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

pub async fn revoke_token_transitions(store: Store) {
    super::licensed(&store).await;
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

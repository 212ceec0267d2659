//! Webhooks and their outbox: an event's deliveries commit with it (and roll back with it), go
//! to the webhooks that want it, are claimed by one sender at a time, are never sent again once
//! delivered, and keep a log.

use muster_core::audit::Outcome;
use muster_core::events::EventType;

use super::{at, audit};
use crate::flows::webhooks;
use crate::{Attempt, AttemptNext, DeliveryState, Store, StoreError, Webhook};

fn webhook(id: &str, events: Vec<EventType>) -> Webhook {
    Webhook {
        id: id.into(),
        url: format!("https://example.test/{id}"),
        secret: format!("secret-of-{id}"),
        events,
        created_at: at(0),
    }
}

async fn add(store: &Store, w: Webhook) {
    let ev = audit("webhook.create", &w.id);
    store
        .write(move |tx| webhooks::create(tx, &w, &ev))
        .await
        .expect("create webhook");
}

async fn pending(store: &Store, id: &'static str) -> Vec<crate::Delivery> {
    store
        .read(move |tx| tx.list_deliveries(id, None, 100))
        .await
        .expect("deliveries")
}

pub async fn events_fan_out_to_the_webhooks_that_want_them(store: Store) {
    add(&store, webhook("all", vec![])).await;
    add(&store, webhook("tokens", vec![EventType::TokenCreated])).await;
    // An event, a record that is no event, and a refused admin action.
    for (action, outcome) in [
        ("token.create", Outcome::Ok),
        ("ui.signin", Outcome::Ok),
        ("token.revoke", Outcome::Refused),
        ("worker.revoke", Outcome::Ok),
    ] {
        let mut ev = audit(action, "t");
        ev.outcome = outcome;
        store
            .write(move |tx| tx.insert_audit(&ev))
            .await
            .expect("audit");
    }
    let all = pending(&store, "all").await;
    let types: Vec<_> = all.iter().rev().map(|d| d.event_type).collect();
    assert_eq!(
        types,
        [EventType::TokenCreated, EventType::WorkerRevoked],
        "every event, in order, and nothing else"
    );
    let tokens = pending(&store, "tokens").await;
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].state, DeliveryState::Pending);
    assert_eq!(tokens[0].attempts, 0);
    // The event id is the audit record's seq, the same for every webhook.
    assert_eq!(tokens[0].event_seq, all[1].event_seq);
}

pub async fn deliveries_roll_back_with_their_event(store: Store) {
    add(&store, webhook("w", vec![])).await;
    let ev = audit("token.create", "t");
    let failed = store
        .write(move |tx| {
            tx.insert_audit(&ev)?;
            Err::<(), _>(StoreError::Corrupt("the change failed".into()))
        })
        .await;
    assert!(failed.is_err());
    assert!(pending(&store, "w").await.is_empty());
}

pub async fn a_claimed_delivery_is_not_claimed_again_until_its_lease_ends(store: Store) {
    add(&store, webhook("w", vec![])).await;
    let ev = audit("token.create", "t");
    store
        .write(move |tx| tx.insert_audit(&ev))
        .await
        .expect("audit");
    let claim = |now: i64, lease: i64| {
        let store = store.clone();
        async move {
            store
                .write(move |tx| tx.claim_deliveries(at(now), at(lease), 10, None))
                .await
                .expect("claim")
        }
    };
    let first = claim(1, 60_000).await;
    assert_eq!(first.len(), 1);
    let due = &first[0];
    assert_eq!(due.url, "https://example.test/w");
    assert_eq!(due.secret, "secret-of-w");
    let event = due.event.as_ref().expect("the event");
    assert_eq!(event.event.action, "token.create");
    assert_eq!(event.seq, due.delivery.event_seq);
    assert!(claim(2, 60_000).await.is_empty(), "leased");
    // A sender that died: due again after the lease.
    let again = claim(60_000, 120_000).await;
    assert_eq!(again.len(), 1);
    let id = again[0].delivery.id;
    let failed = Attempt {
        at: at(60_001),
        status: Some(503),
        error: Some("the receiver answered 503".into()),
        next: AttemptNext::RetryAt(at(70_000)),
    };
    assert!(
        store
            .write(move |tx| tx.finish_attempt(id, &failed))
            .await
            .expect("finish")
    );
    assert!(claim(69_999, 200_000).await.is_empty(), "not due yet");
    assert_eq!(claim(70_000, 200_000).await.len(), 1);
    let delivered = Attempt {
        at: at(70_001),
        status: Some(204),
        error: None,
        next: AttemptNext::Delivered,
    };
    assert!(
        store
            .write(move |tx| tx.finish_attempt(id, &delivered))
            .await
            .expect("finish")
    );
    // Never again, whatever happens: a late second answer changes nothing either.
    assert!(claim(10_000_000, 20_000_000).await.is_empty());
    let late = Attempt {
        at: at(70_002),
        status: Some(500),
        error: None,
        next: AttemptNext::RetryAt(at(80_000)),
    };
    assert!(
        !store
            .write(move |tx| tx.finish_attempt(id, &late))
            .await
            .expect("finish")
    );
    let log = pending(&store, "w").await;
    assert_eq!(log[0].state, DeliveryState::Delivered);
    assert_eq!(log[0].attempts, 2);
    assert_eq!(log[0].last_status, Some(204));
    assert_eq!(log[0].delivered_at, Some(at(70_001)));
}

pub async fn a_test_goes_to_one_webhook_and_removal_takes_the_log(store: Store) {
    add(&store, webhook("a", vec![])).await;
    add(&store, webhook("b", vec![])).await;
    let ev = webhooks::test_event(at(5), "admin", "a");
    let due = store
        .write(move |tx| webhooks::test(tx, "a", &ev, at(60_000)))
        .await
        .expect("test")
        .expect("webhook a exists");
    assert_eq!(due.delivery.webhook_id, "a");
    assert_eq!(due.event.expect("its event").event.action, "webhook.test");
    assert_eq!(pending(&store, "a").await.len(), 1);
    assert!(pending(&store, "b").await.is_empty());
    let taken = store
        .write(move |tx| tx.claim_deliveries(at(10), at(70_000), 10, None))
        .await
        .expect("claim");
    assert!(
        taken.is_empty(),
        "claimed for the tester: no sender takes it"
    );
    let ev = webhooks::test_event(at(5), "admin", "nope");
    assert!(
        store
            .write(move |tx| webhooks::test(tx, "nope", &ev, at(60_000)))
            .await
            .expect("test")
            .is_none()
    );
    let ev = audit("webhook.remove", "a");
    assert!(
        store
            .write(move |tx| webhooks::remove(tx, "a", &ev))
            .await
            .expect("remove")
    );
    assert!(pending(&store, "a").await.is_empty());
    let listed = store.read(|tx| tx.list_webhooks()).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, "b");
    assert_eq!(listed[0].events, Vec::<EventType>::new());
}

pub async fn the_stream_reads_records_after_a_seq(store: Store) {
    for i in 0..5 {
        let ev = audit("token.create", &format!("t{i}"));
        store
            .write(move |tx| tx.insert_audit(&ev))
            .await
            .expect("audit");
    }
    let last = store.read(|tx| tx.last_audit_seq()).await.expect("last");
    let tail = store
        .read(move |tx| tx.audit_after(last - 3, 2))
        .await
        .expect("after");
    let targets: Vec<_> = tail.iter().map(|r| r.event.target.as_str()).collect();
    assert_eq!(targets, ["t2", "t3"], "oldest first, after the seq");
}

pub async fn finished_deliveries_are_pruned(store: Store) {
    add(&store, webhook("w", vec![])).await;
    for _ in 0..3 {
        let ev = audit("token.create", "t");
        store
            .write(move |tx| tx.insert_audit(&ev))
            .await
            .expect("audit");
    }
    let claimed = store
        .write(|tx| tx.claim_deliveries(at(0), at(1), 1, None))
        .await
        .expect("claim");
    let id = claimed[0].delivery.id;
    let given_up = Attempt {
        at: at(1),
        status: None,
        error: Some("connection refused".into()),
        next: AttemptNext::GiveUp,
    };
    store
        .write(move |tx| tx.finish_attempt(id, &given_up))
        .await
        .expect("finish");
    let n = store
        .write(|tx| tx.delete_deliveries_before(at(1_000), 100))
        .await
        .expect("prune");
    assert_eq!(n, 1, "only the finished one");
    assert_eq!(pending(&store, "w").await.len(), 2);
}

pub async fn each_token_expiry_is_told_once(store: Store) {
    use crate::flows::tokens;
    let sweep = |now: i64| {
        let store = store.clone();
        async move {
            store
                .write(move |tx| tokens::announce_expired(tx, at(now), 500))
                .await
                .expect("sweep")
        }
    };
    super::make_token(&store, "early", 1_000).await;
    super::make_token(&store, "later", 5_000).await;
    super::make_token(&store, "revoked", 5_000).await;
    let ev = audit("token.revoke", "revoked");
    store
        .write(move |tx| tokens::revoke(tx, &super::name("revoked"), at(2_000), &ev))
        .await
        .expect("revoke")
        .expect("revoked");
    // The first sweep only starts the count: expiries before it are history.
    assert_eq!(sweep(2_000).await, 0);
    assert_eq!(sweep(4_000).await, 0);
    assert_eq!(sweep(6_000).await, 1, "`later`, not the revoked one");
    assert_eq!(sweep(9_000).await, 0, "told once");
    let records = store
        .read(|tx| tx.audit_after(0, 100))
        .await
        .expect("audit");
    let told: Vec<_> = records
        .iter()
        .filter(|r| r.event.action == "token.expired")
        .map(|r| (r.event.target.as_str(), r.event.at))
        .collect();
    assert_eq!(told, [("later", at(5_000))]);
    assert_eq!(
        EventType::of("token.expired", Outcome::Ok),
        Some(EventType::TokenExpired)
    );
}

//! `/api/v1/workers`.

use axum::http::StatusCode;
use muster_core::credentials::generate_id;
use muster_core::{EnrolledVia, Labels, Name, Worker, WorkerId};
use muster_proto::control::CloseCode;
use rand::rngs::OsRng;
use serde_json::json;

use super::Api;

#[tokio::test]
async fn a_worker_made_by_hand_shows_its_key_once_and_is_listed() {
    let api = Api::new();
    let created = api
        .post(
            "/api/v1/workers",
            json!({"name": "gpu-1", "labels": {"gpu": "a100"}}),
        )
        .await
        .expect(StatusCode::CREATED);
    let key = created.body["api_key"].as_str().unwrap();
    assert_eq!(created.body["name"], "gpu-1");
    assert!(WorkerId::parse(created.body["id"].as_str().unwrap()).is_ok());

    let shown = api
        .get("/api/v1/workers/gpu-1")
        .await
        .expect(StatusCode::OK);
    assert_eq!(shown.body["id"], created.body["id"]);
    assert_eq!(shown.body["enrolled_via"], "precreated");
    assert_eq!(shown.body["status"], "disconnected");
    assert_eq!(shown.body["labels"], json!({"gpu": "a100"}));
    let listed = api.get("/api/v1/workers").await.expect(StatusCode::OK);
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    for text in [&shown.text, &listed.text] {
        assert!(!text.contains(key), "the API key is shown only once");
    }
    assert_eq!(api.actions().await, ["worker.create ok"]);
}

#[tokio::test]
async fn worker_requests_with_bad_input_or_a_taken_name_are_refused() {
    let api = Api::new();
    api.worker("w1").await;
    api.token("t1").await;
    let before = api.everything().await;
    let cases = [
        (
            json!({"name": "W 1"}),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            json!({"name": "w2", "labels": {"a b": "c"}}),
            StatusCode::BAD_REQUEST,
            "invalid_label",
        ),
        (json!({}), StatusCode::BAD_REQUEST, "bad_request"),
        (json!({"name": "w1"}), StatusCode::CONFLICT, "name_in_use"),
        (json!({"name": "t1"}), StatusCode::CONFLICT, "name_in_use"),
    ];
    for (body, status, code) in cases {
        api.post("/api/v1/workers", body)
            .await
            .refused(status, code, "");
    }
    assert_eq!(api.everything().await, before);
}

#[tokio::test]
async fn an_unknown_worker_is_not_found() {
    let api = Api::new();
    let before = api.everything().await;
    api.get("/api/v1/workers/ghost").await.refused(
        StatusCode::NOT_FOUND,
        "not_found",
        "no worker named `ghost`",
    );
    api.post("/api/v1/workers/ghost/revoke", json!({}))
        .await
        .refused(StatusCode::NOT_FOUND, "not_found", "ghost");
    api.delete("/api/v1/workers/ghost")
        .await
        .refused(StatusCode::NOT_FOUND, "not_found", "ghost");
    api.delete("/api/v1/workers/Ghost!")
        .await
        .refused(StatusCode::BAD_REQUEST, "invalid_name", "");
    assert_eq!(api.everything().await, before);
}

#[tokio::test]
async fn revoking_a_worker_closes_its_session_after_the_revocation_is_stored() {
    let api = Api::new();
    let id = api.worker("w1").await;
    let session = api.connect(&id, "w1", 1);
    let connected = api.get("/api/v1/workers/w1").await.expect(StatusCode::OK);
    assert_eq!(connected.body["status"], "connected");
    assert_eq!(connected.body["remote_addr"], "192.0.2.9");

    let revoked = api
        .post("/api/v1/workers/w1/revoke", json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(revoked.body["status"], "revoked");
    assert!(revoked.body["revoked_at"].is_string());
    assert_eq!(super::closes(&session), [CloseCode::Revoked]);
    assert_eq!(
        api.actions().await,
        ["worker.revoke ok", "worker.create ok"]
    );
}

#[tokio::test]
async fn a_connected_worker_is_removed_only_after_it_is_gone() {
    let api = Api::new();
    let id = api.worker("w1").await;
    let session = api.connect(&id, "w1", 1);
    let before = api.everything().await;
    let reply = api.delete("/api/v1/workers/w1").await.refused(
        StatusCode::CONFLICT,
        "conflict",
        "worker `w1` is connected",
    );
    assert!(
        reply.hint().contains("muster workers revoke w1"),
        "{}",
        reply.text
    );
    assert_eq!(api.everything().await, before);
    assert!(super::closes(&session).is_empty());

    api.app.registry.remove(&id, session.conn_id);
    let removed = api
        .delete("/api/v1/workers/w1")
        .await
        .expect(StatusCode::NO_CONTENT);
    assert!(removed.text.is_empty());
    api.get("/api/v1/workers/w1")
        .await
        .refused(StatusCode::NOT_FOUND, "not_found", "w1");
    assert_eq!(
        api.actions().await,
        ["worker.remove ok", "worker.create ok"]
    );
}

#[tokio::test]
async fn the_builtin_worker_is_neither_revoked_nor_removed() {
    let api = Api::new();
    let worker = Worker {
        id: WorkerId::parse(&generate_id(&mut OsRng)).unwrap(),
        name: Name::parse("builtin").unwrap(),
        enrolled_via: EnrolledVia::Builtin,
        token_name: None,
        machine_id: None,
        labels: Labels::new(),
        key_hash: muster_core::ApiKey::generate(&mut OsRng).hash(),
        created_at: api.app.clock.now(),
        expires_at: None,
        revoked_at: None,
        last_seen_at: None,
        identity: Default::default(),
    };
    let now = api.app.clock.now();
    api.app
        .store
        .write(move |tx| muster_store::flows::workers::create(tx, &worker, now, None))
        .await
        .unwrap()
        .unwrap();
    let before = api.everything().await;
    for reply in [
        api.post("/api/v1/workers/builtin/revoke", json!({})).await,
        api.delete("/api/v1/workers/builtin").await,
    ] {
        let reply = reply.refused(
            StatusCode::CONFLICT,
            "conflict",
            "the built-in worker cannot be revoked or removed",
        );
        assert!(reply.hint().contains("--no-builtin-worker"));
    }
    assert_eq!(api.everything().await, before);
}

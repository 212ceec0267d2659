//! `/api/v1/tokens`.

use axum::http::StatusCode;
use muster_core::{Labels, Name, Timestamp, Token, TokenSecret};
use muster_proto::control::CloseCode;
use rand::rngs::OsRng;
use serde_json::json;

use super::Api;

#[tokio::test]
async fn a_created_token_shows_its_secret_once_and_is_listed() {
    let api = Api::new();
    let created = api
        .post(
            "/api/v1/tokens",
            json!({"name": "ingest-01", "duration": "1h", "labels": {"region": "eu"}}),
        )
        .await
        .expect(StatusCode::CREATED);
    let secret = created.body["token"].as_str().unwrap();
    assert_eq!(created.body["name"], "ingest-01");
    assert!(secret.starts_with("ingest-01."), "{secret}");
    let command = created.body["worker_command"].as_str().unwrap();
    assert!(
        command.starts_with("muster worker --url http://SERVER:7443 --token "),
        "{command}"
    );
    assert!(command.ends_with(secret), "{command}");

    let shown = api
        .get("/api/v1/tokens/ingest-01")
        .await
        .expect(StatusCode::OK);
    assert_eq!(shown.body["state"], "unused");
    assert_eq!(shown.body["labels"], json!({"region": "eu"}));
    assert_eq!(shown.body["expires_at"], created.body["expires_at"]);
    let listed = api.get("/api/v1/tokens").await.expect(StatusCode::OK);
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(listed.body[0]["name"], "ingest-01");
    for text in [&shown.text, &listed.text] {
        assert!(!text.contains(secret), "the secret is shown only once");
    }
    assert_eq!(api.actions().await, ["token.create ok"]);
}

#[tokio::test]
async fn token_requests_with_bad_input_are_refused_naming_the_rule() {
    let api = Api::new();
    let before = api.everything().await;
    let cases = [
        (
            json!({"name": "Bad Name", "duration": "1h"}),
            "invalid_name",
            "name",
        ),
        (
            json!({"name": "t1", "duration": "soon"}),
            "invalid_duration",
            "soon",
        ),
        (
            json!({"name": "t1", "duration": "1h", "labels": {"": "x"}}),
            "invalid_label",
            "",
        ),
        (
            json!({"name": "t1"}),
            "bad_request",
            "missing field `duration`",
        ),
        (
            json!({"name": "t1", "duration": "1h", "ttl": 3}),
            "bad_request",
            "unknown field `ttl`",
        ),
    ];
    for (body, code, message) in cases {
        let reply = api.post("/api/v1/tokens", body).await;
        let reply = reply.refused(StatusCode::BAD_REQUEST, code, message);
        assert!(!reply.hint().is_empty(), "{}", reply.text);
    }
    // A body that is not declared as JSON is told how to send it.
    let mut request = axum::http::Request::post("/api/v1/tokens")
        .header(
            axum::http::header::AUTHORIZATION,
            format!("Bearer {}", crate::state::AppState::TEST_ADMIN_TOKEN),
        )
        .body(axum::body::Body::from(r#"{"name":"t1","duration":"1h"}"#))
        .unwrap();
    request
        .headers_mut()
        .remove(axum::http::header::CONTENT_TYPE);
    let reply = api.send(request).await;
    let reply = reply.refused(StatusCode::BAD_REQUEST, "bad_request", "malformed request");
    assert!(reply.hint().contains("content-type: application/json"));
    assert_eq!(
        api.everything().await,
        before,
        "a refused request changes nothing"
    );
}

#[tokio::test]
async fn a_token_name_in_use_is_a_conflict() {
    let api = Api::new();
    api.token("t1").await;
    api.worker("w1").await;
    let before = api.everything().await;
    api.post("/api/v1/tokens", json!({"name": "t1", "duration": "2h"}))
        .await
        .refused(StatusCode::CONFLICT, "token_exists", "t1");
    api.post("/api/v1/tokens", json!({"name": "w1", "duration": "2h"}))
        .await
        .refused(StatusCode::CONFLICT, "name_in_use", "w1");
    assert_eq!(api.everything().await, before);
}

#[tokio::test]
async fn an_unknown_token_is_not_found() {
    let api = Api::new();
    let before = api.everything().await;
    api.get("/api/v1/tokens/nope").await.refused(
        StatusCode::NOT_FOUND,
        "not_found",
        "no enrollment token named `nope`",
    );
    api.post("/api/v1/tokens/nope/revoke", json!({}))
        .await
        .refused(StatusCode::NOT_FOUND, "not_found", "nope");
    api.get("/api/v1/tokens/Not%20A%20Name").await.refused(
        StatusCode::BAD_REQUEST,
        "invalid_name",
        "",
    );
    assert_eq!(api.everything().await, before);
}

#[tokio::test]
async fn revoking_a_token_cuts_off_its_worker_once() {
    let api = Api::licensed().await;
    let secret = api.token("t1").await;
    let enrolled = api
        .enroll(json!({"machine_id": "machine-0001", "token": secret}))
        .await
        .expect(StatusCode::OK);
    let worker =
        muster_core::WorkerId::parse(enrolled.body["worker_id"].as_str().unwrap()).unwrap();
    let session = api.connect(&worker, "t1", 1);

    let revoked = api
        .post("/api/v1/tokens/t1/revoke", json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(revoked.body["state"], "revoked");
    assert_eq!(revoked.body["worker"], "t1");
    assert_eq!(super::closes(&session), [CloseCode::Revoked]);
    let shown = api.get("/api/v1/workers/t1").await.expect(StatusCode::OK);
    assert_eq!(shown.body["status"], "revoked");

    // Revoking again changes nothing and cuts no one off.
    api.post("/api/v1/tokens/t1/revoke", json!({}))
        .await
        .expect(StatusCode::OK);
    assert!(super::closes(&session).is_empty());
    assert_eq!(
        api.actions().await,
        [
            "token.revoke ok",
            "token.revoke ok",
            "enroll.token ok",
            "token.create ok",
            "license.changed ok"
        ]
    );
}

#[tokio::test]
async fn revoking_an_expired_token_is_a_conflict() {
    let api = Api::new();
    let name = Name::parse("old").unwrap();
    let secret = TokenSecret::generate(name.clone(), &mut OsRng);
    let two_hours_ago = Timestamp::from_unix_millis(api.app.clock.now().unix_millis() - 7_200_000);
    let token = Token::new(
        name,
        secret.hash(),
        Labels::new(),
        two_hours_ago,
        std::time::Duration::from_secs(3600),
    );
    let event = api.app.audit_event(
        "test",
        "token.create",
        "old",
        None,
        muster_core::audit::Outcome::Ok,
        "made expired",
    );
    api.app
        .store
        .write(move |tx| muster_store::flows::tokens::create(tx, &token, &event))
        .await
        .unwrap()
        .unwrap();
    let before = api.everything().await;
    let reply = api
        .post("/api/v1/tokens/old/revoke", json!({}))
        .await
        .refused(StatusCode::CONFLICT, "token_expired", "");
    assert!(reply.hint().contains("nothing to revoke"), "{}", reply.text);
    assert_eq!(api.everything().await, before);
}

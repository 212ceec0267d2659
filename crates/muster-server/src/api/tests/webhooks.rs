//! `/api/v1/webhooks` and `/api/v1/events`: admin input checked field by field, the secret
//! write-only, the outbox filled with the change, and admins only. Sending is tested against a
//! real receiver in `muster-cli/tests/it/webhooks.rs`.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::{Api, Auth};

const SECRET: &str = "sixteen-or-more-characters";

#[tokio::test]
async fn a_webhook_is_checked_listed_without_its_secret_and_removed() {
    let api = Api::new();
    for (body, message) in [
        (
            json!({"url": "http://example.com/h", "secret": SECRET}),
            "only to a receiver on this host",
        ),
        (
            json!({"url": "https://example.com/h", "secret": "short"}),
            "at least 16",
        ),
        (
            json!({"url": "https://example.com/h", "secret": SECRET, "events": ["nope"]}),
            "not an event type",
        ),
        (
            json!({"url": "https://example.com/h", "secret": SECRET, "events": ["webhook.test"]}),
            "not an event type",
        ),
    ] {
        api.post("/api/v1/webhooks", body)
            .await
            .expect(StatusCode::BAD_REQUEST)
            .body["error"]["message"]
            .as_str()
            .filter(|m| m.contains(message))
            .unwrap_or_else(|| panic!("refusal lacks {message:?}"));
    }
    let created = api
        .post(
            "/api/v1/webhooks",
            json!({"url": "https://alerts.example.com/muster?key=abc", "secret": SECRET,
                   "events": ["token.created"]}),
        )
        .await
        .expect(StatusCode::CREATED);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let listed = api.get("/api/v1/webhooks").await.expect(StatusCode::OK);
    assert_eq!(listed.body[0]["events"], json!(["token.created"]));
    assert!(!listed.text.contains(SECRET), "write-only: {}", listed.text);
    // The audit names the receiver's host, not its URL (which may carry a token).
    let audit = api.get("/api/v1/audit").await.expect(StatusCode::OK);
    assert!(!audit.text.contains("key=abc"), "{}", audit.text);

    // The outbox is filled with the change: a token's creation queues one delivery.
    api.post("/api/v1/tokens", json!({"name": "t1", "duration": "1h"}))
        .await
        .expect(StatusCode::CREATED);
    let log = api
        .get(&format!("/api/v1/webhooks/{id}/deliveries"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(log.body.as_array().unwrap().len(), 1, "{}", log.text);
    assert_eq!(log.body[0]["event_type"], "token.created");
    assert!(
        log.body[0]["event_id"]
            .as_str()
            .unwrap()
            .starts_with("evt_")
    );

    api.delete(&format!("/api/v1/webhooks/{id}"))
        .await
        .expect(StatusCode::NO_CONTENT);
    api.delete(&format!("/api/v1/webhooks/{id}")).await.refused(
        StatusCode::NOT_FOUND,
        "not_found",
        "no webhook",
    );
    api.get(&format!("/api/v1/webhooks/{id}/deliveries"))
        .await
        .refused(StatusCode::NOT_FOUND, "not_found", "no webhook");
}

#[tokio::test]
async fn webhooks_and_events_are_for_admins_only() {
    let api = Api::new();
    for (method, path) in [
        (Method::GET, "/api/v1/webhooks"),
        (Method::POST, "/api/v1/webhooks"),
        (Method::DELETE, "/api/v1/webhooks/wh_1"),
        (Method::POST, "/api/v1/webhooks/wh_1/test"),
        (Method::GET, "/api/v1/webhooks/wh_1/deliveries"),
        (Method::GET, "/api/v1/events"),
    ] {
        let reply = api
            .call(method.clone(), path, Auth::Missing, Some(json!({})))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
}

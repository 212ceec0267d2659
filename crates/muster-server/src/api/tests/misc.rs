//! What every route shares: the admin credential, the fallbacks, the body limit; plus health and
//! the audit log.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Api, Auth};

#[tokio::test]
async fn every_admin_route_refuses_a_missing_or_wrong_credential_and_changes_nothing() {
    let api = Api::new();
    api.token("t1").await;
    api.worker("w1").await;
    let job = api
        .post("/api/v1/jobs", json!({"command": ["true"]}))
        .await
        .expect(StatusCode::CREATED);
    let job = job.body["id"].as_str().unwrap().to_owned();
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/v1/tokens".into(), None),
        (
            Method::POST,
            "/api/v1/tokens".into(),
            Some(json!({"name": "t2", "duration": "1h"})),
        ),
        (Method::GET, "/api/v1/tokens/t1".into(), None),
        (Method::POST, "/api/v1/tokens/t1/revoke".into(), None),
        (Method::GET, "/api/v1/workers".into(), None),
        (
            Method::POST,
            "/api/v1/workers".into(),
            Some(json!({"name": "w2"})),
        ),
        (Method::GET, "/api/v1/workers/w1".into(), None),
        (Method::DELETE, "/api/v1/workers/w1".into(), None),
        (Method::POST, "/api/v1/workers/w1/revoke".into(), None),
        (Method::GET, "/api/v1/audit".into(), None),
        (Method::GET, "/api/v1/enrollment".into(), None),
        (
            Method::POST,
            "/api/v1/enrollment/enable".into(),
            Some(json!({"generate": true})),
        ),
        (
            Method::POST,
            "/api/v1/enrollment/rotate".into(),
            Some(json!({"generate": true})),
        ),
        (Method::POST, "/api/v1/enrollment/disable".into(), None),
        (
            Method::POST,
            "/api/v1/jobs".into(),
            Some(json!({"command": ["true"]})),
        ),
        (Method::GET, "/api/v1/jobs".into(), None),
        (Method::GET, format!("/api/v1/jobs/{job}"), None),
        (Method::GET, format!("/api/v1/jobs/{job}/output"), None),
        (Method::POST, format!("/api/v1/jobs/{job}/cancel"), None),
    ];
    let before = api.everything().await;
    for (method, path, body) in routes {
        for (auth, message) in [
            (Auth::Missing, "missing admin credential"),
            (Auth::Wrong, "the admin credential is not valid"),
        ] {
            let reply = api.call(method.clone(), &path, auth, body.clone()).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path}: {}",
                reply.text
            );
            assert_eq!(
                reply.body["error"]["code"], "unauthorized",
                "{method} {path}"
            );
            assert_eq!(reply.body["error"]["message"], message, "{method} {path}");
            assert!(!reply.hint().is_empty());
        }
    }
    assert_eq!(api.everything().await, before);
}

#[tokio::test]
async fn health_answers_without_a_credential() {
    let api = Api::new();
    let reply = api
        .call(Method::GET, "/api/v1/health", Auth::Missing, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        reply.body,
        json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})
    );
}

#[tokio::test]
async fn preflight_says_the_clock_the_edition_and_auto_enrollment_without_a_credential() {
    let api = Api::new();
    let preflight = async || {
        api.call(Method::GET, "/api/v1/preflight", Auth::Missing, None)
            .await
            .expect(StatusCode::OK)
            .body
    };
    let before = preflight().await;
    assert_eq!(before["edition"], "community");
    assert_eq!(before["joining_open"], false);
    assert_eq!(before["auto_enrollment"], false);
    let time = before["server_time"].as_str().unwrap();
    let told = muster_core::Timestamp::parse_rfc3339(time).expect("RFC 3339");
    let now = api.app.clock.now();
    assert!(
        told <= now && told.until(now) < std::time::Duration::from_secs(60),
        "the server's own clock: told {time}, now {now}"
    );
    api.post("/api/v1/license/trial", json!({}))
        .await
        .expect(StatusCode::OK);
    api.post("/api/v1/enrollment/enable", json!({"generate": true}))
        .await
        .expect(StatusCode::OK);
    let after = preflight().await;
    assert_eq!(after["edition"], "trial");
    assert_eq!(after["joining_open"], true);
    assert_eq!(after["auto_enrollment"], true);
    let audited = api.get("/api/v1/audit").await.expect(StatusCode::OK).body;
    assert!(
        !audited.to_string().contains("preflight"),
        "a preflight writes no audit record: {audited:#}"
    );
}

#[tokio::test]
async fn unknown_endpoints_methods_and_oversized_bodies_get_json_errors() {
    let api = Api::new();
    api.get("/api/v1/nope").await.refused(
        StatusCode::NOT_FOUND,
        "not_found",
        "no API endpoint at `/api/v1/nope`",
    );
    api.delete("/api/v1/tokens").await.refused(
        StatusCode::METHOD_NOT_ALLOWED,
        "bad_request",
        "`DELETE` is not allowed on `/api/v1/tokens`",
    );
    let big = "x".repeat(crate::api::extract::MAX_BODY_BYTES + 1);
    api.post("/api/v1/tokens", json!({"name": big, "duration": "1h"}))
        .await
        .refused(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "64 KiB");
    let plain = api
        .post("/api/v1/tokens", Value::String("not an object".into()))
        .await
        .refused(StatusCode::BAD_REQUEST, "bad_request", "malformed request");
    assert!(plain.hint().contains("JSON object"));
}

#[tokio::test]
async fn the_audit_log_is_newest_first_and_filtered() {
    let api = Api::new();
    api.token("t1").await;
    api.worker("w1").await;
    api.post("/api/v1/tokens/t1/revoke", json!({}))
        .await
        .expect(StatusCode::OK);

    let all = api.get("/api/v1/audit").await.expect(StatusCode::OK);
    let seqs: Vec<i64> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 3);
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    assert_eq!(all.body[0]["actor"], "admin");
    assert_eq!(all.body[0]["remote_addr"], "192.0.2.9");

    let tokens = api
        .get("/api/v1/audit?action=token.")
        .await
        .expect(StatusCode::OK);
    assert_eq!(tokens.body.as_array().unwrap().len(), 2);
    let one = api
        .get("/api/v1/audit?limit=1")
        .await
        .expect(StatusCode::OK);
    assert_eq!(one.body.as_array().unwrap().len(), 1);
    let older = api
        .get(&format!("/api/v1/audit?before={}", seqs[0]))
        .await
        .expect(StatusCode::OK);
    assert_eq!(older.body.as_array().unwrap().len(), 2);
    let found = api.get("/api/v1/audit?q=w1").await.expect(StatusCode::OK);
    assert_eq!(found.body.as_array().unwrap().len(), 1);
    assert_eq!(found.body[0]["action"], "worker.create");
    api.get("/api/v1/audit?limit=lots").await.refused(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "limit",
    );
}

#[tokio::test]
async fn connect_without_a_websocket_upgrade_is_refused() {
    // The upgrade itself needs a real connection (tests/it covers it); here the route exists and
    // refuses a plain GET.
    let api = Api::new();
    let reply = api
        .call(Method::GET, "/api/v1/connect", Auth::Missing, None)
        .await;
    assert!(reply.status.is_client_error(), "{}", reply.status);
    assert_ne!(reply.status, StatusCode::NOT_FOUND);
}

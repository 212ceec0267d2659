//! `POST /api/v1/enroll`: a machine enrolling with a token or the auto-enrollment secret. Every
//! attempt is audited, refused ones too.

use axum::http::StatusCode;
use muster_core::{Name, TokenSecret, WorkerId};
use muster_proto::control::CloseCode;
use rand::rngs::OsRng;
use serde_json::{Value, json};

use super::Api;

fn worker_id(reply: &Value) -> WorkerId {
    WorkerId::parse(reply["worker_id"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_token_enrolls_one_machine_and_enrolling_again_replaces_its_key() {
    let api = Api::licensed().await;
    let token = api.token("edge-1").await;
    let first = api
        .enroll(json!({"machine_id": "machine-0001", "token": token}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(first.body["name"], "edge-1");
    assert!(first.body["api_key"].is_string());
    assert!(
        first.body["expires_at"].is_string(),
        "a token's worker expires with it"
    );
    let id = worker_id(&first.body);
    let session = api.connect(&id, "edge-1", 1);

    // The same machine again (a lost state dir): same identity, new key, old session cut off.
    let again = api
        .enroll(json!({"machine_id": "machine-0001", "token": token}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(worker_id(&again.body), id);
    assert_ne!(again.body["api_key"], first.body["api_key"]);
    assert_eq!(super::closes(&session), [CloseCode::Replaced]);

    // Another machine with the same token is refused, and the refusal is audited.
    api.enroll(json!({"machine_id": "machine-0002", "token": token}))
        .await
        .refused(StatusCode::FORBIDDEN, "token_bound_elsewhere", "");
    let audit = api
        .get("/api/v1/audit?action=enroll.")
        .await
        .expect(StatusCode::OK);
    assert_eq!(audit.body[0]["outcome"], "refused");
    assert_eq!(audit.body[0]["remote_addr"], "192.0.2.9");
    assert!(!audit.text.contains(&token), "no secret in the audit log");
}

#[tokio::test]
async fn enrollment_refusals_name_the_problem() {
    let api = Api::new();
    let unknown = TokenSecret::generate(Name::parse("ghost").unwrap(), &mut OsRng).expose();
    let cases = [
        (
            json!({"machine_id": "m"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "machine id",
        ),
        (
            json!({"machine_id": "machine-0001"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "no enrollment credential",
        ),
        (
            json!({"machine_id": "machine-0001", "token": unknown, "enrollment_key": "k"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "not both",
        ),
        (
            json!({"machine_id": "machine-0001", "token": "garbage"}),
            StatusCode::BAD_REQUEST,
            "token_malformed",
            "",
        ),
        (
            json!({"machine_id": "machine-0001", "token": unknown}),
            StatusCode::FORBIDDEN,
            "token_unknown",
            "",
        ),
        (
            json!({"machine_id": "machine-0001", "enrollment_key": "k"}),
            StatusCode::BAD_REQUEST,
            "invalid_name",
            "needs a worker name",
        ),
        (
            json!({"machine_id": "machine-0001", "name": "auto-1", "enrollment_key": "k"}),
            StatusCode::FORBIDDEN,
            "enrollment_disabled",
            "",
        ),
    ];
    for (body, status, code, message) in cases {
        api.enroll(body).await.refused(status, code, message);
    }
    assert_eq!(
        api.get("/api/v1/workers").await.body,
        json!([]),
        "no worker made"
    );
}

#[tokio::test]
async fn the_auto_enrollment_secret_enrolls_a_named_worker() {
    let api = Api::licensed().await;
    let enabled = api
        .post("/api/v1/enrollment/enable", json!({"generate": true}))
        .await
        .expect(StatusCode::OK);
    let secret = enabled.body["generated_secret"].as_str().unwrap();
    let enroll = |machine: &str, key: &str| json!({"machine_id": machine, "name": "auto-1", "enrollment_key": key});

    api.enroll(enroll("machine-0001", "not-the-secret"))
        .await
        .refused(StatusCode::FORBIDDEN, "secret_mismatch", "");
    let first = api
        .enroll(enroll("machine-0001", secret))
        .await
        .expect(StatusCode::OK);
    assert_eq!(first.body["name"], "auto-1");
    assert_eq!(first.body["expires_at"], Value::Null);
    let id = worker_id(&first.body);

    // While the name's worker is connected, another machine cannot take the name.
    let session = api.connect(&id, "auto-1", 1);
    api.enroll(enroll("machine-0002", secret)).await.refused(
        StatusCode::CONFLICT,
        "name_in_use",
        "",
    );
    api.app.registry.remove(&id, session.conn_id);
    // Once it is gone, its machine enrolling again (a lost state dir) supersedes the old
    // identity, and the other replicas are told to cut it off.
    let cuts = api.app.registry.cuts();
    let second = api
        .enroll(enroll("machine-0001", secret))
        .await
        .expect(StatusCode::OK);
    assert_ne!(worker_id(&second.body), id);
    assert_eq!(api.app.registry.cuts(), cuts + 1);
    let workers = api.get("/api/v1/workers").await.expect(StatusCode::OK);
    assert_eq!(workers.body.as_array().unwrap().len(), 1);
    assert_eq!(workers.body[0]["id"], second.body["worker_id"]);
}

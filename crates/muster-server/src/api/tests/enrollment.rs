//! `/api/v1/enrollment`: auto-enrollment's switch, secret and guard rails.

use axum::http::StatusCode;
use serde_json::json;

use super::Api;

#[tokio::test]
async fn auto_enrollment_is_enabled_rotated_and_disabled() {
    let api = Api::new();
    let off = api.get("/api/v1/enrollment").await.expect(StatusCode::OK);
    assert_eq!(off.body["enabled"], false);
    assert!(off.body["secret_set_at"].is_null());

    let enabled = api
        .post(
            "/api/v1/enrollment/enable",
            json!({"generate": true, "for": "1h", "max_enrollments": 2, "name_pattern": "ci-*"}),
        )
        .await
        .expect(StatusCode::OK);
    let first = enabled.body["generated_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(first.len(), 43);
    assert_eq!(enabled.body["status"]["enabled"], true);
    assert_eq!(enabled.body["status"]["max_enrollments"], 2);
    assert_eq!(enabled.body["status"]["name_pattern"], "ci-*");
    assert!(enabled.body["status"]["window_closes_at"].is_string());
    let shown = api.get("/api/v1/enrollment").await.expect(StatusCode::OK);
    assert_eq!(shown.body, enabled.body["status"]);

    let rotated = api
        .post("/api/v1/enrollment/rotate", json!({"generate": true}))
        .await
        .expect(StatusCode::OK);
    let second = rotated.body["generated_secret"].as_str().unwrap();
    assert_ne!(second, first);
    assert_eq!(
        rotated.body["status"]["name_pattern"], "ci-*",
        "guard rails stay"
    );

    let disabled = api
        .post("/api/v1/enrollment/disable", json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(disabled.body["enabled"], false);
    assert!(disabled.body.get("generated_secret").is_none());

    let audit = api.get("/api/v1/audit").await.expect(StatusCode::OK);
    assert!(!audit.text.contains(&first) && !audit.text.contains(second));
    assert_eq!(
        api.actions().await,
        [
            "enrollment.disable ok",
            "enrollment.rotate ok",
            "enrollment.enable ok"
        ]
    );
}

#[tokio::test]
async fn auto_enrollment_requests_with_bad_input_are_refused_naming_the_rule() {
    let api = Api::new();
    let before = api.everything().await;
    let cases = [
        ("enable", json!({}), "invalid_secret", "no secret yet"),
        (
            "enable",
            json!({"secret": "x", "generate": true}),
            "bad_request",
            "not both",
        ),
        (
            "enable",
            json!({"secret": "too short"}),
            "invalid_secret",
            "",
        ),
        (
            "enable",
            json!({"generate": true, "for": "later"}),
            "invalid_duration",
            "later",
        ),
        (
            "enable",
            json!({"generate": true, "max_enrollments": 0}),
            "bad_request",
            "max_enrollments",
        ),
        (
            "enable",
            json!({"generate": true, "name_pattern": "CI *"}),
            "invalid_name",
            "",
        ),
        (
            "rotate",
            json!({}),
            "invalid_secret",
            "rotate needs a new secret",
        ),
        (
            "rotate",
            json!({"generate": true, "for": "1h"}),
            "bad_request",
            "rotate only replaces the secret",
        ),
    ];
    for (action, body, code, message) in cases {
        api.post(&format!("/api/v1/enrollment/{action}"), body)
            .await
            .refused(StatusCode::BAD_REQUEST, code, message);
    }
    assert_eq!(api.everything().await, before);
}

//! Raw HTTP against the API: malformed and oversized bodies, missing and wrong admin credentials.
//! Each gets a 4xx with a JSON error body `{"error":{"code","message"}}` and changes nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Server, block_on};

struct Case {
    what: &'static str,
    method: reqwest::Method,
    path: &'static str,
    auth: Auth,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
    status: StatusCode,
    code: &'static str,
}

#[derive(Clone, Copy)]
enum Auth {
    None,
    Wrong,
    Admin,
}

fn valid_create(name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"name": name, "duration": "1h"})).expect("json")
}

#[test]
fn bad_requests_get_4xx_json_errors_and_change_nothing() {
    let server = Server::start_default();
    server.create_token("present", "1h");
    let tokens_before = server.tokens();
    let audit_before = server.audit();

    let oversized = {
        // A syntactically valid JSON body well over 64 KiB.
        let filler = "x".repeat(70 * 1024);
        serde_json::to_vec(&json!({"name": "big", "duration": "1h", "labels": {"k": filler}}))
            .expect("json")
    };
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let cases = vec![
        Case {
            what: "malformed JSON",
            method: post.clone(),
            path: "/api/v1/tokens",
            auth: Auth::Admin,
            content_type: Some("application/json"),
            body: Some(b"{\"name\": \"half\", \"duration\": ".to_vec()),
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
        },
        Case {
            what: "JSON of the wrong shape",
            method: post.clone(),
            path: "/api/v1/tokens",
            auth: Auth::Admin,
            content_type: Some("application/json"),
            body: Some(br#"{"name": 5, "lifetime": "1h"}"#.to_vec()),
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
        },
        Case {
            what: "oversized body",
            method: post.clone(),
            path: "/api/v1/tokens",
            auth: Auth::Admin,
            content_type: Some("application/json"),
            body: Some(oversized.clone()),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "payload_too_large",
        },
        Case {
            what: "oversized enrollment body",
            method: post.clone(),
            path: "/api/v1/enroll",
            auth: Auth::None,
            content_type: Some("application/json"),
            body: Some(oversized),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "payload_too_large",
        },
        Case {
            what: "malformed enrollment JSON",
            method: post.clone(),
            path: "/api/v1/enroll",
            auth: Auth::None,
            content_type: Some("application/json"),
            body: Some(b"not json".to_vec()),
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
        },
        Case {
            what: "missing admin credential (create)",
            method: post.clone(),
            path: "/api/v1/tokens",
            auth: Auth::None,
            content_type: Some("application/json"),
            body: Some(valid_create("sneaky")),
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
        },
        Case {
            what: "wrong admin credential (create)",
            method: post.clone(),
            path: "/api/v1/tokens",
            auth: Auth::Wrong,
            content_type: Some("application/json"),
            body: Some(valid_create("sneaky")),
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
        },
        Case {
            what: "missing admin credential (list)",
            method: get.clone(),
            path: "/api/v1/tokens",
            auth: Auth::None,
            content_type: None,
            body: None,
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
        },
        Case {
            what: "wrong admin credential (revoke)",
            method: post.clone(),
            path: "/api/v1/tokens/present/revoke",
            auth: Auth::Wrong,
            content_type: None,
            body: None,
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
        },
        Case {
            what: "wrong admin credential (audit)",
            method: get.clone(),
            path: "/api/v1/audit",
            auth: Auth::Wrong,
            content_type: None,
            body: None,
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
        },
        Case {
            what: "missing admin credential (workers)",
            method: get,
            path: "/api/v1/workers",
            auth: Auth::None,
            content_type: None,
            body: None,
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
        },
        Case {
            what: "no content type",
            method: post.clone(),
            path: "/api/v1/tokens",
            auth: Auth::Admin,
            content_type: None,
            body: Some(valid_create("untyped")),
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
        },
        Case {
            what: "wrong method",
            method: reqwest::Method::DELETE,
            path: "/api/v1/tokens",
            auth: Auth::Admin,
            content_type: None,
            body: None,
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "bad_request",
        },
        Case {
            what: "unknown endpoint",
            method: post,
            path: "/api/v1/nothing-here",
            auth: Auth::Admin,
            content_type: None,
            body: None,
            status: StatusCode::NOT_FOUND,
            code: "not_found",
        },
    ];

    let client = server.http();
    let admin = server.admin_token();
    let base = server.url();
    block_on(async {
        for case in cases {
            let mut request = client.request(case.method.clone(), format!("{base}{}", case.path));
            match case.auth {
                Auth::None => {}
                Auth::Wrong => request = request.bearer_auth("not-the-admin-token"),
                Auth::Admin => request = request.bearer_auth(&admin),
            }
            if let Some(ct) = case.content_type {
                request = request.header("content-type", ct);
            }
            if let Some(body) = case.body {
                request = request.body(body);
            }
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{}: request failed: {e}", case.what));
            let status = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let text = response.text().await.expect("body");
            assert_eq!(status, case.status, "{}: {text}", case.what);
            assert!(
                content_type.starts_with("application/json"),
                "{}: content-type `{content_type}`",
                case.what
            );
            let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!("{}: the error body is not JSON ({e}): {text}", case.what)
            });
            assert_eq!(body["error"]["code"], case.code, "{}: {body:#}", case.what);
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "{}: no message in {body:#}", case.what);
            assert!(
                !message.contains(&admin),
                "{}: the error echoes the admin credential",
                case.what
            );
        }
    });

    assert_eq!(
        server.tokens(),
        tokens_before,
        "a refused request changed the tokens"
    );
    assert_eq!(
        server.audit(),
        audit_before,
        "a refused request wrote audit records"
    );
    assert_eq!(server.token("present")["state"], "unused");

    // The admin CLI with a wrong credential is refused the same way, in one line.
    let out = server.cli_env(
        &["token", "list"],
        &[("MUSTER_ADMIN_TOKEN", "wrong-credential".into())],
    );
    assert_eq!(out.status.code(), Some(1));
    let line = crate::harness::error_line(&String::from_utf8_lossy(&out.stderr));
    assert!(line.contains("admin credential"), "{line}");
}

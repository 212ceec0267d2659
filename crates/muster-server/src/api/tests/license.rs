//! `/api/v1/license` and `/api/v1/license/trial`: Community Edition by default, licenses that
//! verify installed and shown, bad ones refused with their reason and nothing changed, the
//! trial once, removal; the refusals a joining worker gets; and the warning admins read.

use axum::http::{Method, StatusCode};
use muster_core::Timestamp;
use muster_license::{Document, IssuerSecret, Terms};
use serde_json::{Value, json};

use super::{Api, Auth};
use crate::state::AppState;

const DAY_MS: i64 = 24 * 3600 * 1000;

fn days_from_now(days: i64) -> Timestamp {
    let now = crate::clock::Clock::system().now();
    Timestamp::from_unix_millis(now.unix_millis() + days * DAY_MS)
}

fn terms(max_workers: Option<u64>, expires_in_days: i64) -> Terms {
    Terms {
        id: "lic-router".into(),
        licensee: "ACME".into(),
        max_workers,
        issued_at: days_from_now(-1),
        expires_at: days_from_now(expires_in_days),
    }
}

/// A license signed by the issuer every test state trusts.
fn signed(max_workers: Option<u64>, expires_in_days: i64) -> String {
    muster_license::sign(
        AppState::test_issuer(),
        &terms(max_workers, expires_in_days),
    )
    .unwrap()
}

impl Api {
    async fn install(&self, license: &str) -> super::Reply {
        self.call(
            Method::PUT,
            "/api/v1/license",
            Auth::Admin,
            Some(json!({ "license": license })),
        )
        .await
    }

    async fn license(&self) -> Value {
        self.get("/api/v1/license")
            .await
            .expect(StatusCode::OK)
            .body
    }
}

#[tokio::test]
async fn a_server_starts_in_community_edition() {
    let api = Api::new();
    let shown = api.license().await;
    assert_eq!(shown["edition"], "community");
    assert_eq!(shown["state"], "valid");
    assert_eq!(shown["max_workers"], 0);
    assert_eq!(shown["workers_used"], 0);
    assert_eq!(shown["can_join"], false);
    assert_eq!(shown["licensee"], Value::Null);
    assert_eq!(shown["expires_at"], Value::Null);
    assert_eq!(shown["issuer"], Value::Null);
    for auth in [Auth::Missing, Auth::Wrong] {
        let reply = api.call(Method::GET, "/api/v1/license", auth, None).await;
        reply.refused(StatusCode::UNAUTHORIZED, "unauthorized", "");
    }
    api.call(
        Method::PUT,
        "/api/v1/license",
        Auth::Missing,
        Some(json!({"license": "x"})),
    )
    .await
    .refused(StatusCode::UNAUTHORIZED, "unauthorized", "");
    api.call(Method::DELETE, "/api/v1/license", Auth::Missing, None)
        .await
        .refused(StatusCode::UNAUTHORIZED, "unauthorized", "");
    api.call(Method::POST, "/api/v1/license/trial", Auth::Missing, None)
        .await
        .refused(StatusCode::UNAUTHORIZED, "unauthorized", "");
    assert_eq!(api.license().await["edition"], "community");
}

#[tokio::test]
async fn a_signed_license_is_installed_shown_and_removed() {
    let api = Api::new();
    let installed = api
        .install(&signed(Some(10), 365))
        .await
        .expect(StatusCode::OK);
    let view = installed.body;
    assert_eq!(view["edition"], "licensed");
    assert_eq!(view["state"], "valid");
    assert_eq!(view["licensee"], "ACME");
    assert_eq!(view["max_workers"], 10);
    assert_eq!(view["workers_used"], 0);
    assert_eq!(view["can_join"], true);
    assert_eq!(view["id"], "lic-router");
    assert_eq!(view["issuer"], AppState::test_issuer().public().id());
    assert_eq!(view["warning"], Value::Null);
    assert_eq!(api.license().await, view, "shown as installed");
    assert_eq!(api.actions().await[0], "license.changed ok");

    let removed = api
        .call(Method::DELETE, "/api/v1/license", Auth::Admin, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(removed.body["edition"], "community");
    assert_eq!(api.license().await["edition"], "community");
}

#[tokio::test]
async fn bad_licenses_are_refused_with_their_reason_and_change_nothing() {
    let api = Api::new();
    api.install(&signed(Some(3), 100))
        .await
        .expect(StatusCode::OK);
    let before = (api.everything().await, api.license().await);
    let stranger = IssuerSecret::generate().unwrap();
    let good = signed(None, 100);
    let tampered = {
        let mut bytes = good.clone().into_bytes();
        let i = "v4.public.".len() + 12;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let newer = muster_license::sign_document(
        AppState::test_issuer(),
        &Document {
            format_version: 2,
            ..Document::of(&terms(None, 100))
        },
    )
    .unwrap();
    let cases = [
        ("not a license".to_owned(), "the license is malformed"),
        (
            muster_license::sign(&stranger, &terms(None, 100)).unwrap(),
            "which this server does not trust",
        ),
        (tampered, "signature does not verify"),
        (
            muster_license::sign(
                AppState::test_issuer(),
                &Terms {
                    issued_at: days_from_now(-30),
                    ..terms(None, -1)
                },
            )
            .unwrap(),
            "the license expired on",
        ),
        (
            muster_license::sign(
                AppState::test_issuer(),
                &Terms {
                    issued_at: days_from_now(2),
                    ..terms(None, 100)
                },
            )
            .unwrap(),
            "the license is not valid yet",
        ),
        (
            newer,
            "format version 2; this server reads format version 1",
        ),
    ];
    for (license, reason) in cases {
        let reply =
            api.install(&license)
                .await
                .refused(StatusCode::BAD_REQUEST, "license_invalid", reason);
        assert!(!reply.hint().is_empty(), "{reason}: a hint");
    }
    let after = (api.everything().await, api.license().await);
    assert_eq!(after.1, before.1, "the license in force is unchanged");
    // The refused attempts are the audit log's only news.
    let audit = after.0["audit"].as_array().unwrap();
    let new = audit.len() - before.0["audit"].as_array().unwrap().len();
    assert_eq!(new, 6);
    assert!(audit[..new].iter().all(|e| e["outcome"] == "refused"));
    assert_eq!(after.0["tokens"], before.0["tokens"]);
    assert_eq!(after.0["workers"], before.0["workers"]);
}

#[tokio::test]
async fn the_trial_starts_once_per_fleet() {
    let api = Api::new();
    let started = api
        .post("/api/v1/license/trial", json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(started.body["edition"], "trial");
    assert_eq!(started.body["max_workers"], Value::Null);
    assert_eq!(started.body["can_join"], true);
    assert!(started.body["trial_started_at"].is_string());
    assert!(
        started.body["warning"]
            .as_str()
            .unwrap()
            .starts_with("the trial expires on "),
        "{}",
        started.body
    );
    api.call(Method::DELETE, "/api/v1/license", Auth::Admin, None)
        .await
        .expect(StatusCode::OK);
    let again = api.post("/api/v1/license/trial", json!({})).await.refused(
        StatusCode::CONFLICT,
        "license_trial_unavailable",
        "already ran, from ",
    );
    assert!(
        again.hint().contains("muster license install"),
        "{}",
        again.hint()
    );
    assert_eq!(api.license().await["edition"], "community");
}

#[tokio::test]
async fn every_join_is_refused_in_community_edition_and_its_preparation_warned_about() {
    let api = Api::new();
    let created = api
        .post(
            "/api/v1/tokens",
            json!({"name": "edge-1", "duration": "1h"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let warning = created.warning.expect("a warning for the admin");
    assert!(warning.contains("Community Edition"), "{warning}");
    assert!(warning.contains("muster license trial"), "{warning}");
    let token = created.body["token"].as_str().unwrap().to_owned();
    let refused = api
        .enroll(json!({"machine_id": "machine-0001", "token": token}))
        .await
        .refused(
            StatusCode::FORBIDDEN,
            "license_required",
            "this server runs muster Community Edition",
        );
    assert!(refused.hint().contains("muster license trial"));
    assert!(refused.hint().contains("muster license install"));

    let enabled = api
        .post("/api/v1/enrollment/enable", json!({"generate": true}))
        .await
        .expect(StatusCode::OK);
    assert!(enabled.warning.is_some(), "enabling auto-enrollment warns");
    let secret = enabled.body["generated_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    api.enroll(json!({"machine_id": "machine-0002", "name": "auto-1", "enrollment_key": secret}))
        .await
        .refused(
            StatusCode::FORBIDDEN,
            "license_required",
            "Community Edition",
        );
    let made = api
        .post("/api/v1/workers", json!({"name": "pre-1"}))
        .await
        .expect(StatusCode::CREATED);
    assert!(made.warning.is_some(), "creating a worker warns");
    // Answers that prepare nothing carry no warning; nor do refused requests.
    assert_eq!(api.get("/api/v1/workers").await.warning, None);
    assert_eq!(
        api.call(Method::GET, "/api/v1/workers", Auth::Wrong, None)
            .await
            .warning,
        None
    );
    // Nothing joined: only the pre-created worker exists.
    let workers = api.get("/api/v1/workers").await.body;
    assert_eq!(workers.as_array().unwrap().len(), 1);
    // The banner's memory of it.
    let shown = api.license().await;
    assert!(
        shown["last_refused"]
            .as_str()
            .unwrap()
            .contains("Community Edition"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_full_license_refuses_the_next_join_naming_used_and_limit() {
    let api = Api::new();
    api.install(&signed(Some(1), 365))
        .await
        .expect(StatusCode::OK);
    let first = api.token("edge-1").await;
    api.enroll(json!({"machine_id": "machine-0001", "token": first}))
        .await
        .expect(StatusCode::OK);
    let second = api
        .post(
            "/api/v1/tokens",
            json!({"name": "edge-2", "duration": "1h"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let warning = second.warning.expect("the seats are all taken");
    assert!(warning.contains("(1 of 1 used)"), "{warning}");
    let token = second.body["token"].as_str().unwrap().to_owned();
    let refused = api
        .enroll(json!({"machine_id": "machine-0002", "token": token}))
        .await
        .refused(
            StatusCode::FORBIDDEN,
            "license_seats_exhausted",
            "all 1 worker seats of the license are taken (1 of 1 used)",
        );
    assert!(
        refused.hint().contains("muster workers remove"),
        "{}",
        refused.hint()
    );
    let shown = api.license().await;
    assert_eq!(shown["workers_used"], 1);
    assert_eq!(shown["can_join"], false);
    // Removing the worker frees its seat at once.
    api.delete("/api/v1/workers/edge-1")
        .await
        .expect(StatusCode::NO_CONTENT);
    api.enroll(json!({"machine_id": "machine-0002", "token": token}))
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn a_license_that_expires_soon_is_named_on_every_admin_answer() {
    let api = Api::new();
    api.install(&signed(None, 10)).await.expect(StatusCode::OK);
    let shown = api.license().await;
    assert_eq!(shown["state"], "expiring");
    let warning = api.get("/api/v1/tokens").await.warning.expect("a warning");
    assert!(
        warning.starts_with("the license for `ACME` expires on "),
        "{warning}"
    );
    assert!(
        warning.contains("(in 9 days)") || warning.contains("(in 10 days)"),
        "{warning}"
    );
    // Workers and anonymous callers are not told.
    let health = api
        .call(Method::GET, "/api/v1/health", Auth::Missing, None)
        .await;
    assert_eq!(health.warning, None);
}

//! Settings → License through the router: the edition shown, the trial started from its
//! button, a license pasted (and a bad one refused with its reason), removal behind its
//! confirmation, and the banner every page shows.

use axum::http::{StatusCode, header};

use crate::state::AppState;
use crate::ui::tests::{Harness, get, harness, post, send, signed_in};

const PAGES: [&str; 6] = [
    "/workers",
    "/tokens",
    "/jobs",
    "/audit",
    "/settings/security",
    "/settings/license",
];

fn signed(max_workers: Option<u64>, expires_in_days: i64) -> String {
    let day = 24 * 3600 * 1000;
    let now = crate::clock::Clock::system().now().unix_millis();
    let at = muster_core::Timestamp::from_unix_millis;
    muster_license::sign(
        AppState::test_issuer(),
        &muster_license::Terms {
            id: "lic-ui".into(),
            licensee: "Ünïcode & Co".into(),
            max_workers,
            issued_at: at(now - day),
            expires_at: at(now + expires_in_days * day),
        },
    )
    .unwrap()
}

async fn page(h: &Harness, session: &str, path: &str) -> String {
    let reply = send(h, get(path, session)).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    reply.body
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn the_trial_starts_from_its_button_and_every_page_then_shows_its_end() {
    let h = harness();
    let (session, csrf) = signed_in(&h).await;
    let before = page(&h, &session, "/settings/license").await;
    assert!(before.contains("Community Edition"), "{before}");
    assert!(before.contains("Start the 30-day trial"));
    for path in PAGES {
        assert!(
            !page(&h, &session, path)
                .await
                .contains("notice warn license"),
            "{path}: no banner in Community Edition before anything was refused"
        );
    }
    let started = send(
        &h,
        post("/settings/license/trial", &session, &format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER);
    assert_eq!(started.header(header::LOCATION), "/settings/license");
    let after = page(&h, &session, "/settings/license").await;
    assert!(after.contains("The 30-day trial started"), "{after}");
    assert!(!after.contains("Start the 30-day trial"), "once per fleet");
    for path in PAGES {
        let body = page(&h, &session, path).await;
        assert!(
            body.contains("notice warn license") && body.contains("The trial expires on"),
            "{path}: the banner"
        );
    }
    // The fragments a page polls carry no banner (nor read it).
    let live = send(
        &h,
        axum::http::Request::get("/workers/live")
            .header(header::COOKIE, &session)
            .header("x-muster-fragment", "1")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert!(!live.body.contains("notice warn license"));
}

#[tokio::test]
async fn a_pasted_license_is_installed_and_a_bad_one_refused_with_its_reason() {
    let h = harness();
    let (session, csrf) = signed_in(&h).await;
    let bad = send(
        &h,
        post(
            "/settings/license/install",
            &session,
            &format!("csrf={csrf}&license=v4.public.nonsense"),
        ),
    )
    .await;
    assert_eq!(bad.status, StatusCode::SEE_OTHER);
    let shown = page(&h, &session, "/settings/license").await;
    assert!(shown.contains("notice error"), "{shown}");
    assert!(shown.contains("The license is malformed"), "{shown}");
    assert!(shown.contains("Community Edition"), "nothing changed");

    let license = signed(Some(5), 400);
    let good = send(
        &h,
        post(
            "/settings/license/install",
            &session,
            &format!("csrf={csrf}&license={}", encode(&license)),
        ),
    )
    .await;
    assert_eq!(good.status, StatusCode::SEE_OTHER);
    let shown = page(&h, &session, "/settings/license").await;
    assert!(shown.contains("Installed the license for"), "{shown}");
    assert!(shown.contains("Ünïcode &amp; Co"), "{shown}");
    assert!(shown.contains("0 of 5 used"), "{shown}");
    assert!(
        !shown.contains("notice warn license"),
        "a year away: no banner"
    );

    // Removal asks first, then leaves Community Edition.
    let confirm = page(&h, &session, "/settings/license/remove").await;
    assert!(confirm.contains("Remove the license?"));
    let removed = send(
        &h,
        post(
            "/settings/license/remove",
            &session,
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    let shown = page(&h, &session, "/settings/license").await;
    assert!(shown.contains("The license is removed"), "{shown}");
}

#[tokio::test]
async fn refused_joins_put_a_banner_on_every_page_until_a_license_lifts_them() {
    let h = harness();
    let (session, _) = signed_in(&h).await;
    let refusal = muster_core::license::JoinRefusal::Community;
    crate::license::refused(&h.app, &crate::license::join_error(&refusal)).await;
    for path in PAGES {
        let body = page(&h, &session, path).await;
        assert!(
            body.contains("notice error license")
                && body.contains("External workers are being refused"),
            "{path}: {body}"
        );
        assert!(body.contains(r#"href="/settings/license""#));
    }
    let install = crate::ops::license::install(
        &h.app,
        &crate::ops::Actor {
            name: "admin".into(),
            remote: None,
        },
        &signed(None, 400),
    )
    .await;
    assert!(install.is_ok());
    assert!(
        !page(&h, &session, "/workers")
            .await
            .contains("External workers are being refused"),
        "lifted by the license"
    );
}

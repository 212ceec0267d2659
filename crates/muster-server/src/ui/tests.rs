//! The UI driven through the router without a socket: sign-in, sessions, CSRF, one-time secrets
//! and the headers every page carries. (The browser end-to-end test is in muster-cli's
//! `tests/ui`.) Over 400 lines: every test here shares the harness and the sign-in helpers at
//! the top.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use muster_core::credentials::SlowHash;
use rand::rngs::OsRng;
use tower::ServiceExt;

use crate::state::AppState;
use crate::ui::account::Account;
use crate::ui::{CONTENT_SECURITY_POLICY, UiState};

const PASSWORD: &str = "correct horse battery staple";
const ADMIN_TOKEN: &str = AppState::TEST_ADMIN_TOKEN;

pub(crate) struct Harness {
    pub(crate) app: AppState,
    ui: Arc<UiState>,
    _dir: tempfile::TempDir,
}

pub(crate) fn harness() -> Harness {
    let (app, dir) = AppState::for_tests();
    let ui = Arc::new(UiState::new(Account {
        user: "admin".into(),
        hash: SlowHash::create(PASSWORD, &mut OsRng),
    }));
    Harness { app, ui, _dir: dir }
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    response: Response<()>,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: header::HeaderName) -> &str {
        self.response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn cookies(&self) -> Vec<String> {
        self.response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// The value of the first hidden `csrf` field on the page.
    fn csrf(&self) -> String {
        let start = self
            .body
            .find(r#"name="csrf" value=""#)
            .expect("a csrf field")
            + 19;
        let rest = &self.body[start..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

pub(crate) async fn send(h: &Harness, req: Request<Body>) -> Reply {
    let mut req = req;
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 4000))));
    let response = crate::router(h.app.clone(), Arc::clone(&h.ui))
        .oneshot(req)
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        response: Response::from_parts(parts, ()),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub(crate) fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

pub(crate) fn post(path: &str, cookie: &str, form: &str) -> Request<Body> {
    Request::post(path)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap()
}

/// `name=value` of the cookie a reply sets.
fn cookie_pair(reply: &Reply, name: &str) -> String {
    reply
        .cookies()
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", reply.cookies()))
}

async fn try_signin(h: &Harness, password: &str) -> Reply {
    let page = send(h, get("/signin", "")).await;
    let signin_cookie = cookie_pair(&page, "muster_signin");
    let form = format!(
        "csrf={}&user=admin&password={}&next=%2Ftokens",
        page.csrf(),
        password.replace(' ', "+")
    );
    send(h, post("/signin", &signin_cookie, &form)).await
}

/// Signs in; returns the session cookie and the session's CSRF token.
pub(crate) async fn signed_in(h: &Harness) -> (String, String) {
    let reply = try_signin(h, PASSWORD).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let session = cookie_pair(&reply, "muster_session");
    let page = send(h, get("/workers", &session)).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();
    (session, csrf)
}

#[tokio::test]
async fn pages_need_a_session_and_fragments_say_401() {
    let h = harness();
    let reply = send(&h, get("/tokens?x=1", "")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(
        reply.header(header::LOCATION),
        "/signin?next=/tokens%3Fx%3D1"
    );
    let fragment = Request::get("/workers/live")
        .header("x-muster-fragment", "1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&h, fragment).await.status, StatusCode::UNAUTHORIZED);
    let forged = send(&h, get("/workers", "muster_session=not-a-session")).await;
    assert_eq!(forged.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn sign_in_refuses_a_wrong_password_then_sets_a_strict_http_only_cookie() {
    let h = harness();
    let wrong = try_signin(&h, "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Wrong user name or password"));
    assert!(
        wrong
            .cookies()
            .iter()
            .all(|c| !c.starts_with("muster_session"))
    );

    let ok = try_signin(&h, PASSWORD).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.header(header::LOCATION), "/tokens");
    let cookie = ok
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("muster_session="))
        .unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let id = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("muster_session=");
    assert_eq!(id.len(), 43, "256 random bits");

    // Without the sign-in form's own token the form is refused.
    let forged = send(
        &h,
        post(
            "/signin",
            "",
            &format!("csrf=x&user=admin&password={PASSWORD}"),
        ),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    // The audit log has both attempts and neither password.
    let records = h
        .app
        .store
        .read(|tx| {
            tx.list_audit(&muster_store::AuditFilter {
                action_prefix: Some("ui.signin".into()),
                limit: 10,
                ..Default::default()
            })
        })
        .await
        .unwrap();
    let text = format!("{records:?}");
    assert!(text.contains("wrong user name or password"));
    assert!(!text.contains("not the password") && !text.contains(PASSWORD));
}

#[tokio::test]
async fn wrong_passwords_are_rate_limited_per_address() {
    let h = harness();
    for _ in 0..5 {
        assert_eq!(
            try_signin(&h, "wrong wrong").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = try_signin(&h, PASSWORD).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.body.contains("Too many failed sign-ins"));
}

/// Before: the limit was checked, then Argon2 ran, then the failure was recorded, so 50
/// concurrent wrong passwords from one address were all checked against a limit of 5 a minute.
/// Now each attempt is reserved before its check: at most five are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_passwords_get_at_most_the_limit_of_checks() {
    let h = harness();
    let attempts = (0..50).map(|_| try_signin(&h, "wrong wrong"));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|reply| reply.status)
        .collect();
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked + limited, 50, "{statuses:?}");
    assert!(checked <= 5, "{checked} passwords were checked");
    assert!(checked >= 1);
}

/// A record whose text held a forged line and a terminal escape shows them escaped, not raw.
#[tokio::test]
async fn the_audit_page_shows_control_characters_escaped() {
    let h = harness();
    let event = h.app.audit_event(
        "machine:m1",
        "connect",
        "w1",
        None,
        muster_core::audit::Outcome::Refused,
        "refused\r\n2026-01-01 admin token.create\x1b[2J",
    );
    h.app.record(event).await;
    let (session, _) = signed_in(&h).await;
    let audit = send(&h, get("/audit?action=connect", &session)).await;
    assert!(
        audit
            .body
            .contains("refused\\r\\n2026-01-01 admin token.create\\x1b[2J"),
        "{}",
        audit.body
    );
    assert!(!audit.body.contains('\x1b') && !audit.body.contains("refused\r"));
}

#[tokio::test]
async fn every_ui_response_carries_the_security_headers() {
    let h = harness();
    let (session, _) = signed_in(&h).await;
    for path in [
        "/signin",
        "/workers",
        "/tokens",
        "/nowhere",
        "/ui/assets/app.css",
    ] {
        let reply = send(&h, get(path, &session)).await;
        assert_eq!(
            reply.header(header::CONTENT_SECURITY_POLICY),
            CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(reply.header(header::X_FRAME_OPTIONS), "DENY");
        assert_eq!(reply.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(reply.header(header::REFERRER_POLICY), "no-referrer");
    }
    assert_eq!(
        send(&h, get("/nowhere", &session)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&h, get("/workers", &session))
            .await
            .header(header::CACHE_CONTROL),
        "no-store"
    );
    // The API is untouched: JSON errors, bearer auth.
    let api = send(&h, get("/api/v1/nowhere", "")).await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert!(api.body.contains("\"code\""));
    let with_cookie_only = send(&h, get("/api/v1/workers", &session)).await;
    assert_eq!(
        with_cookie_only.status,
        StatusCode::UNAUTHORIZED,
        "a UI session is not an API credential"
    );
    let bearer = Request::get("/api/v1/workers")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&h, bearer).await.status, StatusCode::OK);
}

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused_and_change_nothing() {
    let h = harness();
    let (session, csrf) = signed_in(&h).await;
    let reply = send(&h, post("/tokens", &session, "name=edge-01&duration=1h")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let wrong = send(
        &h,
        post("/tokens", &session, "csrf=AAAA&name=edge-01&duration=1h"),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(
        h.app
            .store
            .read(|tx| tx.list_tokens())
            .await
            .unwrap()
            .is_empty()
    );
    let ok = send(
        &h,
        post(
            "/tokens",
            &session,
            &format!("csrf={csrf}&name=edge-01&duration=1h"),
        ),
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(
        h.app.store.read(|tx| tx.list_tokens()).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn a_created_token_is_shown_once_and_form_errors_name_the_rule() {
    let h = harness();
    let (session, csrf) = signed_in(&h).await;
    let bad = send(
        &h,
        post(
            "/tokens",
            &session,
            &format!("csrf={csrf}&name=Bad+Name&duration=soon&labels=nokey"),
        ),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body
            .contains("Label <code>nokey</code> is not of the form key=value."),
        "{}",
        bad.body
    );
    let bad = send(
        &h,
        post(
            "/tokens",
            &session,
            &format!("csrf={csrf}&name=Bad+Name&duration=1h"),
        ),
    )
    .await;
    assert!(bad.body.contains(r#"id="name-error""#), "{}", bad.body);
    assert!(
        bad.body.contains("value=\"Bad Name\""),
        "typed values are kept"
    );

    let created = send(
        &h,
        post(
            "/tokens",
            &session,
            &format!("csrf={csrf}&name=edge-01&duration=2h&labels=region%3Deu"),
        ),
    )
    .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER);
    let first = send(&h, get("/tokens", &session)).await;
    let start = first.body.find("edge-01.").expect("the plaintext is shown");
    let plaintext: String = first.body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    assert!(plaintext.len() > 50, "{plaintext}");
    assert!(first.body.contains("muster worker --url http://"));
    let again = send(&h, get("/tokens", &session)).await;
    assert!(again.body.contains("edge-01"));
    assert!(!again.body.contains(&plaintext), "shown once only");
    let secret = plaintext.split_once('.').unwrap().1;
    let audit = send(&h, get("/audit", &session)).await;
    assert!(audit.body.contains("token.create"));
    assert!(!audit.body.contains(secret));
}

/// Each refusal of the shared operation is shown beside the form field it is about; one that is
/// about no field is shown above the form.
#[tokio::test]
async fn enrollment_settings_errors_are_filed_under_their_fields() {
    let h = harness();
    let (session, csrf) = signed_in(&h).await;
    let cases = [
        (
            "secret_mode=generate&max_enrollments=0",
            "max_enrollments-error",
        ),
        (
            "secret_mode=generate&name_pattern=Not+A+Pattern",
            "name_pattern-error",
        ),
        ("secret_mode=generate&for=soon", "for-error"),
        (
            "secret_mode=set&secret=tooshort-secret",
            "enable-secret-error",
        ),
    ];
    for (form, id) in cases {
        let reply = send(
            &h,
            post(
                "/settings/security/enable",
                &session,
                &format!("csrf={csrf}&{form}"),
            ),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{form}");
        assert!(
            reply.body.contains(&format!(r#"id="{id}""#)),
            "{form}: {}",
            reply.body
        );
        assert_eq!(reply.body.matches("field-error").count(), 1, "{form}");
    }
}

#[tokio::test]
async fn the_generated_enrollment_secret_is_shown_once_and_a_short_one_is_refused() {
    let h = harness();
    let (session, csrf) = signed_in(&h).await;
    let short = send(
        &h,
        post(
            "/settings/security/enable",
            &session,
            &format!("csrf={csrf}&secret_mode=set&secret=tooshort-secret&for=&max_enrollments=0"),
        ),
    )
    .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(short.body.contains("at least 1"), "{}", short.body);
    assert!(
        !short.body.contains("tooshort-secret"),
        "a typed secret is never shown back"
    );
    let short = send(
        &h,
        post(
            "/settings/security/enable",
            &session,
            &format!("csrf={csrf}&secret_mode=set&secret=tooshort-secret&for="),
        ),
    )
    .await;
    assert!(
        short.body.contains("must be at least 32 characters"),
        "{}",
        short.body
    );
    assert!(short.body.contains(r#"id="enable-secret-error""#));
    assert!(!short.body.contains("tooshort-secret"));
    let bad_window = send(
        &h,
        post(
            "/settings/security/enable",
            &session,
            &format!("csrf={csrf}&secret_mode=generate&for=soon"),
        ),
    )
    .await;
    assert!(
        bad_window.body.contains(r#"id="for-error""#),
        "{}",
        bad_window.body
    );

    let enabled = send(
        &h,
        post(
            "/settings/security/enable",
            &session,
            &format!(
                "csrf={csrf}&secret_mode=generate&for=2h&max_enrollments=3&name_pattern=edge-*"
            ),
        ),
    )
    .await;
    assert_eq!(enabled.status, StatusCode::SEE_OTHER, "{}", enabled.body);
    let page = send(&h, get("/settings/security", &session)).await;
    let start = page
        .body
        .find(r#"id="generated-secret">"#)
        .expect("shown once")
        + 22;
    let secret: String = page.body[start..]
        .chars()
        .take_while(|c| *c != '<')
        .collect();
    assert_eq!(secret.len(), 43);
    assert!(page.body.contains("edge-*"));
    let again = send(&h, get("/settings/security", &session)).await;
    assert!(!again.body.contains(&secret));
    let audit = send(&h, get("/audit?action=enrollment.", &session)).await;
    assert!(audit.body.contains("enrollment.enable"));
    assert!(!audit.body.contains(&secret));

    let off = send(
        &h,
        post(
            "/settings/security/disable",
            &session,
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(off.status, StatusCode::SEE_OTHER);
    let page = send(&h, get("/settings/security", &session)).await;
    assert!(
        page.body.contains("auto-enrollment is off")
            || page.body.contains("Auto-enrollment is off")
    );
}

#[tokio::test]
async fn sign_out_ends_the_session() {
    let h = harness();
    let (session, csrf) = signed_in(&h).await;
    let out = send(&h, post("/signout", &session, &format!("csrf={csrf}"))).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.cookies().iter().any(|c| c.contains("Max-Age=0")));
    assert_eq!(
        send(&h, get("/workers", &session)).await.status,
        StatusCode::SEE_OTHER
    );
    assert!(h.ui.sessions.is_empty());
}

/// The Workers page holds one page of the fleet, filtered on the server, with a link to the next
/// page that keeps the filters; the live fragment answers for the same page.
#[tokio::test]
async fn the_workers_page_pages_and_filters_on_the_server() {
    let h = harness();
    let (session, _) = signed_in(&h).await;
    let actor = crate::ops::Actor {
        name: "admin".into(),
        remote: None,
    };
    for i in 0..105 {
        let pool = if i % 5 == 0 { "gpu" } else { "cpu" };
        crate::ops::workers::create(
            &h.app,
            &actor,
            None,
            &muster_proto::api::CreateWorkerRequest {
                name: format!("w-{i:03}"),
                labels: [("pool".to_owned(), pool.to_owned())].into(),
            },
        )
        .await
        .expect("created");
    }
    let first = send(&h, get("/workers", &session)).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(
        first.body.contains("w-099") && !first.body.contains("w-100"),
        "one page of 100"
    );
    let next = first
        .body
        .split("id=\"next-page\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a link to the next page")
        .replace("&amp;", "&");
    let second = send(&h, get(&next, &session)).await;
    assert!(
        second.body.contains("w-104") && !second.body.contains("w-099"),
        "{}",
        second.body
    );
    assert!(!second.body.contains("id=\"next-page\""), "the last page");

    let gpu = send(
        &h,
        get("/workers?label=pool%3Dgpu&status=disconnected", &session),
    )
    .await;
    assert!(gpu.body.contains("w-000") && gpu.body.contains("w-100"));
    assert!(!gpu.body.contains("w-001"), "filtered on the server");
    assert!(gpu.body.contains("21 workers shown"), "{}", gpu.body);
    let none = send(&h, get("/workers?status=connected", &session)).await;
    assert!(none.body.contains("No worker matches this filter."));
}

#[tokio::test]
async fn the_new_forms_need_the_csrf_token_and_then_work() {
    let h = harness();
    let (session, csrf) = signed_in(&h).await;
    for (path, body) in [
        ("/workers", "name=edge-02"),
        ("/jobs", "command=true&worker=builtin"),
        ("/workers/edge-02/remove", ""),
    ] {
        let reply = send(&h, post(path, &session, body)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert!(
        crate::ops::workers::show(&h.app, "edge-02").await.is_err(),
        "nothing was created"
    );

    // Pre-create: the worker's page shows its key and command once.
    let created = send(
        &h,
        post(
            "/workers",
            &session,
            &format!("csrf={csrf}&name=edge-02&labels=region%3Deu"),
        ),
    )
    .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER);
    assert_eq!(created.header(header::LOCATION), "/workers/edge-02");
    let page = send(&h, get("/workers/edge-02", &session)).await;
    assert!(page.body.contains("id=\"created-key\""), "{}", page.body);
    assert!(page.body.contains("MUSTER_WORKER_API_KEY=") && page.body.contains("region=eu"));
    let again = send(&h, get("/workers/edge-02", &session)).await;
    assert!(!again.body.contains("created-key"), "shown once");
    let row = send(&h, get("/workers/edge-02/row", &session)).await;
    assert!(row.body.starts_with("<tr") && row.body.contains("data-name=\"edge-02\""));

    // A job: a command line split as a shell would, refused with the reason when it cannot run.
    let refused = send(
        &h,
        post(
            "/jobs",
            &session,
            &format!("csrf={csrf}&command=true&worker=nobody"),
        ),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("nobody"), "{}", refused.body);
    let unclosed = send(
        &h,
        post(
            "/jobs",
            &session,
            &format!("csrf={csrf}&command=echo+%27oops"),
        ),
    )
    .await;
    assert!(unclosed.body.contains("unclosed quote"));
    let job = send(
        &h,
        post(
            "/jobs",
            &session,
            &format!("csrf={csrf}&command=sh+-c+%27echo+a+b%27&labels=region%3Deu"),
        ),
    )
    .await;
    assert_eq!(job.status, StatusCode::SEE_OTHER);
    let id = job
        .header(header::LOCATION)
        .trim_start_matches("/jobs/")
        .to_owned();
    let view = crate::ops::jobs::show(&h.app, &id).await.expect("the job");
    assert_eq!(view.command, ["sh", "-c", "echo a b"]);

    // Remove: the worker is gone.
    let removed = send(
        &h,
        post("/workers/edge-02/remove", &session, &format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    assert!(crate::ops::workers::show(&h.app, "edge-02").await.is_err());

    // The overview counts what is there.
    let total = crate::ops::workers::list(&h.app).await.unwrap().len();
    let overview = send(&h, get("/workers/overview", &session)).await;
    assert!(
        overview
            .body
            .contains(&format!("data-count=\"total\">{total}<")),
        "{}",
        overview.body
    );
}

/// Creates worker `name` through the page's form.
async fn precreate(h: &Harness, session: &str, csrf: &str, name: &str) {
    let created = send(
        h,
        post("/workers", session, &format!("csrf={csrf}&name={name}")),
    )
    .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
}

/// Writes an audit record with this actor and target.
async fn record(h: &Harness, actor: &str, action: &str, target: &str) {
    let event = muster_core::audit::AuditEvent {
        at: h.app.clock.now(),
        actor: actor.into(),
        action: action.into(),
        target: target.into(),
        remote_addr: None,
        outcome: muster_core::audit::Outcome::Ok,
        detail: format!("about {target}"),
        expected: None,
    };
    h.app
        .store
        .write(move |tx| tx.insert_audit(&event))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_worker_page_reads_its_own_audit_trail_and_links_to_the_older_records() {
    let h = harness();
    let (session, csrf) = signed_in(&h).await;
    precreate(&h, &session, &csrf, "edge-9").await;
    precreate(&h, &session, &csrf, "edge-90").await;
    // 24 records about edge-9 (its own actions and ones on it), and newer ones that merely
    // mention its name: another worker's, a detail quoting it.
    for i in 0..12 {
        record(&h, "worker:edge-9", "worker.report", &format!("job-{i}")).await;
        record(&h, "admin", "worker.label", "edge-9").await;
    }
    for _ in 0..30 {
        record(&h, "worker:edge-90", "worker.report", "edge-90").await;
    }
    let page = send(&h, get("/workers/edge-9", &session)).await;
    assert_eq!(page.status, StatusCode::OK);
    let trail = &page.body[page.body.find("ol class=\"trail\"").expect("a trail")..];
    let trail = &trail[..trail.find("</ol>").unwrap()];
    assert_eq!(trail.matches("<li>").count(), 20, "the newest 20: {trail}");
    assert!(!trail.contains("edge-90"), "none about edge-90: {trail}");
    let start = page
        .body
        .find("id=\"audit-more\" href=\"")
        .expect("a link to older records")
        + 22;
    let more = page.body[start..][..page.body[start..].find('"').unwrap()].replace("&amp;", "&");
    assert!(more.starts_with("/audit?worker=edge-9&after="), "{more}");
    // The rest of its trail: the 4 older records and its creation, nothing about edge-90.
    let older = send(&h, get(&more, &session)).await;
    assert_eq!(older.status, StatusCode::OK);
    let rows = older.body.matches("data-label=\"When\"").count();
    assert_eq!(rows, 5, "{}", older.body);
    assert!(older.body.contains("worker.create") && !older.body.contains("edge-90<"));
    assert!(
        older.body.contains("id=\"audit-worker\""),
        "says whose records these are"
    );
    // The API answers the same question.
    let api = send(
        &h,
        Request::get("/api/v1/audit?worker=edge-9&limit=100")
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let entries: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 25, "{}", api.body);
}

#[tokio::test]
async fn workers_sort_by_the_column_headings_keeping_the_filters() {
    let h = harness();
    let (session, csrf) = signed_in(&h).await;
    for name in ["b-eu", "a-eu", "c-us"] {
        precreate(&h, &session, &csrf, name).await;
    }
    let page = send(&h, get("/workers?name=eu&sort=-name", &session)).await;
    assert_eq!(page.status, StatusCode::OK);
    let (b, a) = (
        page.body.find("data-name=\"b-eu\"").unwrap(),
        page.body.find("data-name=\"a-eu\"").unwrap(),
    );
    assert!(b < a, "reverse name order");
    assert!(
        !page.body.contains("data-name=\"c-us\""),
        "the filter holds"
    );
    // The heading in use says so and links to the other way; the others start newest first;
    // every link keeps the filter.
    assert!(
        page.body.contains("aria-sort=\"descending\""),
        "{}",
        page.body
    );
    for link in [
        "href=\"/workers?name=eu&amp;label=&amp;status=&amp;sort=name\"",
        "href=\"/workers?name=eu&amp;label=&amp;status=&amp;sort=-created\"",
        "href=\"/workers?name=eu&amp;label=&amp;status=&amp;sort=-last_seen\"",
    ] {
        assert!(page.body.contains(link), "{link} in {}", page.body);
    }
    assert!(page.body.contains("in reverse name order"));
    // The live refresh asks for the same order.
    assert!(
        page.body
            .contains("data-poll=\"/workers/live?name=eu&amp;label=&amp;status=&amp;sort=-name")
    );
    // An unknown order is the default, not an error page.
    let odd = send(&h, get("/workers?sort=colour", &session)).await;
    assert_eq!(odd.status, StatusCode::OK);
    assert!(odd.body.contains("in name order"));
}

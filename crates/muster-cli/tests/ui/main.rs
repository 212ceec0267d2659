//! The web admin UI in a real headless Chromium, against real `muster serve` and `muster worker`
//! processes: the operator's flow from the auto-enrollment seed (sign in → Settings → License:
//! start the trial → Settings → Security: enable with a generated secret → a worker joins and
//! shows up in Workers without a reload → revoke it there → it is cut off), and tokens, jobs,
//! audit, CSRF and a phone-sized window.
//!
//! Screenshots of every page land in `target/ui-screenshots/`. Without Chromium and
//! chromedriver these tests fail and say how to install them; they never pass silently.

mod browser;
mod fleet;
mod harness;
mod order;

use std::time::Duration;

use browser::{Browser, DESKTOP, PHONE};
use harness::Server;
use serde_json::json;

/// The browser tests share two cores with everything else: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn sign_in(browser: &Browser, server: &Server) {
    browser.goto(&format!("{}/workers", server.url)).await;
    assert_eq!(browser.path().await, "/signin", "pages need a session");
    browser.fill("#password", &server.password).await;
    browser.click("form.card button[type=submit]").await;
    browser.wait_url("/workers", Duration::from_secs(10)).await;
    browser.wait_for("main h1", Duration::from_secs(10)).await;
    assert_eq!(browser.path().await, "/workers", "{}", browser.text().await);
}

async fn nav(browser: &Browser, label: &str) {
    let link = browser
        .client
        .find(fantoccini::Locator::LinkText(label))
        .await
        .unwrap_or_else(|e| panic!("no `{label}` link: {e}"));
    let before = browser.url().await;
    link.click().await.expect("the link can be followed");
    // Do not look for the next page's elements on the old one while the browser navigates.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while browser.url().await == before && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_flow_enable_auto_enrollment_watch_a_worker_join_and_revoke_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let started = std::time::Instant::now();
    let server = Server::start();
    let browser = Browser::start().await;

    // Sign in: a wrong password is refused, the right one lets us in.
    browser.goto(&format!("{}/", server.url)).await;
    assert_eq!(browser.path().await, "/signin");
    browser.screenshot("01-sign-in", DESKTOP).await;
    browser.fill("#password", "not the password at all").await;
    browser.click("form.card button[type=submit]").await;
    let refusal = browser
        .wait_for("#signin-error", Duration::from_secs(10))
        .await;
    assert!(
        refusal
            .text()
            .await
            .unwrap()
            .contains("Wrong user name or password")
    );
    assert_eq!(browser.path().await, "/signin");
    browser.screenshot("02-sign-in-refused", DESKTOP).await;
    browser.fill("#password", &server.password).await;
    browser.click("form.card button[type=submit]").await;
    browser.wait_url("/workers", Duration::from_secs(10)).await;
    browser.wait_for("main h1", Duration::from_secs(10)).await;
    assert_eq!(browser.path().await, "/workers");

    // Settings → License: a new server runs Community Edition; the trial lets workers join.
    nav(&browser, "Settings").await;
    nav(&browser, "License").await;
    assert_eq!(browser.path().await, "/settings/license");
    let page = browser.text().await;
    assert!(page.contains("Community Edition"), "{page}");
    browser
        .screenshot("03-settings-license-community", DESKTOP)
        .await;
    browser
        .click("#trial-title ~ form button[type=submit]")
        .await;
    let trial = browser
        .wait_for(".notice.ok", Duration::from_secs(10))
        .await
        .text()
        .await
        .unwrap();
    assert!(trial.contains("The 30-day trial started"), "{trial}");
    let banner = browser.find(".notice.license").await.text().await.unwrap();
    assert!(banner.contains("The trial expires on"), "{banner}");
    browser
        .screenshot("03-settings-license-trial", DESKTOP)
        .await;

    // Settings → Security: switch auto-enrollment on with a generated secret.
    nav(&browser, "Security").await;
    assert_eq!(browser.path().await, "/settings/security");
    assert!(browser.text().await.contains("not set"));
    browser
        .click("input[name=secret_mode][value=generate]")
        .await;
    browser.fill("#for", "1h").await;
    browser.fill("#max_enrollments", "5").await;
    browser
        .click("#enable-title ~ form button[type=submit]")
        .await;
    let shown = browser
        .wait_for("#generated-secret", Duration::from_secs(10))
        .await;
    let secret = shown.text().await.unwrap();
    assert_eq!(secret.len(), 43, "256 random bits, base64url: {secret}");
    let command = browser.find("#secret-command").await.text().await.unwrap();
    assert!(command.contains(&secret) && command.contains(&server.fingerprint));
    assert!(
        browser
            .find("button[data-copy=generated-secret]")
            .await
            .is_displayed()
            .await
            .unwrap()
    );
    browser
        .screenshot("03-settings-security-one-time-secret", DESKTOP)
        .await;

    // Shown once: a reload does not show it again.
    browser.client.refresh().await.unwrap();
    browser
        .wait_for("#auto-title", Duration::from_secs(10))
        .await;
    assert!(!browser.has("#generated-secret").await);
    assert!(!browser.source().await.contains(&secret));
    let facts = browser.find("dl.facts").await.text().await.unwrap();
    assert!(facts.contains("on"), "{facts}");
    browser.screenshot("04-settings-security", DESKTOP).await;

    // Workers: a real worker enrolls with the secret and appears without a reload.
    nav(&browser, "Workers").await;
    browser
        .client
        .execute("window.notReloaded = true;", vec![])
        .await
        .unwrap();
    let mut worker = server.worker_with_secret("e2e-worker-1", &secret);
    let row = "tr[data-status=connected] #revoke-e2e-worker-1";
    browser.wait_for(row, Duration::from_secs(30)).await;
    let same_page = browser
        .client
        .execute("return window.notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same_page, json!(true), "the row appeared without a reload");
    let table = browser.find("#fleet table").await.text().await.unwrap();
    assert!(
        table.contains("e2e-worker-1") && table.contains("secret"),
        "{table}"
    );
    browser.screenshot("05-workers", DESKTOP).await;

    // Revoke it, with a confirmation step; the worker process is cut off (exit 5).
    browser.click(row).await;
    browser
        .wait_for(".card.confirm", Duration::from_secs(10))
        .await;
    assert_eq!(browser.path().await, "/workers/e2e-worker-1/revoke");
    browser.screenshot("06-revoke-confirmation", DESKTOP).await;
    browser.click(".card.confirm button.danger").await;
    browser
        .wait_for(".notice.ok", Duration::from_secs(10))
        .await;
    assert_eq!(browser.path().await, "/workers");
    let status = worker.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(5), "revoked: {}", worker.stderr());
    browser
        .wait_for("tr[data-status=revoked]", Duration::from_secs(10))
        .await;
    assert!(!browser.has("#revoke-e2e-worker-1").await);

    // The secret went to no log and no audit record.
    nav(&browser, "Audit").await;
    let audit = browser.text().await;
    assert!(
        audit.contains("enroll.secret") && audit.contains("worker.revoke"),
        "{audit}"
    );
    assert!(!browser.source().await.contains(&secret));
    assert!(!server.logs().contains(&secret), "the secret is not logged");

    browser.close().await;
    eprintln!("seed flow took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_jobs_audit_csrf_and_a_phone_sized_window() {
    let _one = ONE_AT_A_TIME.lock().await;
    let started = std::time::Instant::now();
    let server = Server::start();
    let browser = Browser::start().await;
    sign_in(&browser, &server).await;

    // Tokens: create one; its plaintext and a worker command are shown exactly once.
    nav(&browser, "Tokens").await;
    browser.fill("#name", "edge-01").await;
    browser.fill("#duration", "2h").await;
    browser.fill("#labels", "region=eu\nrack=r12").await;
    browser.click(".create-token button[type=submit]").await;
    let token = browser
        .wait_for("#created-token", Duration::from_secs(10))
        .await
        .text()
        .await
        .unwrap();
    assert!(token.starts_with("edge-01.") && token.len() > 50, "{token}");
    let command = browser.find("#created-command").await.text().await.unwrap();
    assert!(
        command.starts_with("muster worker --url https://127.0.0.1:"),
        "{command}"
    );
    assert!(command.contains(&format!("--token {token}")));
    assert!(command.contains(&format!("--ca-fingerprint {}", server.fingerprint)));
    browser.click("button[data-copy=created-token]").await;
    browser
        .screenshot("07-tokens-one-time-secret", DESKTOP)
        .await;
    browser.client.refresh().await.unwrap();
    browser
        .wait_for("#list-title", Duration::from_secs(10))
        .await;
    assert!(!browser.has("#created-token").await);
    let secret = token.split_once('.').unwrap().1.to_owned();
    assert!(!browser.source().await.contains(&secret), "shown once only");
    let list = browser.find("table.data").await.text().await.unwrap();
    assert!(
        list.contains("edge-01") && list.contains("unused"),
        "{list}"
    );

    // A form error names the rule, next to the field.
    browser.fill("#name", "Edge 02").await;
    browser.click(".create-token button[type=submit]").await;
    let error = browser
        .wait_for("#name-error", Duration::from_secs(10))
        .await;
    assert!(error.text().await.unwrap().contains("Edge 02"));
    browser.screenshot("08-tokens", DESKTOP).await;

    // A POST without the CSRF token is refused, and changes nothing.
    let status = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/tokens', {method: 'POST', credentials: 'same-origin',
                 headers: {'content-type': 'application/x-www-form-urlencoded'},
                 body: 'name=forged&duration=1h'})
               .then(r => done(r.status), e => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));
    let listed = server.admin(&["token", "list", "--json"]);
    assert!(listed.status.success());
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        !listed.contains("forged") && listed.contains("edge-01"),
        "{listed}"
    );

    // Jobs: one that writes to both streams, with markup that must stay text.
    let run = server.admin(&[
        "job",
        "run",
        "--worker",
        "builtin",
        "--",
        "sh",
        "-c",
        "echo hello from the job; echo '<b>not bold</b>'; echo oops >&2; exit 3",
    ]);
    assert_eq!(
        run.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    nav(&browser, "Jobs").await;
    let jobs = browser.find("table.data").await.text().await.unwrap();
    assert!(
        jobs.contains("failed") && jobs.contains("hello from the job"),
        "{jobs}"
    );
    browser.screenshot("09-jobs", DESKTOP).await;
    browser.click("table.data tbody a").await;
    browser.wait_for("ol.output", Duration::from_secs(10)).await;
    let err_line = browser
        .find("ol.output li.err .text")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(err_line, "oops");
    let output = browser.find("ol.output").await.text().await.unwrap();
    assert!(
        output.contains("<b>not bold</b>"),
        "markup is shown as text: {output}"
    );
    assert!(
        !browser.has("ol.output b").await,
        "output is escaped, never rendered"
    );
    browser.screenshot("10-job-detail", DESKTOP).await;

    // Audit: filtered by action.
    nav(&browser, "Audit").await;
    browser.fill("#filter-action", "token.").await;
    browser.click("form.filters button[type=submit]").await;
    // The old page has an audit table too: wait for the filtered one.
    browser
        .wait_url("action=token.", Duration::from_secs(10))
        .await;
    browser
        .wait_for("table.audit", Duration::from_secs(10))
        .await;
    let audit = browser
        .find("table.audit tbody")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        audit.contains("token.create") && !audit.contains("job.submit"),
        "{audit}"
    );
    assert!(!browser.source().await.contains(&secret));
    browser.fill("#filter-action", "").await;
    browser.click("form.filters button[type=submit]").await;
    browser.wait_url("action=&", Duration::from_secs(10)).await;
    browser
        .wait_for("table.audit", Duration::from_secs(10))
        .await;
    browser.screenshot("11-audit", DESKTOP).await;

    // A phone-sized window: the same pages, stacked.
    browser.resize(PHONE).await;
    nav(&browser, "Workers").await;
    browser.wait_for("#fleet", Duration::from_secs(10)).await;
    browser.screenshot("12-phone-workers", PHONE).await;
    nav(&browser, "Tokens").await;
    browser
        .wait_for("#list-title", Duration::from_secs(10))
        .await;
    browser.screenshot("13-phone-tokens", PHONE).await;
    let overflow = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow,
        json!(false),
        "nothing overflows sideways on a phone"
    );

    // Sign out: the session is gone.
    browser.resize(DESKTOP).await;
    browser.click(".signout button").await;
    browser
        .wait_for(".notice.ok", Duration::from_secs(10))
        .await;
    assert_eq!(browser.path().await, "/signin");
    browser.goto(&format!("{}/tokens", server.url)).await;
    assert_eq!(browser.path().await, "/signin");
    assert!(
        !server.logs().contains(&secret),
        "the token secret is not logged"
    );

    browser.close().await;
    eprintln!("tokens, jobs and audit took {:?}", started.elapsed());
}

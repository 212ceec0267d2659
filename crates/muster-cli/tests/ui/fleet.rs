//! The Workers page with a fleet larger than one page: the overview's counts, paging, filters,
//! a worker's own page, pre-creating a worker and starting it with the command the page printed
//! (it turns connected without a reload, through the live stream), removing one, submitting a
//! job from the Jobs page, and the audit log's pages. Screenshots at desktop and phone size.

use std::time::Duration;

use serde_json::json;

use crate::browser::{Browser, DESKTOP, PHONE};
use crate::harness::Server;
use crate::{ONE_AT_A_TIME, nav, sign_in};

/// Workers pre-created through the page's own form (more than the 100 a page shows).
const MANY: usize = 104;

/// Posts the pre-create form `MANY` times from the page (with its CSRF token), half the workers
/// in `region=eu`, half in `region=us`.
async fn precreate_many(browser: &Browser) {
    let done = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const csrf = document.querySelector('form[action=\"/workers\"] input[name=csrf]').value;
             (async () => {
               for (let i = 0; i < arguments[0]; i++) {
                 const name = 'fleet-' + String(i).padStart(3, '0');
                 const region = i % 2 === 0 ? 'eu' : 'us';
                 const body = new URLSearchParams({csrf, name, labels: 'region=' + region + '\\npool=p' + (i % 3)});
                 // Not following the redirect to each worker's page keeps this quick.
                 const r = await fetch('/workers', {method: 'POST', body, credentials: 'same-origin', redirect: 'manual'});
                 if (r.type !== 'opaqueredirect') { return 'HTTP ' + r.status; }
               }
               return 'ok';
             })().then(done, e => done(String(e)));",
            vec![json!(MANY)],
        )
        .await
        .expect("the page runs the script");
    assert_eq!(done, json!("ok"));
}

async fn count(browser: &Browser, status: &str) -> u64 {
    browser
        .find(&format!("[data-count={status}]"))
        .await
        .text()
        .await
        .expect("a count")
        .parse()
        .expect("a number")
}

async fn rows(browser: &Browser) -> usize {
    browser
        .client
        .execute(
            "return document.querySelectorAll('#fleet tbody tr').length;",
            vec![],
        )
        .await
        .ok()
        .and_then(|n| n.as_u64())
        .and_then(|n| usize::try_from(n).ok())
        .expect("a number of rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_overview_paging_filters_worker_page_live_status_and_forms() {
    let _one = ONE_AT_A_TIME.lock().await;
    let started = std::time::Instant::now();
    let server = Server::start();
    let browser = Browser::start().await;
    sign_in(&browser, &server).await;
    // External workers connect under a license: start the trial.
    nav(&browser, "Settings").await;
    nav(&browser, "License").await;
    browser
        .click("#trial-title ~ form button[type=submit]")
        .await;
    browser
        .wait_for(".notice.ok", Duration::from_secs(10))
        .await;
    nav(&browser, "Workers").await;
    browser.wait_for("#overview", Duration::from_secs(10)).await;
    precreate_many(&browser).await;

    // The overview counts the whole fleet (the built-in worker and every pre-created one); its
    // counts may be a few seconds old.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        browser.client.refresh().await.unwrap();
        browser.wait_for("#overview", Duration::from_secs(10)).await;
        if count(&browser, "total").await == MANY as u64 + 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            browser.text().await
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(count(&browser, "connected").await, 1, "the built-in worker");
    assert_eq!(count(&browser, "disconnected").await, MANY as u64);
    let labels = browser.find(".top-labels").await.text().await.unwrap();
    assert!(
        labels.contains(&format!("region=eu {}", MANY / 2)),
        "{labels}"
    );
    assert!(
        browser.has("svg.chart rect.enrolled").await,
        "the chart has a bar"
    );
    let legend = browser.find(".legend").await.text().await.unwrap();
    assert!(
        legend.contains(&format!("enrolled {}", MANY + 1)),
        "every worker was created in the last day: {legend}"
    );
    browser.screenshot("20-workers-overview", DESKTOP).await;

    // Paging: 100 rows, then the rest on the next page, in name order.
    assert_eq!(rows(&browser).await, 100);
    browser.click("#next-page").await;
    browser.wait_url("after=", Duration::from_secs(10)).await;
    browser
        .wait_for("#fleet table", Duration::from_secs(10))
        .await;
    assert_eq!(rows(&browser).await, MANY + 1 - 100);
    let later = browser.find("#fleet tbody").await.text().await.unwrap();
    assert!(
        later.contains("fleet-103") && !later.contains("fleet-000"),
        "{later}"
    );
    assert!(!browser.has("#next-page").await, "the last page");
    browser.screenshot("21-workers-second-page", DESKTOP).await;

    // Filters: by label and by name, applied by the server.
    browser
        .goto(&format!(
            "{}/workers?label=region%3Dus&name=fleet-01",
            server.url
        ))
        .await;
    browser
        .wait_for("#fleet table", Duration::from_secs(10))
        .await;
    let filtered = browser.find("#fleet tbody").await.text().await.unwrap();
    assert_eq!(
        rows(&browser).await,
        5,
        "fleet-011, 013, 015, 017, 019: {filtered}"
    );
    assert!(
        !filtered.contains("fleet-010") && !filtered.contains("region=eu"),
        "{filtered}"
    );
    browser
        .goto(&format!("{}/workers?status=connected", server.url))
        .await;
    browser
        .wait_for("#fleet table", Duration::from_secs(10))
        .await;
    assert_eq!(
        rows(&browser).await,
        1,
        "only the built-in worker is connected"
    );

    // Pre-create one more through the form: its page shows the key and a complete command.
    nav(&browser, "Workers").await;
    browser.click("details.create-worker summary").await;
    browser.fill("#worker-name", "edge-live").await;
    browser.fill("#worker-labels", "region=eu\nrack=r7").await;
    browser
        .click("details.create-worker button[type=submit]")
        .await;
    browser
        .wait_for("#created-command", Duration::from_secs(10))
        .await;
    assert_eq!(browser.path().await, "/workers/edge-live");
    let command = browser.find("#created-command").await.text().await.unwrap();
    let key = browser.find("#created-key").await.text().await.unwrap();
    assert!(command.contains(&key), "{command}");
    assert!(
        command.contains(&format!("--url {}", server.url))
            && command.contains(&format!("--ca-fingerprint {}", server.fingerprint)),
        "complete, ready to paste: {command}"
    );
    let facts = browser.find("dl.facts").await.text().await.unwrap();
    assert!(
        facts.contains("precreated") && facts.contains("rack=r7"),
        "{facts}"
    );
    browser.screenshot("22-worker-created", DESKTOP).await;

    // Live: with the Workers page open, the pasted command connects the worker; its row and the
    // counts change without a reload.
    browser
        .goto(&format!("{}/workers?name=edge", server.url))
        .await;
    browser
        .wait_for(
            "tr[data-name=edge-live][data-status=disconnected]",
            Duration::from_secs(10),
        )
        .await;
    browser
        .client
        .execute("window.notReloaded = true;", vec![])
        .await
        .unwrap();
    let worker = server.run_pasted(&command, "edge-live");
    // Generous: the machine running the tests may be busy compiling.
    let started_worker = std::time::Instant::now();
    let deadline = started_worker + Duration::from_secs(90);
    while !browser
        .has("tr[data-name=edge-live][data-status=connected]")
        .await
    {
        if std::time::Instant::now() > deadline {
            let state = browser
                .client
                .execute(
                    "const f = document.getElementById('fleet');
                     return [f.getAttribute('data-listened'), f.getAttribute('data-heard'), typeof EventSource];",
                    vec![],
                )
                .await
                .unwrap();
            let fetched = browser
                .client
                .execute_async(
                    "const done = arguments[arguments.length - 1];
                     fetch('/workers/edge-live/row', {headers: {'X-Muster-Fragment': '1'}})
                       .then(r => r.text().then(t => done(r.status + ' ' + t)), e => done(String(e)));",
                    vec![],
                )
                .await
                .unwrap();
            let state = format!("{state} row: {fetched}");
            panic!(
                "the row did not turn connected: {}\n(listened, heard, EventSource) {state}\nworker: {}\nserver: {}",
                browser.find("#fleet").await.text().await.unwrap(),
                worker.stderr(),
                server.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "the row turned connected {:?} after the worker started",
        started_worker.elapsed()
    );
    let same_page = browser
        .client
        .execute("return window.notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same_page, json!(true), "the row changed without a reload");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while count(&browser, "connected").await != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the counts follow: {}",
            browser.text().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.screenshot("23-workers-live", DESKTOP).await;

    // The worker's page, from the table: its key fingerprint once it connected, its audit trail.
    browser.click("tr[data-name=edge-live] a.name").await;
    browser
        .wait_url("/workers/edge-live", Duration::from_secs(10))
        .await;
    browser
        .wait_for("#fingerprint", Duration::from_secs(10))
        .await;
    let trail = browser.find("ol.trail").await.text().await.unwrap();
    assert!(
        trail.contains("worker.connected") && trail.contains("worker.create"),
        "{trail}"
    );
    assert!(
        !browser.has("#remove").await,
        "a connected worker is revoked before removal"
    );

    // A job for it, from the Jobs page's form: its page opens, and the list shows the full id.
    nav(&browser, "Jobs").await;
    browser.click("details.submit-job summary").await;
    browser
        .fill("#job-command", "sh -c 'echo from the form'")
        .await;
    browser.fill("#job-worker", "edge-live").await;
    browser.screenshot("24-jobs-submit-form", DESKTOP).await;
    browser
        .click("details.submit-job button[type=submit]")
        .await;
    browser.wait_url("/jobs/", Duration::from_secs(10)).await;
    let id = browser.path().await.trim_start_matches("/jobs/").to_owned();
    assert_eq!(id.len(), 16, "{id}");
    browser
        .wait_for("ol.output li.out", Duration::from_secs(30))
        .await;
    assert!(
        browser
            .find("ol.output")
            .await
            .text()
            .await
            .unwrap()
            .contains("from the form")
    );
    nav(&browser, "Jobs").await;
    let jobs = browser.find("table.jobs").await.text().await.unwrap();
    assert!(jobs.contains(&id) && jobs.contains("edge-live"), "{jobs}");
    browser.screenshot("25-jobs", DESKTOP).await;

    // A job form that cannot run says why, keeping what was typed.
    browser.click("details.submit-job summary").await;
    browser.fill("#job-command", "true").await;
    browser.fill("#job-worker", "no-such-worker").await;
    browser
        .click("details.submit-job button[type=submit]")
        .await;
    let refusal = browser
        .wait_for(".submit-job .notice.error", Duration::from_secs(10))
        .await
        .text()
        .await
        .unwrap();
    assert!(refusal.contains("no-such-worker"), "{refusal}");

    // Remove a worker that never connected, after a confirmation.
    browser
        .goto(&format!("{}/workers/fleet-000", server.url))
        .await;
    browser.click("#remove").await;
    browser
        .wait_for(".card.confirm", Duration::from_secs(10))
        .await;
    browser.screenshot("26-remove-confirmation", DESKTOP).await;
    browser.click(".card.confirm button.danger").await;
    browser
        .wait_for(".notice.ok", Duration::from_secs(10))
        .await;
    assert_eq!(browser.path().await, "/workers");
    let listed = server.admin(&["workers", "list", "--json"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("fleet-000"));

    // The audit log pages too (over a hundred records now).
    nav(&browser, "Audit").await;
    browser
        .wait_for("#next-page", Duration::from_secs(10))
        .await;
    browser.click("#next-page").await;
    browser.wait_url("after=", Duration::from_secs(10)).await;
    browser
        .wait_for("table.audit", Duration::from_secs(10))
        .await;
    browser.screenshot("27-audit-second-page", DESKTOP).await;

    // Phone size: the overview, a worker's page and Jobs stack without sideways scrolling.
    browser.resize(PHONE).await;
    for (path, shot) in [
        ("/workers", "28-phone-workers-overview"),
        ("/workers/edge-live", "29-phone-worker"),
        ("/jobs", "30-phone-jobs"),
    ] {
        browser.goto(&format!("{}{path}", server.url)).await;
        browser.wait_for("main h1", Duration::from_secs(10)).await;
        browser.screenshot(shot, PHONE).await;
        assert!(!browser.overflows_sideways().await, "{path} fits a phone");
    }

    drop(worker);
    browser.close().await;
    eprintln!("fleet flow took {:?}", started.elapsed());
}

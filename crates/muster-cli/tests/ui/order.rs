//! The Workers page's order and its live running-job counts: clicking a column heading sorts
//! the fleet on the server (keeping the filters, either way on a second click), the order field
//! does the same on a phone, a job starting and ending on a worker changes its row's activity
//! without a reload (the `activity` events of the live stream), and a worker's page links to
//! its older audit records. Screenshots at desktop and phone size.

use std::time::Duration;

use serde_json::json;

use crate::browser::{Browser, DESKTOP, PHONE};
use crate::harness::Server;
use crate::{ONE_AT_A_TIME, sign_in};

/// The names in the table, top to bottom.
async fn names(browser: &Browser) -> Vec<String> {
    let listed = browser
        .client
        .execute(
            "return Array.from(document.querySelectorAll('#fleet tbody tr'))
               .map(tr => tr.getAttribute('data-name'));",
            vec![],
        )
        .await
        .expect("the page runs the script");
    serde_json::from_value(listed).expect("names")
}

/// Clicks the heading of `column` and waits for the page sorted by `sort`.
async fn sort_by(browser: &Browser, column: &str, sort: &str) {
    browser
        .click(&format!("#fleet thead a.sort[data-sort={column}]"))
        .await;
    browser
        .wait_url(&format!("sort={sort}"), Duration::from_secs(10))
        .await;
    browser
        .wait_for("#fleet table", Duration::from_secs(10))
        .await;
}

async fn attribute(browser: &Browser, css: &str, name: &str) -> Option<String> {
    browser
        .find(css)
        .await
        .attr(name)
        .await
        .expect("an attribute")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sort_by_heading_and_running_jobs_change_live() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = Server::start();
    let browser = Browser::start().await;
    sign_in(&browser, &server).await;
    // Pre-created in this order, so creation order is not name order.
    for name in ["m-second", "a-third", "z-fourth"] {
        let created = server.admin(&["workers", "create", name, "--label", "sorted=yes"]);
        assert!(created.status.success(), "{created:?}");
    }

    // Name order by default; the Name heading says so and turns it around.
    browser
        .goto(&format!("{}/workers?label=sorted", server.url))
        .await;
    browser
        .wait_for("#fleet table", Duration::from_secs(10))
        .await;
    assert_eq!(names(&browser).await, ["a-third", "m-second", "z-fourth"]);
    assert_eq!(
        attribute(&browser, "#fleet thead th[aria-sort]", "aria-sort")
            .await
            .as_deref(),
        Some("ascending")
    );
    sort_by(&browser, "name", "-name").await;
    assert_eq!(names(&browser).await, ["z-fourth", "m-second", "a-third"]);
    assert!(
        browser.url().await.contains("label=sorted"),
        "the filter is kept: {}",
        browser.url().await
    );

    // Created: newest first on the first click, oldest first on the second.
    sort_by(&browser, "created", "-created").await;
    assert_eq!(names(&browser).await, ["z-fourth", "a-third", "m-second"]);
    assert_eq!(
        attribute(&browser, "#fleet thead th[aria-sort]", "aria-sort")
            .await
            .as_deref(),
        Some("descending")
    );
    assert!(
        browser.text().await.contains("newest first"),
        "the page says its order"
    );
    browser
        .screenshot("40-workers-sorted-newest", DESKTOP)
        .await;
    sort_by(&browser, "created", "created").await;
    assert_eq!(names(&browser).await, ["m-second", "a-third", "z-fourth"]);

    // Last seen, most recent first: the built-in worker (connected, seen) before the three
    // never seen, which follow in reverse name order.
    browser
        .goto(&format!("{}/workers?sort=-last_seen", server.url))
        .await;
    browser
        .wait_for("#fleet table", Duration::from_secs(10))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        // The server writes when connected workers were seen every few seconds.
        let listed = names(&browser).await;
        if listed.first().map(String::as_str) == Some("builtin") {
            assert_eq!(listed[1..], ["z-fourth", "m-second", "a-third"]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the built-in worker leads: {listed:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        browser.client.refresh().await.unwrap();
        browser
            .wait_for("#fleet table", Duration::from_secs(10))
            .await;
    }

    // Live: a job starting on the built-in worker makes its row busy, and its end idle again,
    // with the page never reloaded.
    browser
        .goto(&format!("{}/workers?name=builtin", server.url))
        .await;
    browser
        .wait_for(
            "tr[data-name=builtin][data-status=connected]",
            Duration::from_secs(10),
        )
        .await;
    // The stream is open before the job starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while attribute(&browser, "#fleet", "data-listened")
        .await
        .is_none()
    {
        assert!(std::time::Instant::now() < deadline, "the stream opens");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser
        .client
        .execute("window.notReloaded = true;", vec![])
        .await
        .unwrap();
    assert!(!browser.has("tr[data-name=builtin] .activity.busy").await);
    let marker = server.dir.path().join("job-may-end");
    let script = format!("while [ ! -e {} ]; do sleep 0.1; done", marker.display());
    let run = server.admin(&[
        "job", "run", "--detach", "--worker", "builtin", "--", "sh", "-c", &script,
    ]);
    assert!(run.status.success(), "{run:?}");
    browser
        .wait_for(
            "tr[data-name=builtin] .activity.busy",
            Duration::from_secs(30),
        )
        .await;
    let busy = browser
        .find("tr[data-name=builtin]")
        .await
        .text()
        .await
        .unwrap();
    assert!(busy.contains("1/"), "one running: {busy}");
    browser.screenshot("41-workers-busy-live", DESKTOP).await;
    std::fs::write(&marker, b"").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while browser.has("tr[data-name=builtin] .activity.busy").await {
        assert!(
            std::time::Instant::now() < deadline,
            "the row turns idle when the job ends: {}",
            browser.find("#fleet").await.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let heard = attribute(&browser, "#fleet", "data-activity-heard")
        .await
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    assert!(heard >= 2, "a start and an end were heard, {heard}");
    let same_page = browser
        .client
        .execute("return window.notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same_page, json!(true), "the row changed without a reload");

    // A worker's page shows its newest audit records and links to the rest, by worker.
    browser
        .goto(&format!("{}/workers/builtin", server.url))
        .await;
    browser.wait_for("ol.trail", Duration::from_secs(10)).await;
    browser.screenshot("42-worker-page", DESKTOP).await;
    browser
        .goto(&format!("{}/audit?worker=m-second", server.url))
        .await;
    let lede = browser
        .wait_text("#audit-worker", Duration::from_secs(10))
        .await;
    assert!(lede.contains("m-second"), "{lede}");
    let table = browser.find("table.audit").await.text().await.unwrap();
    assert!(
        table.contains("worker.create") && !table.contains("z-fourth"),
        "{table}"
    );
    browser.screenshot("43-audit-of-a-worker", DESKTOP).await;

    // Phone size: the headings are hidden, the order field sorts instead.
    browser.resize(PHONE).await;
    browser
        .goto(&format!("{}/workers?label=sorted", server.url))
        .await;
    browser
        .wait_for("#filter-sort", Duration::from_secs(10))
        .await;
    browser
        .client
        .execute(
            "document.getElementById('filter-sort').value = '-name';
             document.querySelector('form.filters').submit();",
            vec![],
        )
        .await
        .unwrap();
    browser
        .wait_url("sort=-name", Duration::from_secs(10))
        .await;
    browser
        .wait_for("#fleet table", Duration::from_secs(10))
        .await;
    assert_eq!(names(&browser).await, ["z-fourth", "m-second", "a-third"]);
    browser.screenshot("44-phone-workers-sorted", PHONE).await;
    assert!(
        !browser.overflows_sideways().await,
        "the Workers page fits a phone"
    );
    browser
        .goto(&format!("{}/workers/builtin", server.url))
        .await;
    browser.wait_for("main h1", Duration::from_secs(10)).await;
    browser.screenshot("45-phone-worker-page", PHONE).await;
    browser.close().await;
}

//! `bench/run --ui`: the figures of issue 14 at fleet scale. A real `muster serve`, a large fleet
//! written into its store (100,000 by default, [`super::bigfleet`]), N of them connected by swarm
//! processes (19,000 by default), then, in order:
//!
//! 1. the list API: `GET /api/v1/workers?limit=100` (gzip and not), and the connected filter,
//!    which walks the registry;
//! 2. the fleet overview: its statement ([`muster_store::Tx::fleet_overview`]) timed on the
//!    server's own database file, and the page's fragment (`GET /workers/overview`) over HTTP;
//! 3. the Workers page's HTML over HTTP with a signed-in session;
//! 4. the Workers page in headless Chromium, through a byte-counting proxy ([`proxy`]): a cold
//!    first load, then a window (60 s) with the page open and the fleet idle, then a second
//!    load with a warm cache.
//!
//! Like [`super::run`], a failed step is recorded in `errors` and the run goes on where it can.

pub mod browser;
pub mod page;
pub mod proxy;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use muster_store::Store;

use super::fleet::{Fleet, Target};
use super::http::{Auth, Http, Timed};
use super::procs::{self, Server};
use super::report::{Report, UI};
use super::{Options, bigfleet, finish, stamp};
use crate::clock::now_us;
use crate::creds;
use crate::stats::summarize;

#[derive(Debug, Clone)]
pub struct UiOptions {
    /// Workers written into the store; `Options::workers` of them connect.
    pub store_workers: usize,
    /// Requests timed per HTTP figure.
    pub requests: usize,
    /// How long the page stays open with the fleet idle.
    pub live: Duration,
}

pub async fn run(opts: &Options, ui: &UiOptions) -> anyhow::Result<Report> {
    let started = Instant::now();
    let connect = opts.workers.min(ui.store_workers);
    let mut report = Report::new(&UI);
    stamp(&mut report, opts);
    report.num("workers_in_store", ui.store_workers as f64);
    report.num("workers", connect as f64);
    report.num("live_window_s", ui.live.as_secs_f64());
    let work = &opts.work_dir;
    std::fs::create_dir_all(work)?;
    let run_id = format!("{}", now_us() / 1_000_000 % 100_000_000);

    eprintln!(
        "[1/6] muster: a fresh data dir, {} workers written into its store",
        ui.store_workers
    );
    let data_dir = work.join("data");
    let log = work.join("server.log");
    let port = procs::free_port()?;
    let muster = opts.bin("muster");
    Server::start(&muster, &data_dir, port, &log)
        .await?
        .stop()
        .await;
    let filled = Instant::now();
    let population = bigfleet::fill(&data_dir, ui.store_workers, connect, &run_id).await?;
    report.num("fill_s", filled.elapsed().as_secs_f64());
    let creds_path = work.join("creds-fleet.jsonl");
    creds::write(&creds_path, &population)?;
    let server = Server::start(&muster, &data_dir, port, &log).await?;
    server.start_trial().await?;

    eprintln!("[2/6] connect {connect} of them");
    let connect_start = Instant::now();
    let fleet = Fleet::start(
        &opts.bin("muster-swarm"),
        &creds_path,
        Target::DataDir(&data_dir),
        opts.swarm_processes(connect),
        work,
        "fleet",
        &[],
    )?;
    let (connected, all) = fleet
        .tracker
        .wait_for("connected", connect, opts.connect_timeout, |s| s.connected)
        .await;
    report.num("connect_s", connect_start.elapsed().as_secs_f64());
    if !all {
        report.error(format!("only {connected}/{connect} connected"));
    }
    // Let the connection burst end: the figures are for an idle fleet.
    tokio::time::sleep(Duration::from_secs(5)).await;
    report.num(
        "connected_workers",
        fleet.tracker.with(|s| s.connected) as f64,
    );
    report.num("server_rss_bytes", server.rss().map(|b| b as f64));

    let http = Http::for_data_dir(&data_dir)?;
    eprintln!("[3/6] the list API");
    if let Err(e) = list_api(&http, ui.requests, &mut report).await {
        report.error(format!("list API: {e:#}"));
    }

    eprintln!("[4/6] the fleet overview");
    if let Err(e) = overview_query(&data_dir, ui.requests, &mut report).await {
        report.error(format!("overview query: {e:#}"));
    }
    let password = std::fs::read_to_string(data_dir.join("admin-password"))?;
    let session = match http.sign_in(password.trim()).await {
        Ok(session) => Some(session),
        Err(e) => {
            report.error(format!("web UI sign-in: {e:#}"));
            None
        }
    };
    if let Some(session) = &session {
        let pages = [
            ("overview_fragment", "/workers/overview"),
            ("page_html", "/workers"),
        ];
        for (key, path) in pages {
            match http.timed(path, session, true, ui.requests).await {
                Ok(t) => record(&mut report, key, &t),
                Err(e) => report.error(format!("GET {path}: {e:#}")),
            }
        }
    }

    if let Some(session) = &session {
        eprintln!(
            "[5/6] the Workers page in headless Chromium (a cold load, {} s open, a warm load)",
            ui.live.as_secs()
        );
        let upstream = SocketAddr::from(([127, 0, 0, 1], port));
        if let Err(e) = browser_figures(upstream, session, ui.live, &mut report).await {
            report.error(format!("browser: {e:#}"));
        }
    }

    eprintln!("[6/6] stop");
    fleet.stop().await;
    server.stop().await;
    finish(report, started)
}

/// `key_p50_ms`, `key_p99_ms`, `key_max_ms`, `key_bytes`.
fn record(report: &mut Report, key: &str, t: &Timed) {
    report.num(&format!("{key}_p50_ms"), t.ms.p50);
    report.num(&format!("{key}_p99_ms"), t.ms.p99);
    report.num(&format!("{key}_max_ms"), t.ms.max);
    report.num(&format!("{key}_bytes"), t.bytes as f64);
}

async fn list_api(http: &Http, requests: usize, report: &mut Report) -> anyhow::Result<()> {
    let admin = &http.admin;
    let first = http
        .timed("/api/v1/workers?limit=100", admin, true, requests)
        .await?;
    record(report, "list_limit100", &first);
    let plain = http.get("/api/v1/workers?limit=100", admin, false).await?;
    report.num("list_limit100_uncompressed_bytes", plain.bytes as f64);
    let connected = http
        .timed(
            "/api/v1/workers?limit=100&status=connected",
            admin,
            true,
            requests,
        )
        .await?;
    record(report, "list_connected_limit100", &connected);
    Ok(())
}

/// The overview's statement, timed on the server's database file through a store of our own
/// (WAL: it reads beside the server). The page reuses its result for 5 s, so this is what a
/// refresh costs when the cache has expired.
async fn overview_query(
    data_dir: &std::path::Path,
    requests: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let store = Store::open_sqlite(&data_dir.join("muster.db"))?;
    let mut ms = Vec::with_capacity(requests);
    for i in 0..requests.max(1) + 5 {
        let now = muster_core::Timestamp::from_unix_millis(i64::try_from(now_us() / 1000)?);
        let start = Instant::now();
        let counts = store.read(move |tx| tx.fleet_overview(now, 24)).await?;
        if i >= 5 {
            ms.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        std::hint::black_box(counts);
    }
    store.close();
    if let Some(s) = summarize(&ms) {
        report.num("overview_query_p50_ms", s.p50);
        report.num("overview_query_p99_ms", s.p99);
        report.num("overview_query_max_ms", s.max);
    }
    Ok(())
}

async fn browser_figures(
    upstream: SocketAddr,
    session: &Auth,
    live: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    let proxy = proxy::CountingProxy::start(upstream).await?;
    let base = format!("https://127.0.0.1:{}", proxy.port);
    let browser = browser::Browser::start().await?;
    let result = async {
        page::sign_in(&browser, &base, session).await?;
        let url = format!("{base}/workers");
        let settle = Duration::from_secs(3);
        let (cold, wire) = page::load(&browser, &proxy, &url, settle).await?;
        eprintln!("  cold load: {cold:?}, wire {wire:?}");
        report.num("page_first_render_ms", cold.first_contentful_paint_ms);
        report.num("page_response_end_ms", cold.response_end_ms);
        report.num("page_dom_content_loaded_ms", cold.dom_content_loaded_ms);
        report.num("page_load_ms", cold.load_ms);
        report.num("page_first_load_bytes", wire.down as f64);
        report.num("page_first_load_sent_bytes", wire.up as f64);
        report.num("page_first_load_connections", wire.connections as f64);
        report.num("page_first_load_transfer_bytes", cold.transfer_bytes);
        report.num("page_html_transfer_bytes", cold.navigation_transfer_bytes);
        report.num("page_html_decoded_bytes", cold.navigation_decoded_bytes);
        report.num("page_resources", cold.resources as f64);
        report.num("page_rows", cold.rows as f64);
        report.num("page_dom_nodes", cold.dom_nodes as f64);
        report.num("page_first_row_top_px", cold.first_row_top_px);
        if cold
            .first_contentful_paint_ms
            .is_some_and(|p| p < cold.response_end_ms)
        {
            report
                .error("the first paint came before the whole document: it may not show the rows");
        }

        let open = page::live(&browser, &proxy, live).await?;
        let per_min = 60.0 / live.as_secs_f64().max(1.0);
        eprintln!("  live: wire {:?}, {} requests", open.wire, open.requests);
        report.num("page_live_bytes_per_min", open.wire.down as f64 * per_min);
        report.num(
            "page_live_sent_bytes_per_min",
            open.wire.up as f64 * per_min,
        );
        report.num("page_live_requests", open.requests as f64);
        report.num(
            "page_live_request_transfer_bytes",
            open.request_transfer_bytes,
        );

        let (warm, wire) = page::load(&browser, &proxy, &url, settle).await?;
        report.num("page_warm_render_ms", warm.first_contentful_paint_ms);
        report.num("page_warm_load_bytes", wire.down as f64);
        anyhow::Ok(())
    }
    .await;
    browser.close().await;
    result
}

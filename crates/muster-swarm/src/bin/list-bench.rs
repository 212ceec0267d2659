//! `list-bench`: what a page of `GET /api/v1/workers` costs with a large fleet in the store.
//!
//! Starts `muster serve` once on a fresh data dir (to make it), stops it, writes `--workers`
//! pre-created workers straight into its SQLite database through muster's own store (a row each,
//! 1% labelled `pool=gpu`), starts it again, and times pages: the first page, a page halfway
//! through the fleet (through a cursor), filtered pages, the largest page, and the whole fleet
//! followed page by page. Each figure is `--requests` sequential requests after a warm-up;
//! bytes are as sent on the wire (gzip when asked for, which is what the CLI and browsers ask
//! for). Not a test: it prints figures, and the machine's other load shows in them.
//!
//! ```sh
//! cargo build --release -p muster-cli -p muster-swarm
//! target/release/list-bench --workers 100000
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use muster_core::{EnrolledVia, Labels, Name, SecretHash, Timestamp, Worker, WorkerId};
use muster_store::Store;
use muster_swarm::bench::procs::{self, Server};

#[derive(Parser)]
#[command(about = "Times pages of GET /api/v1/workers with a large fleet in the store")]
struct Args {
    /// Workers written into the store.
    #[arg(long, default_value_t = 20_000)]
    workers: usize,
    /// Requests timed per figure.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// The `muster` binary (default: the one beside this program).
    #[arg(long)]
    muster: Option<PathBuf>,
    /// Keep the data dir afterwards (its path is printed).
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let muster = match args.muster.clone() {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("no directory beside this program")?
            .join("muster"),
    };
    let root = std::env::temp_dir().join(format!("muster-list-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let data = root.join("data");
    let log = root.join("server.log");
    let port = procs::free_port()?;

    let server = Server::start(&muster, &data, port, &log).await?;
    server.stop().await;
    let started = Instant::now();
    fill(&data, args.workers).await?;
    eprintln!(
        "wrote {} workers into the store in {:.1} s",
        args.workers,
        started.elapsed().as_secs_f64()
    );
    let server = Server::start(&muster, &data, port, &log).await?;
    let result = measure(&data, &args).await;
    server.stop().await;
    if args.keep {
        eprintln!("data dir kept: {}", data.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

/// Writes `count` pre-created workers, in batches of one transaction each.
async fn fill(data: &Path, count: usize) -> anyhow::Result<()> {
    let store = Store::open_sqlite(&data.join("muster.db"))?;
    let now = Timestamp::from_unix_millis(i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?);
    let key = SecretHash::of("mk_list-bench");
    for start in (0..count).step_by(2_000) {
        let batch: Vec<Worker> = (start..count.min(start + 2_000))
            .map(|i| -> anyhow::Result<Worker> {
                let pool = if i % 100 == 0 { "gpu" } else { "cpu" };
                Ok(Worker {
                    // Random ids and machine ids, as a real fleet has: they are most of what
                    // gzip cannot shrink.
                    id: WorkerId::parse(&muster_core::credentials::generate_id(
                        &mut rand::thread_rng(),
                    ))?,
                    name: Name::parse(&format!("w-{i:06}"))?,
                    enrolled_via: EnrolledVia::Precreated,
                    token_name: None,
                    machine_id: Some(muster_core::MachineId::parse(
                        &muster_core::credentials::generate_id(&mut rand::thread_rng()),
                    )?),
                    labels: Labels::parse_list(&format!("pool={pool},zone=z{}", i % 10))?,
                    key_hash: key.clone(),
                    created_at: now,
                    expires_at: None,
                    revoked_at: None,
                    last_seen_at: Some(now),
                    identity: Default::default(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        store
            .write(move |tx| {
                for w in &batch {
                    tx.insert_worker(w)?;
                }
                Ok(())
            })
            .await?;
    }
    Ok(())
}

/// An HTTP client that trusts the server and leaves compression to each request, so the bytes
/// counted are the bytes sent.
fn client(data: &Path) -> anyhow::Result<(reqwest::Client, String, String)> {
    let local = muster_client::local::discover(data).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tls = local.trust.client_config()?;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .no_gzip()
        .timeout(Duration::from_secs(60))
        .build()?;
    let token = local
        .admin_token
        .context("no admin credential in the data dir")?;
    Ok((http, local.url, token))
}

struct Answer {
    bytes: usize,
    next: Option<String>,
}

async fn get(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    gzip: bool,
) -> anyhow::Result<Answer> {
    let mut request = http.get(format!("{base}{path}")).bearer_auth(token);
    if gzip {
        request = request.header(reqwest::header::ACCEPT_ENCODING, "gzip");
    }
    let response = request.send().await?;
    if !response.status().is_success() {
        bail!("`{path}` answered {}", response.status());
    }
    let next = response
        .headers()
        .get(reqwest::header::LINK)
        .and_then(|v| v.to_str().ok())
        .and_then(muster_client::links::next);
    let bytes = response.bytes().await?.len();
    Ok(Answer { bytes, next })
}

/// `requests` timed GETs of `path` after a warm-up: p50, p99, max (ms) and the bytes of one.
async fn figure(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    label: &str,
    path: &str,
    gzip: bool,
    requests: usize,
) -> anyhow::Result<()> {
    for _ in 0..5 {
        get(http, base, token, path, gzip).await?;
    }
    let mut times = Vec::with_capacity(requests);
    let mut bytes = 0;
    for _ in 0..requests {
        let start = Instant::now();
        bytes = get(http, base, token, path, gzip).await?.bytes;
        times.push(start.elapsed());
    }
    times.sort();
    let at = |q: f64| {
        let i = ((times.len() as f64 - 1.0) * q).round() as usize;
        times[i].as_secs_f64() * 1000.0
    };
    println!(
        "{label:<44} {:>8.1} {:>8.1} {:>8.1} {:>10}",
        at(0.5),
        at(0.99),
        at(1.0),
        bytes
    );
    Ok(())
}

async fn measure(data: &Path, args: &Args) -> anyhow::Result<()> {
    let (http, base, token) = client(data)?;
    // A cursor halfway through the fleet: walk there with the largest pages.
    let mut url = "/api/v1/workers?limit=5000".to_owned();
    let mut seen = 0;
    let middle = loop {
        let answer = get(&http, &base, &token, &url, true).await?;
        seen += 5_000;
        match answer.next {
            Some(next) if seen >= args.workers / 2 => {
                break Some(next.replace("limit=5000", "limit=100"));
            }
            Some(next) => url = next,
            None => break None,
        }
    };
    println!(
        "GET /api/v1/workers with {} workers in the store, {} requests each (ms; bytes of one answer)",
        args.workers, args.requests
    );
    println!(
        "{:<44} {:>8} {:>8} {:>8} {:>10}",
        "page", "p50", "p99", "max", "bytes"
    );
    let n = args.requests;
    let cases: Vec<(&str, String, bool)> = vec![
        ("limit=100, gzip", "/api/v1/workers?limit=100".into(), true),
        (
            "limit=100, uncompressed",
            "/api/v1/workers?limit=100".into(),
            false,
        ),
        (
            "limit=100 halfway (cursor), gzip",
            middle.unwrap_or_else(|| "/api/v1/workers?limit=100".into()),
            true,
        ),
        (
            "label=pool=gpu (1%), limit=100, gzip",
            "/api/v1/workers?limit=100&label=pool%3Dgpu".into(),
            true,
        ),
        (
            "status=disconnected, limit=100, gzip",
            "/api/v1/workers?limit=100&status=disconnected".into(),
            true,
        ),
        (
            "name=w-01 (substring), limit=100, gzip",
            "/api/v1/workers?limit=100&name=w-01".into(),
            true,
        ),
        // A substring has no index on SQLite: one that few or no names have reads the whole
        // name index to fill its page.
        (
            "name=099999 (last name only), limit=100, gzip",
            "/api/v1/workers?limit=100&name=099999".into(),
            true,
        ),
        (
            "name=nobody (no name has it), limit=100, gzip",
            "/api/v1/workers?limit=100&name=nobody".into(),
            true,
        ),
        (
            "limit=5000, gzip",
            "/api/v1/workers?limit=5000".into(),
            true,
        ),
    ];
    for (label, path, gzip) in cases {
        let requests = if path.contains("limit=5000") {
            n.min(20)
        } else {
            n
        };
        figure(&http, &base, &token, label, &path, gzip, requests).await?;
    }
    // The whole fleet, as `muster workers list` reads it.
    let start = Instant::now();
    let (mut pages, mut bytes) = (0, 0);
    let mut next = Some("/api/v1/workers?limit=5000".to_owned());
    while let Some(path) = next {
        let answer = get(&http, &base, &token, &path, true).await?;
        pages += 1;
        bytes += answer.bytes;
        next = answer.next;
    }
    println!(
        "whole fleet, {pages} pages of 5000, gzip: {:.0} ms, {bytes} bytes",
        start.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

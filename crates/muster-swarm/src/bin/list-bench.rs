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
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use muster_swarm::bench::bigfleet;
use muster_swarm::bench::http::Http;
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
    bigfleet::fill(&data, args.workers, 0, "list").await?;
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

/// `requests` timed GETs of `path` after a warm-up: p50, p99, max (ms) and the bytes of one.
async fn figure(
    http: &Http,
    label: &str,
    path: &str,
    gzip: bool,
    requests: usize,
) -> anyhow::Result<()> {
    let t = http.timed(path, &http.admin, gzip, requests).await?;
    println!(
        "{label:<44} {:>8.1} {:>8.1} {:>8.1} {:>10}",
        t.ms.p50, t.ms.p99, t.ms.max, t.bytes
    );
    Ok(())
}

async fn measure(data: &Path, args: &Args) -> anyhow::Result<()> {
    let http = Http::for_data_dir(data)?;
    // A cursor halfway through the fleet: walk there with the largest pages.
    let mut url = "/api/v1/workers?limit=5000".to_owned();
    let mut seen = 0;
    let middle = loop {
        let answer = http.get(&url, &http.admin, true).await?;
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
        figure(&http, label, &path, gzip, requests).await?;
    }
    // The whole fleet, as `muster workers list` reads it.
    let start = Instant::now();
    let (mut pages, mut bytes) = (0, 0);
    let mut next = Some("/api/v1/workers?limit=5000".to_owned());
    while let Some(path) = next {
        let answer = http.get(&path, &http.admin, true).await?;
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

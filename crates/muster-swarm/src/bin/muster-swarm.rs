//! `muster-swarm`: thousands of simulated muster workers in one process.
//!
//! ```text
//! muster-swarm --creds creds.jsonl --data-dir DIR [--index 0 --of 2] [--sources 32]
//! ```
//!
//! Events go to stdout as JSON lines (see `muster_swarm::events`); a status line every second.
//! Stops on SIGINT/SIGTERM, or when stdin closes with `--stop-on-eof` (so a benchmark that dies
//! takes its swarms with it).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use muster_client::{Client, Trust};
use muster_swarm::addrs::Sources;
use muster_swarm::clock::now_us;
use muster_swarm::creds::{self, How};
use muster_swarm::events::{self, Event};
use muster_swarm::swarm::{self, Shared};
use muster_worker::channel::Endpoint;
use tokio::io::AsyncReadExt;
use tokio::sync::{Semaphore, watch};

#[derive(Debug, Parser)]
#[command(
    name = "muster-swarm",
    about = "Simulate many muster workers in one process"
)]
struct Args {
    /// Credentials, one JSON object per line.
    #[arg(long)]
    creds: PathBuf,
    /// The server's base URL (with --fingerprint), unless --data-dir is given. Several,
    /// comma-separated, for replicas: each worker enrolls with the first and fails over among
    /// them in this order, as `muster worker --url a,b` does.
    #[arg(long)]
    url: Option<String>,
    /// Pin the server certificate (`sha256:…`); replicas share one.
    #[arg(long)]
    fingerprint: Option<String>,
    /// Find the local server (URL and certificate) through its data dir.
    #[arg(long, conflicts_with = "url")]
    data_dir: Option<PathBuf>,
    /// This process's share: every `of`-th credential starting at `index`.
    #[arg(long, default_value_t = 0)]
    index: usize,
    #[arg(long, default_value_t = 1)]
    of: usize,
    /// The first loopback source address.
    #[arg(long, default_value = "127.0.0.2")]
    source_first: Ipv4Addr,
    /// How many source addresses to rotate over (0: let the kernel choose).
    #[arg(long, default_value_t = 32)]
    sources: u32,
    /// Runtime worker threads (1 runs everything on the current thread).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// First connection attempts in flight at once.
    #[arg(long, default_value_t = 128)]
    ramp: usize,
    /// Also write the latest status line to this file.
    #[arg(long)]
    status_file: Option<PathBuf>,
    /// Stop when stdin reaches end of file.
    #[arg(long)]
    stop_on_eof: bool,
    /// Run the jobs the server sends, with the worker's own job runner, in this directory.
    #[arg(long)]
    jobs_dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let limit = muster_swarm::sys::raise_fd_limit();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(args, limit))
}

async fn run(args: Args, fd_limit: u64) -> anyhow::Result<()> {
    let (urls, trust) = match (&args.data_dir, &args.url) {
        (Some(dir), _) => {
            let local = muster_client::local::discover(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
            (vec![local.url], local.trust)
        }
        (None, Some(list)) => (
            list.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect(),
            Trust::from_options(None, args.fingerprint.as_deref())?,
        ),
        (None, None) => bail!("pass --url (and --fingerprint) or --data-dir"),
    };
    let Some(url) = urls.first().cloned() else {
        bail!("--url names no server");
    };
    let mine = creds::slice(creds::read(&args.creds)?, args.index, args.of);
    // One socket per worker, plus a margin for the enrollment client and stdio.
    if mine.len() as u64 + 64 > fd_limit {
        bail!(
            "{} workers need more open files than this process may have ({fd_limit}); split the run with --of",
            mine.len()
        );
    }
    let endpoints = urls
        .iter()
        .map(|u| Endpoint::new(u, &trust).map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let needs_client = mine.iter().any(|(_, c)| matches!(c.how, How::Token { .. }));
    let client = if needs_client {
        Some(Client::new(&url, &trust, None).context("cannot set up the enrollment client")?)
    } else {
        None
    };
    let sources = if args.sources == 0 {
        None
    } else {
        Some(Sources::new(args.source_first, args.sources)?)
    };
    let (sink, writer) = events::writer(tokio::io::stdout());
    let shared = Arc::new(Shared {
        endpoints,
        client,
        sources,
        ramp: Semaphore::new(args.ramp.max(1)),
        events: sink.clone(),
        connected: AtomicUsize::new(0),
        gave_up: AtomicUsize::new(0),
        jobs_dir: args.jobs_dir.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let total = mine.len();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, cred) in mine {
        tasks.spawn(swarm::worker(
            Arc::clone(&shared),
            index,
            cred,
            stop_rx.clone(),
        ));
    }
    let status = tokio::spawn(report_status(
        Arc::clone(&shared),
        total,
        args.status_file.clone(),
    ));
    wait_for_stop(args.stop_on_eof).await;
    let _ = stop_tx.send(true);
    // Workers close their channels politely; do not wait forever for a server that is gone.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    status.abort();
    sink.emit(status_event(&shared, total));
    drop(sink);
    drop(shared);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    Ok(())
}

fn status_event(shared: &Shared, workers: usize) -> Event {
    Event::Status {
        t: now_us(),
        workers,
        connected: shared.connected.load(Ordering::Relaxed),
        gave_up: shared.gave_up.load(Ordering::Relaxed),
    }
}

async fn report_status(shared: Arc<Shared>, workers: usize, file: Option<PathBuf>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let event = status_event(&shared, workers);
        if let Some(path) = &file
            && let Ok(text) = serde_json::to_string(&event)
        {
            let _ = tokio::fs::write(path, text + "\n").await;
        }
        shared.events.emit(event);
    }
}

async fn wait_for_stop(stop_on_eof: bool) {
    let eof = async {
        if !stop_on_eof {
            return std::future::pending().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = eof => {}
            }
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        () = eof => {}
    }
}

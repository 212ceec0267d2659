//! `muster-bench`: the fleet benchmark. `bench/run` builds everything and calls this; see
//! bench/README.md for what each figure means.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use muster_swarm::bench::{self, Options};

#[derive(Debug, Parser)]
#[command(name = "muster-bench", about = "muster's fleet benchmark")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every scenario and write the results.
    Run(Box<RunArgs>),
    /// Only the disk's ceiling for one-at-a-time durable SQLite commits.
    FsyncCeiling {
        /// A directory on the disk to measure.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Simulated workers (N); with --replicas, N per replica (R × N in all).
    #[arg(long, default_value_t = 19_000)]
    workers: usize,
    /// Run the replica benchmark instead: R servers on one fresh PostgreSQL database (see
    /// bench/README.md). Of the flags below it uses --per-swarm, --revocations, --concurrency,
    /// --connect-timeout and the --postgres and --failover-* flags.
    #[arg(long, value_name = "R")]
    replicas: Option<usize>,
    /// With --replicas: the PostgreSQL server, as a URL naming its maintenance database. The
    /// run makes a database `muster_bench_<time>` beside it and drops it at the end.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    /// With --replicas: workers of the replica that is killed that run one long job each.
    #[arg(long, default_value_t = 20)]
    failover_jobs: usize,
    /// With --replicas: how long each of those jobs runs (it must outlast the failover).
    #[arg(long, default_value = "60s", value_parser = humantime_secs)]
    failover_job_sleep: Duration,
    /// With --replicas: how long the killed replica's workers get to reconnect elsewhere.
    #[arg(long, default_value = "120s", value_parser = humantime_secs)]
    failover_timeout: Duration,
    /// With --replicas: loopback source addresses the swarms spread their workers over
    /// (127.0.0.2 on). Fewer sources put more workers behind each, as behind a NAT. 128, not
    /// the swarm's own 32: one swarm process plays thousands of machines on one core, so in a
    /// failover its ClientHellos leave late, and hundreds per address still sending theirs are
    /// what the handshake gate closes (bench/README.md, "Replicas").
    #[arg(long, default_value_t = 128)]
    sources: u32,
    /// Run the list and Workers page benchmark instead (issue 14; see bench/README.md): a fleet
    /// of --store-workers in the store, N (--workers) of them connected. Of the flags above it
    /// uses --per-swarm and --connect-timeout.
    #[arg(long)]
    ui: bool,
    /// With --ui: workers written into the store.
    #[arg(long, default_value_t = 100_000)]
    store_workers: usize,
    /// With --ui: requests timed per HTTP figure.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// With --ui: how long the Workers page stays open with the fleet idle.
    #[arg(long, default_value = "60s", value_parser = humantime_secs)]
    live: Duration,
    /// Most workers per swarm process (each has at most 20,000 open files).
    #[arg(long, default_value_t = 9_500)]
    per_swarm: usize,
    /// Token-enrolled workers among the N, revoked one at a time.
    #[arg(long, default_value_t = 200)]
    revocations: usize,
    /// Extra workers whose tokens expire at one instant.
    #[arg(long, default_value_t = 500)]
    expiries: usize,
    /// How far ahead that instant is (time to mint, enroll and connect them).
    #[arg(long, default_value = "20s", value_parser = humantime_secs)]
    expiry_lead: Duration,
    /// Enrollments timed per kind (token, secret).
    #[arg(long, default_value_t = 2_000)]
    enrollments: usize,
    /// Admin and enrollment calls in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Jobs dispatched one after another.
    #[arg(long, default_value_t = 100)]
    jobs: usize,
    /// Job-running workers for the throughput scenario.
    #[arg(long, default_value_t = 300)]
    throughput_workers: usize,
    /// Jobs for the throughput scenario.
    #[arg(long, default_value_t = 2000)]
    throughput_jobs: usize,
    #[arg(long, default_value = "300s", value_parser = humantime_secs)]
    connect_timeout: Duration,
    #[arg(long, default_value = "120s", value_parser = humantime_secs)]
    storm_timeout: Duration,
    #[arg(long, default_value_t = 3.0)]
    fsync_seconds: f64,
    /// Skip the ws-floor comparison.
    #[arg(long)]
    skip_floor: bool,
    /// Where `muster`, `muster-swarm` and `ws-floor` are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Scratch dir for this run (data dir, logs, credentials).
    #[arg(long)]
    work_dir: PathBuf,
    /// Where to write latest.json (and a copy named after the run).
    #[arg(long, default_value = "bench/results")]
    results_dir: PathBuf,
    /// The commit being measured.
    #[arg(long, default_value = "unknown")]
    commit: String,
}

fn humantime_secs(s: &str) -> Result<Duration, String> {
    muster_core::parse_duration(s).map_err(|e| e.to_string())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    muster_swarm::sys::raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match args.command {
        Command::FsyncCeiling { dir, seconds } => {
            let rate = muster_swarm::fsync::ceiling(&dir, Duration::from_secs_f64(seconds))?;
            println!("{}", serde_json::json!({ "fsync_ceiling_per_s": rate }));
            Ok(())
        }
        Command::Run(a) => runtime.block_on(run(*a)),
    }
}

async fn run(a: RunArgs) -> anyhow::Result<()> {
    if a.ui && a.replicas.is_some() {
        anyhow::bail!("--ui and --replicas are two different runs: give one of them");
    }
    let opts = Options {
        workers: a.workers,
        per_swarm: a.per_swarm,
        revocations: a.revocations,
        expiries: a.expiries,
        expiry_lead: a.expiry_lead,
        enrollments: a.enrollments,
        concurrency: a.concurrency,
        jobs: a.jobs,
        throughput_workers: a.throughput_workers,
        throughput_jobs: a.throughput_jobs,
        connect_timeout: a.connect_timeout,
        storm_timeout: a.storm_timeout,
        fsync_seconds: a.fsync_seconds,
        skip_floor: a.skip_floor,
        bin_dir: a.bin_dir,
        work_dir: a.work_dir,
        commit: a.commit,
        replicas: a.replicas.map(|replicas| bench::replicas::ReplicaOptions {
            replicas,
            postgres: a.postgres,
            jobs: a.failover_jobs,
            job_sleep: a.failover_job_sleep,
            failover_timeout: a.failover_timeout,
            sources: a.sources,
        }),
        ui: a.ui.then_some(bench::ui::UiOptions {
            store_workers: a.store_workers,
            requests: a.requests,
            live: a.live,
        }),
    };
    let (report, latest_name, tag, title) = match (&opts.replicas, &opts.ui) {
        (_, Some(ui)) => (
            bench::ui::run(&opts, ui).await?,
            "latest-ui.json",
            format!("ui-s{}-n{}", ui.store_workers, opts.workers),
            format!(
                "Workers page and list API: {} in the store, N = {} connected",
                ui.store_workers, opts.workers
            ),
        ),
        (None, None) => (
            bench::run(&opts).await?,
            "latest.json",
            format!("n{}", opts.workers),
            format!("N = {}", opts.workers),
        ),
        (Some(ro), None) => (
            bench::replicas::run(&opts, ro).await?,
            "latest-replicas.json",
            format!("r{}-n{}", ro.replicas, opts.workers),
            format!(
                "R = {} replicas, N = {} per replica",
                ro.replicas, opts.workers
            ),
        ),
    };
    std::fs::create_dir_all(&a.results_dir)?;
    let json = serde_json::to_string_pretty(&report.to_json())?;
    let latest = a.results_dir.join(latest_name);
    std::fs::write(&latest, format!("{json}\n"))
        .with_context(|| format!("cannot write `{}`", latest.display()))?;
    let date: String = report
        .to_json()
        .get("date")
        .and_then(|d| d.as_str())
        .unwrap_or("run")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(15)
        .collect();
    std::fs::write(
        a.results_dir.join(format!("{date}-{tag}.json")),
        format!("{json}\n"),
    )?;
    println!();
    println!("{title}, commit {}", opts.commit);
    print!("{}", report.table());
    if !report.errors.is_empty() {
        println!("errors:");
        for e in &report.errors {
            println!("  - {e}");
        }
    }
    println!();
    println!("README row:");
    println!("{}", report.markdown_row());
    println!("results: {}", latest.display());
    Ok(())
}

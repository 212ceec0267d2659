//! The fleet benchmark (issue 7): every scenario against a real `muster serve` on a fresh data
//! dir, in one run, in this order:
//!
//! 1. the fsync ceiling of the disk the data dir is on;
//! 2. the floor: `ws-floor` (TLS, then plaintext) holding N idle connections;
//! 3. muster: mint N credentials, connect N simulated workers, memory per worker;
//! 4. job dispatch to a real `muster worker` beside the N;
//! 5. the reconnect storm after `kill -9` and a restart;
//! 6. revocations, one at a time, of token-enrolled workers among the N;
//! 7. expiry of a batch of extra workers whose tokens expire at one instant;
//! 8. enrollment throughput, by token and by the shared secret;
//! 9. job throughput across a few hundred job-running workers.
//!
//! A scenario that fails is recorded in `errors` and the run goes on, so one run shows as much
//! as it can.
//!
//! Over 400 lines because [`run`] is the whole benchmark in the order it runs: the nine scenarios
//! one after another, sharing the server, the fleet and the report. Each scenario's work is in its
//! own module; what stays here is the sequence and what each records.

pub mod bigfleet;
pub mod dispatch;
pub mod enroll;
pub mod expiry;
pub mod fleet;
pub mod floor_run;
pub mod http;
pub mod mint;
pub mod procs;
pub mod replicas;
pub mod report;
pub mod revoke;
pub mod storm;
pub mod throughput;
pub mod ui;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use muster_client::Client;

use crate::clock::now_us;
use crate::creds;
use crate::stats::summarize;
use fleet::{Fleet, Target};
use procs::Server;
use report::Report;

#[derive(Debug, Clone)]
pub struct Options {
    pub workers: usize,
    /// Most simulated workers per swarm process (each holds one descriptor per worker).
    pub per_swarm: usize,
    pub revocations: usize,
    pub expiries: usize,
    pub expiry_lead: Duration,
    pub enrollments: usize,
    pub concurrency: usize,
    pub jobs: usize,
    /// Job-running workers and jobs for the throughput scenario.
    pub throughput_workers: usize,
    pub throughput_jobs: usize,
    pub connect_timeout: Duration,
    pub storm_timeout: Duration,
    pub fsync_seconds: f64,
    pub skip_floor: bool,
    /// Loopback source addresses the swarms spread their workers over (127.0.0.2 on).
    pub sources: u32,
    /// Where `muster`, `muster-swarm` and `ws-floor` are.
    pub bin_dir: PathBuf,
    /// This run's scratch dir (data dir, logs, credentials).
    pub work_dir: PathBuf,
    pub commit: String,
    /// The replica run (`--replicas`), when asked for.
    pub replicas: Option<replicas::ReplicaOptions>,
    /// The list and Workers page run (`--ui`), when asked for.
    pub ui: Option<ui::UiOptions>,
}

impl Options {
    fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// The swarm's arguments that spread its workers over [`Options::sources`] addresses.
    fn sources_args(&self) -> Vec<String> {
        vec!["--sources".to_owned(), self.sources.to_string()]
    }

    fn swarm_processes(&self, workers: usize) -> usize {
        workers.div_ceil(self.per_swarm.max(1)).max(1)
    }
}

pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    let n = opts.workers;
    let work = &opts.work_dir;
    std::fs::create_dir_all(work)?;
    let run_id = format!("{}", now_us() / 1_000_000 % 100_000_000);
    let mut report = Report::default();
    report.num("workers", n as f64);
    report.num("sources", f64::from(opts.sources));
    stamp(&mut report, opts);
    let processes = opts.swarm_processes(n);
    report.num("swarm_processes", processes as f64);

    eprintln!("[1/9] fsync ceiling");
    match tokio::task::spawn_blocking({
        let dir = work.clone();
        let secs = opts.fsync_seconds;
        move || crate::fsync::ceiling(&dir, Duration::from_secs_f64(secs))
    })
    .await?
    {
        Ok(rate) => {
            eprintln!("  {rate:.0} durable single-row commits/s");
            report.num("fsync_ceiling_per_s", rate);
        }
        Err(e) => report.error(format!("fsync ceiling: {e:#}")),
    }

    if opts.skip_floor {
        eprintln!("[2/9] floor: skipped");
    } else {
        let creds_path = work.join("creds-floor.jsonl");
        floor_run::write_creds(&creds_path, n)?;
        for tls in [true, false] {
            let kind = if tls { "TLS" } else { "plaintext" };
            eprintln!("[2/9] floor ({kind}): ws-floor with {n} idle connections");
            let result = floor_run::measure(
                &opts.bin("ws-floor"),
                &opts.bin("muster-swarm"),
                work,
                &creds_path,
                n,
                processes,
                tls,
                opts.connect_timeout,
            )
            .await;
            let key = if tls {
                "ws_floor_rss_per_conn_bytes"
            } else {
                "ws_floor_plain_rss_per_conn_bytes"
            };
            match result {
                Ok(r) => {
                    if r.connected < n {
                        report.error(format!(
                            "floor ({kind}): only {}/{n} connected",
                            r.connected
                        ));
                    }
                    report.num(key, r.per_conn_bytes);
                }
                Err(e) => report.error(format!("floor ({kind}): {e:#}")),
            }
        }
    }

    eprintln!("[3/9] muster: start, mint {n} workers, connect them");
    let data_dir = work.join("data");
    let port = procs::free_port()?;
    let mut server = Server::start(
        &opts.bin("muster"),
        &data_dir,
        port,
        &work.join("server.log"),
    )
    .await?;
    server.start_trial().await?;
    let admin = server.admin()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_start = server.rss();
    report.num("server_rss_start_bytes", rss_start.map(|b| b as f64));
    let revocations = opts.revocations.min(n / 2);
    let mut population = match mint_population(
        &admin,
        n,
        revocations,
        ("w", "r"),
        &run_id,
        opts.concurrency,
    )
    .await
    {
        Ok((creds, rate)) => {
            report.num("mint_workers_per_s", rate);
            creds
        }
        Err(e) => {
            report.error(format!("minting: {e:#}"));
            server.stop().await;
            return finish(report, started);
        }
    };
    let creds_path = work.join("creds-fleet.jsonl");
    creds::write(&creds_path, &population)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = server.rss();
    report.num("server_rss_idle_bytes", rss_idle.map(|b| b as f64));
    let connect_start = Instant::now();
    let server_cpu_before = server.cpu();
    let fleet = Fleet::start(
        &opts.bin("muster-swarm"),
        &creds_path,
        Target::DataDir(&data_dir),
        processes,
        work,
        "fleet",
        &opts.sources_args(),
    )?;
    let (connected, all) = fleet
        .tracker
        .wait_for("connected", n, opts.connect_timeout, |s| s.connected)
        .await;
    if all {
        report.num("connect_s", connect_start.elapsed().as_secs_f64());
    }
    // Where the CPU went while connecting: the server's share against the swarms'.
    let server_cpu_connected = server.cpu();
    report.num(
        "connect_cpu_server_s",
        server_cpu_connected
            .zip(server_cpu_before)
            .map(|(a, b)| a - b),
    );
    report.num("connect_cpu_swarms_s", cpu_of(&fleet.pids()));
    // Let TLS handshake garbage be freed and heartbeats settle before reading memory. The
    // server's CPU over these idle seconds is what holding the fleet costs.
    let settle = Duration::from_secs(5);
    tokio::time::sleep(settle).await;
    report.num(
        "idle_cpu_server_pct",
        server
            .cpu()
            .zip(server_cpu_connected)
            .map(|(a, b)| 100.0 * (a - b) / settle.as_secs_f64()),
    );
    let connected_now = fleet.tracker.with(|s| s.connected);
    report.num("connected_workers", connected_now.max(connected) as f64);
    let rss_connected = server.rss();
    report.num(
        "server_rss_connected_bytes",
        rss_connected.map(|b| b as f64),
    );
    if let (Some(idle), Some(loaded), true) = (rss_idle, rss_connected, connected_now > 0) {
        report.num(
            "server_rss_per_worker_bytes",
            (loaded as f64 - idle as f64) / connected_now as f64,
        );
    }
    if let (Some(start), Some(loaded), true) = (rss_start, rss_connected, connected_now > 0) {
        report.num(
            "server_rss_per_worker_from_start_bytes",
            (loaded as f64 - start as f64) / connected_now as f64,
        );
    }
    let swarm_rss: u64 = fleet
        .pids()
        .iter()
        .filter_map(|p| crate::sys::rss_bytes(*p))
        .sum();
    if connected_now > 0 {
        report.num(
            "swarm_rss_per_worker_bytes",
            swarm_rss as f64 / connected_now as f64,
        );
    }

    eprintln!(
        "[4/9] job dispatch: {} jobs to a real `muster worker`",
        opts.jobs
    );
    let server_cpu_before = server.cpu();
    match dispatch::measure(&opts.bin("muster"), &admin, &data_dir, work, opts.jobs).await {
        Ok(d) => {
            // The server's CPU per job dispatched (with the job worker's connection and the
            // fleet's heartbeats meanwhile).
            report.num(
                "job_dispatch_cpu_server_ms",
                server
                    .cpu()
                    .zip(server_cpu_before)
                    .map(|(a, b)| 1000.0 * (a - b) / opts.jobs.max(1) as f64),
            );
            let s = summarize(&d.start_ms);
            report.num("job_dispatch_p50_ms", s.map(|s| s.p50));
            report.num("job_dispatch_p99_ms", s.map(|s| s.p99));
            report.num("job_dispatch_max_ms", s.map(|s| s.max));
            report.num("job_dispatch_samples", d.start_ms.len() as f64);
            if d.errors > 0 {
                report.error(format!(
                    "job dispatch: {} jobs failed; first: {}",
                    d.errors,
                    d.first_error.unwrap_or_default()
                ));
            }
        }
        Err(e) => report.error(format!("job dispatch: {e:#}")),
    }

    eprintln!("[5/9] reconnect storm: kill -9 the server with {n} workers connected, restart");
    let swarm_cpu_before = cpu_of(&fleet.pids());
    let storm = storm::measure(&mut server, &fleet.tracker, n, opts.storm_timeout).await;
    // The restarted server's CPU is all storm (and start-up); the swarms' is the difference.
    report.num("storm_cpu_server_s", server.cpu());
    report.num(
        "storm_cpu_swarms_s",
        cpu_of(&fleet.pids())
            .zip(swarm_cpu_before)
            .map(|(a, b)| a - b),
    );
    match storm {
        Ok(s) => {
            report.num("reconnect_storm_s", s.seconds);
            report.num("reconnect_storm_p50_s", s.p50_s);
            report.num("reconnect_storm_p99_s", s.p99_s);
            report.num("reconnect_server_ready_s", s.server_ready_s);
            report.num("reconnect_connected", s.reconnected as f64);
            report.num("reconnect_gave_up", s.gave_up as f64);
            if s.seconds.is_none() {
                report.error(format!(
                    "reconnect storm: only {}/{n} back within {} s",
                    s.reconnected,
                    opts.storm_timeout.as_secs()
                ));
            }
        }
        Err(e) => report.error(format!("reconnect storm: {e:#}")),
    }
    // How the restarted server's handshakes went (retries included): resumed ones skipped the
    // certificate's signature.
    if let Some((full, resumed)) = server.tls_handshakes().await {
        report.num("storm_tls_full", Some(full));
        report.num("storm_tls_resumed", Some(resumed));
    }
    report.num(
        "server_rss_after_storm_bytes",
        server.rss().map(|b| b as f64),
    );
    let admin = server.admin()?;

    eprintln!("[6/9] revocation: {revocations} tokens, one at a time, {n} connected");
    let victims: Vec<String> = population
        .iter()
        .filter(|c| matches!(c.how, creds::How::Token { .. }))
        .map(|c| c.name.clone())
        .collect();
    let pairs: Vec<(&Client, String)> = victims.iter().map(|v| (&admin, v.clone())).collect();
    revoke::measure(&fleet.tracker, &pairs)
        .await
        .record(&mut report, "revoke");
    population.retain(|c| !victims.contains(&c.name));

    eprintln!(
        "[7/9] expiry: {} tokens expiring at one instant, {} s ahead",
        opts.expiries,
        opts.expiry_lead.as_secs()
    );
    match expiry::measure(
        &admin,
        &opts.bin("muster-swarm"),
        &data_dir,
        work,
        &run_id,
        opts.expiries,
        opts.expiry_lead,
        opts.concurrency,
        &opts.sources_args(),
    )
    .await
    {
        Ok(x) => {
            let s = summarize(&x.lateness_ms);
            report.num("expiry_lateness_p50_ms", s.map(|s| s.p50));
            report.num("expiry_lateness_p99_ms", s.map(|s| s.p99));
            report.num("expiry_lateness_max_ms", s.map(|s| s.max));
            report.num("expiry_samples", x.lateness_ms.len() as f64);
            report.num("expiry_not_connected", x.not_connected as f64);
            report.num("expiry_missed", x.missed as f64);
            report.num("expiry_spread_ms", x.expires_spread_ms);
        }
        Err(e) => report.error(format!("expiry: {e:#}")),
    }

    let local = muster_client::local::discover(&data_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!(
        "[8/9] enrollment throughput: {} by token, {} by secret, {} at a time",
        opts.enrollments, opts.enrollments, opts.concurrency
    );
    match enroll::tokens(
        &admin,
        &local.url,
        &local.trust,
        &run_id,
        opts.enrollments,
        opts.concurrency,
        &server,
    )
    .await
    {
        Ok(e) => {
            report.num("enroll_token_per_s", e.per_s);
            report.num("enroll_token_cpu_server_ms", e.server_cpu_ms);
            report.num("enroll_token_per_commit", e.per_commit);
            report.failures(
                "enroll_token_errors",
                "token enrollment",
                e.errors,
                e.first_error,
            );
        }
        Err(e) => report.error(format!("token enrollment: {e:#}")),
    }
    match enroll::secret(
        &opts.bin("muster"),
        &data_dir,
        work,
        &local.url,
        &local.trust,
        &run_id,
        opts.enrollments,
        opts.concurrency,
        &server,
    )
    .await
    {
        Ok(e) => {
            report.num("enroll_secret_per_s", e.per_s);
            report.num("enroll_secret_cpu_server_ms", e.server_cpu_ms);
            report.num("enroll_secret_per_commit", e.per_commit);
            report.failures(
                "enroll_secret_errors",
                "secret enrollment",
                e.errors,
                e.first_error,
            );
        }
        Err(e) => report.error(format!("secret enrollment: {e:#}")),
    }

    eprintln!(
        "[9/9] job throughput: {} jobs on {} job-running workers, {} at a time",
        opts.throughput_jobs, opts.throughput_workers, opts.concurrency
    );
    match throughput::measure(
        &opts.bin("muster-swarm"),
        &admin,
        &data_dir,
        work,
        &run_id,
        opts.throughput_workers,
        opts.throughput_jobs,
        opts.concurrency,
    )
    .await
    {
        Ok(t) => {
            report.num("jobs_per_s", t.jobs_per_s);
            report.num("jobs_throughput_workers", t.workers as f64);
            report.failures(
                "jobs_throughput_errors",
                "job throughput",
                t.errors,
                t.first_error,
            );
        }
        Err(e) => report.error(format!("job throughput: {e:#}")),
    }

    record_gave_up(&mut report, &fleet.tracker);
    fleet.stop().await;
    server.stop().await;
    record_log_lines(&mut report, &[work.join("server.log")]);
    finish(report, started)
}

/// Workers that stopped for good over the whole run, and why attempts failed most often.
fn record_gave_up(report: &mut Report, tracker: &fleet::Tracker) {
    let (gave_up, reasons) = tracker.with(|s| (s.gave_up, fleet::top_reasons(s, 5)));
    report.num("fleet_gave_up_total", gave_up as f64);
    report.set(
        "retry_reasons",
        reasons
            .into_iter()
            .map(|(r, c)| format!("{c}x {r}"))
            .collect::<Vec<_>>(),
    );
}

/// Warning and error lines in the servers' logs.
fn record_log_lines(report: &mut Report, logs: &[PathBuf]) {
    let text: String = logs
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    report.num(
        "server_log_warnings",
        text.lines().filter(|l| l.contains("WARN")).count() as f64,
    );
    report.num(
        "server_log_errors",
        text.lines().filter(|l| l.contains("ERROR")).count() as f64,
    );
}

/// What every run records first: the commit, the date and the machine.
fn stamp(report: &mut Report, opts: &Options) {
    report.set("commit", opts.commit.clone());
    report.set(
        "date",
        muster_core::Timestamp::from_unix_millis(i64::try_from(now_us() / 1000).unwrap_or(0))
            .to_rfc3339(),
    );
    report.num(
        "machine_nproc",
        std::thread::available_parallelism().map_or(0.0, |n| n.get() as f64),
    );
    report.num(
        "machine_mem_total_bytes",
        crate::sys::mem_total_bytes().map(|b| b as f64),
    );
    report.num("machine_loadavg_start", crate::sys::loadavg());
}

/// CPU seconds used so far by these processes together.
fn cpu_of(pids: &[u32]) -> Option<f64> {
    pids.iter()
        .map(|p| crate::sys::cpu_seconds(*p))
        .sum::<Option<f64>>()
}

fn finish(mut report: Report, started: Instant) -> anyhow::Result<Report> {
    report.num("duration_s", started.elapsed().as_secs_f64());
    report.num("machine_loadavg_end", crate::sys::loadavg());
    Ok(report)
}

/// N workers: all pre-created except `tokens` enrolled by token (the revocation victims, since
/// revocation is measured through `POST /api/v1/tokens/NAME/revoke`). Their names start with
/// `prefixes` (pre-created, token).
async fn mint_population(
    admin: &Client,
    n: usize,
    tokens: usize,
    prefixes: (&str, &str),
    run_id: &str,
    concurrency: usize,
) -> anyhow::Result<(Vec<creds::Credential>, f64)> {
    let (mut all, rate) = mint::workers(
        admin,
        mint::names(prefixes.0, n - tokens),
        run_id,
        concurrency,
        &Default::default(),
    )
    .await?;
    let minted = mint::tokens(
        admin,
        mint::names(prefixes.1, tokens),
        run_id,
        concurrency,
        || "24h".into(),
    )
    .await?;
    // Interleave victims through the list so they land in every swarm process.
    let step = (n / tokens.max(1)).max(1);
    for (i, m) in minted.into_iter().enumerate() {
        let at = (i * step).min(all.len());
        all.insert(at, m.cred);
    }
    Ok((all, rate))
}

//! The replica benchmark (`bench/run --replicas R`, issue 13): R `muster serve` replicas on one
//! fresh PostgreSQL database, N simulated workers homed on each, in this order:
//!
//! 1. the single-process reference: one server (SQLite) holding N idle workers, for memory;
//! 2. the replicas start on a new database; each mints its N workers;
//! 3. the R × N connect, each swarm process to its home replica first; memory per worker on
//!    each replica; then every replica's API is asked how many it shows connected;
//! 4. revocations, each made through a replica that does not hold the worker's channel;
//! 5. a replica's death: long jobs start on workers of the last replica, then each survivor
//!    sheds a share of its workers (see [`shed`]), the last replica is killed with -9, and its
//!    workers and jobs move to the survivors.
//!
//! `--workers` is N per replica, so `bench/run --replicas 5` is the 95,000 of issue 13. The
//! database is dropped at the end, however the run ends.

pub mod cluster;
pub mod failover;
pub mod pg;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use muster_client::Client;
use muster_proto::api::JobState;

use super::fleet::{self, Fleet, Target, Tracker};
use super::procs::Server;
use super::report::{REPLICAS, Report};
use super::{
    Options, cpu_of, finish, mint, mint_population, record_gave_up, record_log_lines, revoke, stamp,
};
use crate::clock::now_us;
use crate::creds;
use cluster::Cluster;
use pg::Postgres;

/// What only a replica run takes.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    pub replicas: usize,
    /// The PostgreSQL server, as a URL naming its maintenance database; the run's own database
    /// is made beside it.
    pub postgres: String,
    /// Job-running workers homed on the replica that is killed, one long job each.
    pub jobs: usize,
    /// How long each of those jobs runs (`sleep`): longer than the failover.
    pub job_sleep: Duration,
    pub failover_timeout: Duration,
}

pub async fn run(opts: &Options, ro: &ReplicaOptions) -> anyhow::Result<Report> {
    let started = Instant::now();
    if ro.replicas < 2 {
        bail!("--replicas needs at least 2 (one is killed and the others take its workers)");
    }
    let mut report = Report::new(&REPLICAS);
    report.num("replicas", ro.replicas as f64);
    report.num("workers_per_replica", opts.workers as f64);
    report.num("workers", (ro.replicas * opts.workers) as f64);
    report.num("sources", f64::from(opts.sources));
    stamp(&mut report, opts);
    std::fs::create_dir_all(&opts.work_dir)?;

    let pg = Postgres::connect(&ro.postgres).await?;
    let capacity = pg.capacity().await?;
    report.num("postgres_max_connections", capacity.max_connections as f64);
    report.num("postgres_connections_free", capacity.free() as f64);
    capacity.check(ro.replicas)?;
    let database = format!("muster_bench_{}", now_us() / 1_000_000);
    let url = pg.create_database(&database).await?;
    eprintln!("database `{database}` (dropped at the end)");
    report.set("postgres_database", database.clone());
    let outcome = run_on(opts, ro, &pg, &database, &url, &mut report).await;
    if let Err(e) = pg.drop_database(&database).await {
        report.error(format!("{e:#}"));
    }
    pg.close().await;
    outcome?;
    finish(report, started)
}

/// Every scenario, against the database `database` (at `url`).
async fn run_on(
    opts: &Options,
    ro: &ReplicaOptions,
    pg: &Postgres,
    database: &str,
    url: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (r, n) = (ro.replicas, opts.workers);
    let work = &opts.work_dir;
    let run_id = format!("{}", now_us() / 1_000_000 % 100_000_000);

    eprintln!("[1/5] single-process reference: one server (SQLite) with {n} idle workers");
    match single_reference(opts, &run_id).await {
        Ok((per_worker, connected)) => {
            report.num("single_rss_per_worker_bytes", per_worker);
            report.num("single_connected", connected as f64);
        }
        Err(e) => report.error(format!("single-process reference: {e:#}")),
    }

    eprintln!("[2/5] {r} replicas on PostgreSQL database `{database}`; each mints {n} workers");
    let mut cluster = Cluster::start(&opts.bin("muster"), work, r, url).await?;
    cluster.replicas[0].server.start_trial().await?;
    report.num(
        "postgres_connections",
        pg.connections(database).await? as f64,
    );
    let per_replica_victims = (opts.revocations / r).min(n / 2);
    let minting = Instant::now();
    let mut victims: Vec<(usize, String)> = Vec::new();
    let mut creds_files = Vec::new();
    for (k, replica) in cluster.replicas.iter().enumerate() {
        let (population, _) = mint_population(
            &replica.admin,
            n,
            per_replica_victims,
            (&format!("w{k}"), &format!("r{k}")),
            &run_id,
            opts.concurrency,
        )
        .await?;
        victims.extend(
            population
                .iter()
                .filter(|c| matches!(c.how, creds::How::Token { .. }))
                .map(|c| (k, c.name.clone())),
        );
        let path = work.join(format!("creds-replica-{k}.jsonl"));
        creds::write(&path, &population)?;
        creds_files.push(path);
    }
    report.num(
        "mint_workers_per_s",
        (r * n) as f64 / minting.elapsed().as_secs_f64().max(1e-9),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle: Vec<Option<u64>> = cluster.replicas.iter().map(|x| x.server.rss()).collect();

    let total = r * n;
    let split = Split::new(r, n, opts.per_swarm);
    eprintln!(
        "[3/5] connect {total} workers: {} swarm processes of about {} per replica, each to its \
         replica first, then the others",
        split.processes,
        n.div_ceil(split.processes)
    );
    report.num("swarm_processes", (r * split.processes) as f64);
    let tracker = Arc::new(Tracker::default());
    let mut fleets: Vec<Vec<Option<Fleet>>> = Vec::with_capacity(r);
    let cpu_before = (cpu_of(&cluster_pids(&cluster)), pg.cpu(database).await?);
    let connect_start = Instant::now();
    for (k, path) in creds_files.iter().enumerate() {
        let mut mine = Vec::with_capacity(split.processes);
        for j in 0..split.processes {
            let urls = cluster.urls_from(k, j);
            let mut fleet = Fleet::new(Arc::clone(&tracker));
            fleet.spawn(
                &opts.bin("muster-swarm"),
                path,
                &Target::Url {
                    url: &urls,
                    fingerprint: Some(&cluster.fingerprint),
                },
                (j, split.processes),
                &work.join(format!("swarm-replica-{k}-{j}.log")),
                &opts.sources_args(),
            )?;
            mine.push(Some(fleet));
        }
        fleets.push(mine);
    }
    let (_, all) = tracker
        .wait_for("connected", total, opts.connect_timeout, |s| s.connected)
        .await;
    if all {
        report.num("connect_s", connect_start.elapsed().as_secs_f64());
    }
    report.num(
        "connect_cpu_replicas_s",
        cpu_of(&cluster_pids(&cluster))
            .zip(cpu_before.0)
            .map(|(a, b)| a - b),
    );
    report.num(
        "connect_cpu_postgres_s",
        pg.cpu(database).await?.since(&cpu_before.1),
    );
    report.num("connect_cpu_swarms_s", cpu_of(&fleet_pids(&fleets)));
    // As in the single-process run: memory is read after 5 idle seconds, and before anything
    // lists the fleet (a list of every worker leaves its buffers in the allocator).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let connected = tracker.with(|s| s.connected);
    report.num("connected_workers", connected as f64);
    record_memory(report, &cluster, &tracker, &rss_idle);

    let (converged, views) = cluster
        .wait_for_views(connected, None, Duration::from_secs(120))
        .await;
    report.num("view_converged_s", converged);
    let shown: Vec<Option<usize>> = views
        .iter()
        .map(|(_, v)| v.as_ref().ok().map(cluster::View::connected))
        .collect();
    report.num(
        "connected_min_by_replica",
        shown.iter().map(|c| c.unwrap_or(0)).min().map(|c| c as f64),
    );
    report.set("connected_by_replica", serde_json::json!(shown));
    report.set(
        "status_by_replica",
        serde_json::json!(
            views
                .iter()
                .map(|(_, v)| v.as_ref().ok().map(|v| v.by_status.clone()))
                .collect::<Vec<_>>()
        ),
    );

    eprintln!(
        "[4/5] revocation across replicas: {} tokens, one at a time, each through a replica \
         that does not hold the worker",
        victims.len()
    );
    let pairs = cross_pairs(&cluster, &tracker, &victims);
    revoke::measure(&tracker, &pairs)
        .await
        .record(report, "revoke_cross");

    eprintln!(
        "[5/5] failover: {} long jobs on the last replica's workers, kill -9 of that replica",
        ro.jobs
    );
    if let Err(e) = failover(
        opts,
        ro,
        &mut cluster,
        &tracker,
        &mut fleets,
        pg,
        database,
        &split,
        &run_id,
        report,
    )
    .await
    {
        report.error(format!("failover: {e:#}"));
    }

    record_gave_up(report, &tracker);
    for fleet in fleets.into_iter().flatten().flatten() {
        fleet.stop().await;
    }
    let logs: Vec<PathBuf> = cluster
        .replicas
        .iter()
        .map(|x| x.server.log.clone())
        .collect();
    cluster.stop().await;
    record_log_lines(report, &logs);
    Ok(())
}

/// How each replica's workers are split over swarm processes. A replica's `processes` are a
/// multiple of R − 1: process `j` tries the other replicas starting with the `j mod (R − 1)`-th,
/// so a dead replica's workers spread evenly over the survivors, and each survivor can shed
/// `processes / (R − 1)` of its own to make room for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub processes: usize,
    /// Processes each survivor stops before the kill.
    pub shed: usize,
}

impl Split {
    pub fn new(replicas: usize, per_replica: usize, per_swarm: usize) -> Self {
        let others = replicas.saturating_sub(1).max(1);
        let shed = per_replica.div_ceil(per_swarm.max(1) * others).max(1);
        Self {
            processes: shed * others,
            shed,
        }
    }
}

/// Memory per idle worker on each replica: its VmRSS now minus after minting, divided by the
/// workers it holds (as the swarms saw their welcomes).
fn record_memory(report: &mut Report, cluster: &Cluster, tracker: &Tracker, idle: &[Option<u64>]) {
    let per: Vec<Option<f64>> = cluster
        .replicas
        .iter()
        .zip(idle)
        .map(|(replica, idle)| {
            let held = tracker.with(|s| {
                let index = s.server_index(&replica.url);
                s.workers
                    .values()
                    .filter(|w| w.connected && index.is_some() && w.server == index)
                    .count()
            });
            let (now, idle) = (replica.server.rss()?, (*idle)?);
            (held > 0).then(|| (now as f64 - idle as f64) / held as f64)
        })
        .collect();
    report.set("server_rss_per_worker_by_replica", serde_json::json!(per));
    let known: Vec<f64> = per.iter().flatten().copied().collect();
    let max = known.iter().copied().reduce(f64::max);
    report.num("server_rss_per_worker_max_bytes", max);
    report.num(
        "server_rss_per_worker_mean_bytes",
        (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64),
    );
    report.num(
        "server_rss_ratio_to_single",
        max.zip(report.get("single_rss_per_worker_bytes"))
            .map(|(m, single)| m / single),
    );
}

/// Each victim with the admin client of a replica that does not hold its channel (the next one
/// after the holder).
fn cross_pairs<'a>(
    cluster: &'a Cluster,
    tracker: &Tracker,
    victims: &[(usize, String)],
) -> Vec<(&'a Client, String)> {
    let r = cluster.replicas.len();
    victims
        .iter()
        .map(|(home, name)| {
            let holder = tracker.with(|s| {
                let at = s.workers.get(name).and_then(|w| w.server)?;
                let url = s.servers.get(usize::from(at))?;
                cluster.replicas.iter().position(|x| &x.url == url)
            });
            let through = (holder.unwrap_or(*home) + 1) % r;
            (&cluster.replicas[through].admin, name.clone())
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn failover(
    opts: &Options,
    ro: &ReplicaOptions,
    cluster: &mut Cluster,
    tracker: &Arc<Tracker>,
    fleets: &mut [Vec<Option<Fleet>>],
    pg: &Postgres,
    database: &str,
    split: &Split,
    run_id: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let r = cluster.replicas.len();
    let victim = r - 1;
    let survivor = &cluster.replicas[0].admin.clone();
    // Job-running workers homed on the victim, in a swarm of their own.
    let mut job_names = Vec::new();
    if ro.jobs > 0 {
        let (population, _) = mint::workers(
            &cluster.replicas[victim].admin,
            mint::names("jf", ro.jobs),
            run_id,
            32,
            &Default::default(),
        )
        .await?;
        job_names = population.iter().map(|c| c.name.clone()).collect();
        let path = opts.work_dir.join("creds-failover-jobs.jsonl");
        creds::write(&path, &population)?;
        let before = tracker.with(|s| s.connected);
        let urls = cluster.urls_from(victim, 0);
        let mut fleet = Fleet::new(Arc::clone(tracker));
        fleet.spawn(
            &opts.bin("muster-swarm"),
            &path,
            &Target::Url {
                url: &urls,
                fingerprint: Some(&cluster.fingerprint),
            },
            (0, 1),
            &opts.work_dir.join("swarm-failover-jobs.log"),
            &[
                "--jobs-dir".to_owned(),
                opts.work_dir.join("swarm-jobs").display().to_string(),
            ],
        )?;
        fleets[victim].push(Some(fleet));
        let (_, all) = tracker
            .wait_for(
                "job workers connected",
                before + ro.jobs,
                Duration::from_secs(120),
                |s| s.connected,
            )
            .await;
        if !all {
            bail!("the job-running workers did not all connect");
        }
    }
    let ids = failover::start_jobs(survivor, &job_names, ro.job_sleep).await?;
    let running = failover::wait_jobs(
        survivor,
        &ids,
        Some(JobState::Running),
        Duration::from_secs(60),
    )
    .await?;
    if running.unfinished + running.succeeded + running.lost + running.other.len() > 0 {
        bail!("the long jobs did not all start: {running:?}");
    }
    report.num("failover_jobs", ids.len() as f64);

    let shed = shed(fleets, victim, split.shed).await;
    report.num("failover_shed_workers", shed as f64);
    let expected = tracker.with(|s| s.connected);
    let (settled, _) = cluster
        .wait_for_views(expected, None, Duration::from_secs(120))
        .await;
    if settled.is_none() {
        report
            .error("failover: after the shedding, the replicas did not agree on who is connected");
    }

    let survivors: Vec<u32> = cluster
        .replicas
        .iter()
        .take(victim)
        .map(|x| x.server.pid)
        .collect();
    let cpu_before = (
        cpu_of(&survivors),
        pg.cpu(database).await?,
        cpu_of(&fleet_pids(fleets)),
    );
    let tls_before = survivors_handshakes(&cluster.replicas[..victim]).await;
    let victim_url = cluster.replicas[victim].url.clone();
    let reasons_before = tracker.with(|s| s.retry_reasons.clone());
    let f = failover::kill_and_wait(
        &mut cluster.replicas[victim].server,
        &victim_url,
        tracker,
        ro.failover_timeout,
    )
    .await?;
    cluster.replicas[victim].alive = false;
    report.num(
        "failover_cpu_survivors_s",
        cpu_of(&survivors).zip(cpu_before.0).map(|(a, b)| a - b),
    );
    report.num(
        "failover_cpu_postgres_s",
        pg.cpu(database).await?.since(&cpu_before.1),
    );
    report.num(
        "failover_cpu_swarms_s",
        cpu_of(&fleet_pids(fleets))
            .zip(cpu_before.2)
            .map(|(a, b)| a - b),
    );
    // How the moved workers' handshakes went on the survivors: resumed ones used a ticket the
    // killed replica gave (replicas share their ticket keys).
    if let (Some(before), Some(after)) = (
        tls_before,
        survivors_handshakes(&cluster.replicas[..victim]).await,
    ) {
        report.num("failover_tls_full", Some(after.0 - before.0));
        report.num("failover_tls_resumed", Some(after.1 - before.1));
    }
    report.set(
        "failover_retry_reasons",
        tracker.with(|s| fleet::reasons_since(s, &reasons_before, 6)),
    );
    report.num("failover_workers", f.workers as f64);
    report.num("failover_moved", f.moved as f64);
    report.num("failover_s", f.seconds);
    report.num("failover_p50_s", f.p50_s);
    report.num("failover_p99_s", f.p99_s);
    report.num("failover_gave_up", f.gave_up as f64);
    if f.seconds.is_none() {
        report.error(format!(
            "failover: only {}/{} of the killed replica's workers back within {} s",
            f.moved,
            f.workers,
            ro.failover_timeout.as_secs()
        ));
    }
    // One view again: every survivor shows everyone connected, none held by the dead replica
    // (its lease lapsed).
    let expected = tracker.with(|s| s.connected);
    let dead = cluster.replicas[victim].id.clone();
    let (agreed, _) = cluster
        .wait_for_views(expected, Some(&dead), Duration::from_secs(120))
        .await;
    report.num(
        "failover_view_s",
        agreed.map(|_| f.killed_at.elapsed().as_secs_f64()),
    );

    let endings = failover::wait_jobs(
        survivor,
        &ids,
        None,
        ro.job_sleep + Duration::from_secs(180),
    )
    .await?;
    report.num("failover_jobs_reattached", endings.succeeded as f64);
    report.num("failover_jobs_lost", endings.lost as f64);
    report.num(
        "failover_jobs_other",
        (endings.other.len() + endings.unfinished) as f64,
    );
    if let Some(first) = endings.other.first() {
        report.error(format!(
            "failover: {} jobs ended neither succeeded nor lost; first: {first}",
            endings.other.len()
        ));
    }
    if endings.unfinished > 0 {
        report.error(format!(
            "failover: {} jobs had not ended in time; first: {}",
            endings.unfinished,
            endings.first_unfinished.as_deref().unwrap_or("-")
        ));
    }
    Ok(())
}

/// Each survivor stops `count` of its swarm processes (politely: their workers close their
/// channels), so that after the kill it holds what it held before. Each process may open at most
/// 20,000 files: at N = 19,000 a survivor has no room for a dead replica's share on top.
/// Returns how many workers went.
async fn shed(fleets: &mut [Vec<Option<Fleet>>], victim: usize, count: usize) -> usize {
    let mut stopped = Vec::new();
    for (k, mine) in fleets.iter_mut().enumerate() {
        if k == victim {
            continue;
        }
        stopped.extend(mine.iter_mut().take(count).filter_map(Option::take));
    }
    let Some(tracker) = stopped.first().map(|f| Arc::clone(&f.tracker)) else {
        return 0;
    };
    let before = tracker.with(|s| s.connected);
    for fleet in stopped {
        fleet.stop().await;
    }
    let after = tracker.with(|s| s.connected);
    eprintln!("  the survivors shed {} workers", before - after);
    before - after
}

fn cluster_pids(cluster: &Cluster) -> Vec<u32> {
    cluster
        .replicas
        .iter()
        .filter(|x| x.alive)
        .map(|x| x.server.pid)
        .collect()
}

fn fleet_pids(fleets: &[Vec<Option<Fleet>>]) -> Vec<u32> {
    fleets
        .iter()
        .flatten()
        .flatten()
        .flat_map(Fleet::pids)
        .collect()
}

/// One server on SQLite, as `bench/run` without `--replicas` runs it, holding N idle workers:
/// the memory per worker the replicas are compared with, measured the same way (VmRSS after 5
/// idle seconds minus after minting, per connected worker). Returns it and how many connected.
async fn single_reference(opts: &Options, run_id: &str) -> anyhow::Result<(f64, usize)> {
    let n = opts.workers;
    let dir = opts.work_dir.join("single");
    std::fs::create_dir_all(&dir)?;
    let data_dir = dir.join("data");
    let server = Server::start(
        &opts.bin("muster"),
        &data_dir,
        super::procs::free_port()?,
        &dir.join("server.log"),
    )
    .await?;
    let measured = async {
        server.start_trial().await?;
        let admin = server.admin()?;
        let (population, _) = mint::workers(
            &admin,
            mint::names("s", n),
            run_id,
            opts.concurrency,
            &Default::default(),
        )
        .await?;
        let path = dir.join("creds.jsonl");
        creds::write(&path, &population)?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = server.rss();
        let fleet = Fleet::start(
            &opts.bin("muster-swarm"),
            &path,
            Target::DataDir(&data_dir),
            opts.swarm_processes(n),
            &dir,
            "single",
            &[],
        )?;
        let (connected, _) = fleet
            .tracker
            .wait_for("connected", n, opts.connect_timeout, |s| s.connected)
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let loaded = server.rss();
        let connected = fleet.tracker.with(|s| s.connected).max(connected);
        fleet.stop().await;
        match (idle, loaded) {
            (Some(idle), Some(loaded)) if connected > 0 => {
                Ok(((loaded as f64 - idle as f64) / connected as f64, connected))
            }
            _ => bail!("no memory figure: {connected} connected"),
        }
    }
    .await;
    server.stop().await;
    measured
}

/// The TLS handshakes these replicas completed, `(full, resumed)` summed; `None` if one's
/// cannot be read.
async fn survivors_handshakes(replicas: &[cluster::Replica]) -> Option<(f64, f64)> {
    let mut sum = (0.0, 0.0);
    for replica in replicas {
        let (full, resumed) = replica.server.tls_handshakes().await?;
        sum = (sum.0 + full, sum.1 + resumed);
    }
    Some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replicas_processes_spread_over_the_survivors_and_can_be_shed() {
        // 5 × 19,000: four processes of 4,750 per replica; each survivor sheds one, and takes
        // one of the dead replica's four.
        assert_eq!(
            Split::new(5, 19_000, 9_500),
            Split {
                processes: 4,
                shed: 1
            }
        );
        // Two replicas of 19,000: processes of at most 9,500, all of a survivor's shed.
        assert_eq!(
            Split::new(2, 19_000, 9_500),
            Split {
                processes: 2,
                shed: 2
            }
        );
        assert_eq!(
            Split::new(3, 500, 9_500),
            Split {
                processes: 2,
                shed: 1
            }
        );
    }
}

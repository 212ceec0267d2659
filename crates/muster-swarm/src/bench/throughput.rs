//! Job throughput: a few hundred simulated workers that run jobs with the worker's own job
//! runner (`muster_worker::jobs::JobManager`), and many short jobs (`true`) submitted through
//! the admin API with several in flight at once, each followed to its end. The figure is jobs
//! completed per second: submission, placement, dispatch over the control channel, fork and
//! exec of the command, its exit reported back and written down, the follower told.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use muster_client::Client;
use muster_proto::api::{JobEvent, JobState, SubmitJobRequest};
use tokio::sync::Semaphore;

use super::fleet::{Fleet, Target};
use super::mint;
use crate::creds;

#[derive(Debug, Default)]
pub struct Throughput {
    pub workers: usize,
    pub jobs: usize,
    pub jobs_per_s: f64,
    pub errors: usize,
    pub first_error: Option<String>,
}

const LABEL: (&str, &str) = ("bench", "jobs");

#[allow(clippy::too_many_arguments)]
pub async fn measure(
    swarm_bin: &Path,
    admin: &Client,
    data_dir: &Path,
    work: &Path,
    run_id: &str,
    workers: usize,
    jobs: usize,
    concurrency: usize,
) -> anyhow::Result<Throughput> {
    let labels: BTreeMap<String, String> = [(LABEL.0.to_owned(), LABEL.1.to_owned())].into();
    let (population, _) =
        mint::workers(admin, mint::names("j", workers), run_id, 32, &labels).await?;
    let path = work.join("creds-jobs.jsonl");
    creds::write(&path, &population)?;
    let jobs_dir = work.join("swarm-jobs");
    let fleet = Fleet::start(
        swarm_bin,
        &path,
        Target::DataDir(data_dir),
        1,
        work,
        "jobs",
        &["--jobs-dir".to_owned(), jobs_dir.display().to_string()],
    )?;
    let (connected, all) = fleet
        .tracker
        .wait_for(
            "job workers connected",
            workers,
            Duration::from_secs(120),
            |s| s.connected,
        )
        .await;
    if !all {
        fleet.stop().await;
        bail!("only {connected} of {workers} job workers connected");
    }
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..jobs {
        let permit = Arc::clone(&gate).acquire_owned().await?;
        let admin = admin.clone();
        tasks.spawn(async move {
            let result = one_job(&admin).await;
            drop(permit);
            result
        });
    }
    let mut out = Throughput {
        workers,
        jobs,
        ..Default::default()
    };
    let mut done = 0;
    // Every job has a 120 s queue timeout and a 60 s run timeout: past this, something is stuck.
    let give_up_at = tokio::time::Instant::now() + Duration::from_secs(300);
    while let Some(joined) = match tokio::time::timeout_at(give_up_at, tasks.join_next()).await {
        Ok(next) => next,
        Err(_) => {
            let left = tasks.len();
            tasks.abort_all();
            fleet.stop().await;
            bail!("{left} of {jobs} jobs did not finish within 300 s");
        }
    } {
        match joined.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(()) => done += 1,
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e.to_string());
            }
        }
        if (done + out.errors).is_multiple_of(500) {
            eprintln!("  jobs completed {}/{jobs}", done + out.errors);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    out.jobs_per_s = done as f64 / elapsed.max(1e-9);
    eprintln!(
        "  {done} jobs on {workers} workers in {elapsed:.2} s = {:.0} jobs/s ({} errors)",
        out.jobs_per_s, out.errors
    );
    fleet.stop().await;
    Ok(out)
}

async fn one_job(admin: &Client) -> anyhow::Result<()> {
    let job = admin
        .submit_job(&SubmitJobRequest {
            command: vec!["true".into()],
            worker: None,
            labels: [(LABEL.0.to_owned(), LABEL.1.to_owned())].into(),
            env: Default::default(),
            timeout: Some("60s".into()),
            queue_timeout: Some("120s".into()),
        })
        .await?;
    let mut events = admin.job_output(&job.id, 0, true).await?;
    while let Some(event) = events.next().await? {
        if let JobEvent::End { job } = event {
            if job.state == JobState::Succeeded {
                return Ok(());
            }
            bail!("job {} ended `{}`: {:?}", job.id, job.state, job.reason);
        }
    }
    bail!("the output stream of job {} ended early", job.id)
}

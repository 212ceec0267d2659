//! Job dispatch: a real `muster worker` process (the product's own job runner) next to the
//! simulated fleet, and jobs `date +%s%N` submitted one after another. The command prints the
//! wall clock at the moment it started, so the figure is: submit call made → the command
//! running on the worker (queueing, dispatch over the control channel, fork and exec).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use muster_client::Client;
use muster_proto::api::{
    CreateTokenRequest, JobEvent, JobState, OutputStream, SubmitJobRequest, WorkerStatus,
};

use crate::clock::{ms_between, now_us};
use crate::sys;

const WORKER: &str = "jobrunner";

#[derive(Debug, Default)]
pub struct Dispatch {
    pub start_ms: Vec<f64>,
    pub errors: usize,
    pub first_error: Option<String>,
}

pub async fn measure(
    muster: &Path,
    admin: &Client,
    data_dir: &Path,
    work: &Path,
    jobs: usize,
) -> anyhow::Result<Dispatch> {
    let local = muster_client::local::discover(data_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = admin
        .create_token(&CreateTokenRequest {
            name: WORKER.into(),
            duration: "24h".into(),
            labels: Default::default(),
        })
        .await?;
    let mut command = tokio::process::Command::new(muster);
    command
        .arg("worker")
        .arg("--url")
        .arg(&local.url)
        .arg("--state-dir")
        .arg(work.join("jobrunner-state"))
        .arg("--max-jobs")
        .arg("1")
        .env("MUSTER_ENROLLMENT_TOKEN", &token.token)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("jobrunner.log"))?)
        .kill_on_drop(true);
    if let Some(fp) = &local.server_file.tls_fingerprint {
        command.arg("--ca-fingerprint").arg(fp);
    }
    let mut child = command.spawn().context("cannot start `muster worker`")?;
    let pid = child.id().unwrap_or(0);
    let result = run_jobs(admin, jobs).await;
    sys::signal(pid, libc::SIGTERM);
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
    }
    result
}

async fn run_jobs(admin: &Client, jobs: usize) -> anyhow::Result<Dispatch> {
    let waited = Instant::now();
    loop {
        if let Ok(w) = admin.show_worker(WORKER).await
            && w.status == WorkerStatus::Connected
        {
            break;
        }
        if waited.elapsed() > Duration::from_secs(60) {
            bail!("the job worker did not connect within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut out = Dispatch::default();
    for i in 0..jobs {
        if i % 25 == 0 {
            eprintln!("  jobs {i}/{jobs}");
        }
        match one_job(admin).await {
            Ok(ms) => out.start_ms.push(ms),
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e.to_string());
            }
        }
    }
    eprintln!("  jobs {jobs}/{jobs}");
    Ok(out)
}

async fn one_job(admin: &Client) -> anyhow::Result<f64> {
    let t0 = now_us();
    let job = admin
        .submit_job(&SubmitJobRequest {
            command: vec!["date".into(), "+%s%N".into()],
            worker: Some(WORKER.into()),
            labels: Default::default(),
            env: Default::default(),
            timeout: Some("30s".into()),
            queue_timeout: Some("30s".into()),
        })
        .await?;
    let mut events = admin.job_output(&job.id, 0, true).await?;
    let mut stdout = Vec::new();
    let mut state = JobState::Unknown;
    while let Some(event) = events.next().await? {
        match event {
            JobEvent::Output {
                stream: OutputStream::Stdout,
                data,
                ..
            } => {
                stdout.extend(base64::engine::general_purpose::STANDARD.decode(data)?);
            }
            JobEvent::End { job } => {
                state = job.state;
                break;
            }
            _ => {}
        }
    }
    if state != JobState::Succeeded {
        bail!("job {} ended `{state}`", job.id);
    }
    let text = String::from_utf8_lossy(&stdout);
    let nanos: u128 = text
        .trim()
        .parse()
        .with_context(|| format!("job printed `{}`, not a time", text.trim()))?;
    let started_us = u64::try_from(nanos / 1000).unwrap_or(u64::MAX);
    Ok(ms_between(t0, started_us))
}

//! `muster worker` and `muster worker doctor`.

use muster_worker::WorkerConfig;
use muster_worker::doctor::{self, Finding};

use crate::cli::{DoctorArgs, WorkerAction, WorkerArgs, WorkerCli, default_state_dir};
use crate::commands::serve::shutdown_signal;
use crate::error::CliError;
use crate::output::print_json;

pub async fn run(cli: WorkerCli) -> Result<(), CliError> {
    match cli.action {
        Some(WorkerAction::Doctor(args)) => self::doctor(*args).await,
        None => worker(cli.args).await,
    }
}

/// The worker's configuration from its flags and environment.
fn config(args: WorkerArgs) -> WorkerConfig {
    WorkerConfig {
        url: args.url,
        name: args.name,
        token: args.token,
        enrollment_key: args.enrollment_key,
        worker_id: args.worker_id,
        api_key: args.api_key,
        state_dir: args.state_dir.unwrap_or_else(default_state_dir),
        labels: args
            .labels
            .into_iter()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect(),
        ca_file: args.ca_file,
        ca_fingerprint: args.ca_fingerprint,
        reconnect: !args.no_reconnect,
        max_jobs: args.max_jobs,
        allow_plaintext: args.allow_plaintext,
        job_user: args.job_user.filter(|u| !u.trim().is_empty()),
        job_writable: args
            .job_writable
            .into_iter()
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
    }
}

async fn worker(args: WorkerArgs) -> Result<(), CliError> {
    let config = config(args);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    muster_worker::run(config, shutdown).await?;
    tracing::info!("worker stopped");
    Ok(())
}

/// Runs the checks and prints one line each (or the JSON array); fails when one failed.
async fn doctor(args: DoctorArgs) -> Result<(), CliError> {
    let options = doctor::Options {
        // Seconds to milliseconds; the cast saturates, and a test offset is small.
        clock_offset_ms: (args.clock_offset * 1000.0).round() as i64,
    };
    let findings = doctor::run(&config(args.worker), options).await;
    if args.json {
        print_json(&findings);
    } else {
        print!("{}", render(&findings));
    }
    match findings
        .iter()
        .filter(|f| f.verdict == doctor::Verdict::Fail)
        .count()
    {
        0 => Ok(()),
        failed => Err(CliError::DoctorFailed { failed }),
    }
}

/// One line per check: the verdict, the check, what was found and, after `fix:`, what to do.
fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for finding in findings {
        let line = format!(
            "{:<4}  {:<15}  {}",
            finding.verdict.label(),
            finding.check.word(),
            finding.detail
        );
        out.push_str(&line);
        if let Some(fix) = &finding.fix {
            out.push_str("; fix: ");
            out.push_str(fix);
        }
        out.push('\n');
    }
    out
}

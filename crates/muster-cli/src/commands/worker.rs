//! `muster worker`.

use muster_worker::WorkerConfig;

use crate::cli::{WorkerArgs, default_state_dir};
use crate::commands::serve::shutdown_signal;
use crate::error::CliError;

pub async fn run(args: WorkerArgs) -> Result<(), CliError> {
    let config = WorkerConfig {
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
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    muster_worker::run(config, shutdown).await?;
    tracing::info!("worker stopped");
    Ok(())
}

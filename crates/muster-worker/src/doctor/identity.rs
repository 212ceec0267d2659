//! Whether the server knows the identity this worker would connect with: the one cached in its
//! state dir, or a pre-created worker's. The server answers that question in one place, when
//! the worker connects with the proof that it holds its key; so the doctor connects, as the
//! worker would, and closes the channel at once. It never does so beside a running worker (that
//! would take over its channel), nor with a key it would have to create.

use std::sync::Arc;

use futures_util::StreamExt;
use muster_core::Labels;
use muster_proto::ErrorCode;

use super::local::StateDirReport;
use super::server::Reached;
use super::{Check, Finding, STEP_TIMEOUT, Verdict};
use crate::channel::{self, ChannelOptions, Identity};
use crate::classify::Failure;
use crate::config::WorkerConfig;
use crate::error::Cause;
use crate::identity::{FileTickets, Prover};
use crate::state_dir::{self, StateDir};

pub(super) struct IdentityReport {
    pub finding: Finding,
    /// The worker would connect with an identity rather than enroll.
    pub has_identity: bool,
}

/// Who the worker would connect as.
struct Claimed {
    worker_id: String,
    api_key: String,
    /// How to name it for people.
    described: String,
    /// The URL it was cached from, for a cached identity.
    cached_from: Option<String>,
}

pub(super) async fn check(
    config: &WorkerConfig,
    state: &StateDirReport,
    reached: Option<&Reached>,
) -> IdentityReport {
    let root = &config.state_dir;
    let cached = if state.exists {
        match state_dir::read_identity(root) {
            Ok(cached) => cached,
            Err(error) => {
                return IdentityReport {
                    finding: Finding::from_error(Check::Identity, Verdict::Fail, &error),
                    has_identity: false,
                };
            }
        }
    } else {
        None
    };
    let claimed = match (&cached, &config.worker_id, &config.api_key) {
        (Some(c), _, _) => Claimed {
            worker_id: c.worker_id.clone(),
            api_key: c.api_key.clone(),
            described: format!("worker `{}` (cached in `{}`)", c.name, root.display()),
            cached_from: Some(c.server_url.clone()),
        },
        (None, Some(id), Some(key)) => Claimed {
            worker_id: id.clone(),
            api_key: key.clone(),
            described: format!("pre-created worker `{id}`"),
            cached_from: None,
        },
        _ => {
            return IdentityReport {
                finding: Finding::skip(
                    Check::Identity,
                    format!(
                        "no cached identity in `{}`: the worker enrolls with its configured credential",
                        root.display()
                    ),
                ),
                has_identity: false,
            };
        }
    };
    let finding = verify(config, state, reached, &claimed).await;
    IdentityReport {
        finding,
        has_identity: true,
    }
}

async fn verify(
    config: &WorkerConfig,
    state: &StateDirReport,
    reached: Option<&Reached>,
    claimed: &Claimed,
) -> Finding {
    let root = &config.state_dir;
    let Some(reached) = reached else {
        return Finding::skip(Check::Identity, "not checked: the server cannot be reached");
    };
    if !state.usable {
        return Finding::skip(
            Check::Identity,
            "not checked: the worker cannot use this state dir (see state-dir)",
        );
    }
    if !state.exists || !state_dir::has_key(root) {
        return Finding::skip(
            Check::Identity,
            format!(
                "not checked: `{}` holds no key yet; the worker makes one at its next start",
                root.display()
            ),
        );
    }
    if let Some(pid) = state_dir::lock_holder(root) {
        return Finding::skip(
            Check::Identity,
            format!(
                "not checked: a worker process (pid {pid}) runs on `{}`, and checking would take over its channel",
                root.display()
            ),
        )
        .with_fix("its log says whether it is connected; or stop it and run the doctor again");
    }
    let opened = match StateDir::open(root) {
        Ok(opened) => opened,
        Err(error) => return Finding::from_error(Check::Identity, Verdict::Skip, &error),
    };
    let labels = Labels::parse_all(config.labels.iter().map(String::as_str))
        .map(|l| l.to_string())
        .unwrap_or_default();
    let identity = Identity {
        worker_id: claimed.worker_id.clone(),
        api_key: claimed.api_key.clone(),
        machine_id: opened.machine_id().to_string(),
        prover: Prover::new(
            Arc::clone(opened.key()),
            Arc::new(FileTickets::open(opened.ticket_path())),
        ),
    };
    // No slots: the server sends no job to this short connection (it would be lost on it).
    let options = ChannelOptions {
        labels,
        max_jobs: 0,
        ..ChannelOptions::default()
    };
    let connected = tokio::time::timeout(
        STEP_TIMEOUT * 4,
        channel::connect(&reached.endpoint, &identity, &options),
    )
    .await;
    match connected {
        Ok(Ok(mut socket)) => {
            // A normal close, as a stopping worker sends; the server records a disconnection.
            let _ = tokio::time::timeout(STEP_TIMEOUT, async {
                let _ = socket.close(None).await;
                while let Some(Ok(_)) = socket.next().await {}
            })
            .await;
            Finding::ok(
                Check::Identity,
                format!(
                    "the server knows {} and this state dir's key",
                    claimed.described
                ),
            )
        }
        Ok(Err(Failure::Stop(error))) => {
            let unknown = error.cause() == Cause::Refused(ErrorCode::UnknownIdentity);
            let error = if unknown && claimed.cached_from.is_some() {
                crate::runner::credentials::unknown_cached_identity(&opened)
            } else {
                error
            };
            let mut finding = Finding::from_error(Check::Identity, Verdict::Fail, &error);
            if let Some(from) = claimed
                .cached_from
                .as_deref()
                .filter(|from| **from != reached.endpoint.base_url)
            {
                finding
                    .detail
                    .push_str(&format!(" (it was cached from `{from}`)"));
            }
            finding
        }
        Ok(Err(Failure::Retry { reason, .. })) => Finding::warn(
            Check::Identity,
            format!("not checked: {reason}"),
            "run the doctor again in a moment; the worker retries such failures by itself",
        ),
        Err(_) => Finding::warn(
            Check::Identity,
            "not checked: the server did not admit or refuse the connection in time",
            "run the doctor again in a moment",
        ),
    }
}

//! Minting what the simulated workers need through the admin API, many calls in flight at once
//! (which also loads the server's write path).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use futures_util::StreamExt;
use muster_client::{Client, ClientError};
use muster_proto::api::{CreateTokenRequest, CreateWorkerRequest};

use crate::clock::rfc3339_to_us;
use crate::creds::{Credential, How};

/// A machine id for a simulated worker: unique per run, valid for the server.
pub fn machine_id(run_id: &str, name: &str) -> String {
    format!("bench-{run_id}-{name}")
}

/// A minted token and when it expires.
pub struct MintedToken {
    pub cred: Credential,
    pub expires_at_us: u64,
}

/// Calls `f` until it succeeds, retrying a few times on answers that say "later".
async fn with_retries<T, F, Fut>(f: F) -> Result<T, ClientError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut attempt = 0u32;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let transient = matches!(
                    muster_worker::classify::from_client(&e),
                    muster_worker::classify::Failure::Retry { .. }
                );
                attempt += 1;
                if !transient || attempt >= 8 {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
        }
    }
}

/// Runs `make` for every name, `concurrency` at a time, with a progress line every 2 s.
async fn mint_all<T, F, Fut>(
    label: &str,
    names: Vec<String>,
    concurrency: usize,
    make: F,
) -> anyhow::Result<(Vec<T>, f64)>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let total = names.len();
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let progress = {
        let done = Arc::clone(&done);
        let label = label.to_owned();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                eprintln!("  {label} {}/{total}", done.load(Ordering::Relaxed));
            }
        })
    };
    let results: Vec<Result<T, ClientError>> = futures_util::stream::iter(names)
        .map(|name| {
            let done = Arc::clone(&done);
            let fut = make(name);
            async move {
                let r = fut.await;
                done.fetch_add(1, Ordering::Relaxed);
                r
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    progress.abort();
    let elapsed = start.elapsed().as_secs_f64();
    let mut out = Vec::with_capacity(total);
    for r in results {
        out.push(r.map_err(|e| anyhow!("{label}: {e}"))?);
    }
    eprintln!("  {label} {total}/{total} in {elapsed:.1} s");
    Ok((out, total as f64 / elapsed.max(1e-9)))
}

/// Pre-creates workers; returns their credentials and the rate (per second).
pub async fn workers(
    client: &Client,
    names: Vec<String>,
    run_id: &str,
    concurrency: usize,
    labels: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<(Vec<Credential>, f64)> {
    mint_all("minted workers", names, concurrency, |name| async move {
        let request = CreateWorkerRequest {
            name: name.clone(),
            labels: labels.clone(),
        };
        let created = with_retries(|| client.create_worker(&request)).await?;
        Ok(Credential {
            machine_id: machine_id(run_id, &name),
            name,
            how: How::Precreated {
                worker_id: created.id,
                api_key: created.api_key,
            },
        })
    })
    .await
}

/// Mints tokens; `duration` is asked for each token's `--duration` just before its call (so
/// tokens can be made to expire at one instant).
pub async fn tokens(
    client: &Client,
    names: Vec<String>,
    run_id: &str,
    concurrency: usize,
    duration: impl Fn() -> String,
) -> anyhow::Result<Vec<MintedToken>> {
    let duration = &duration;
    let (minted, _) = mint_all("minted tokens", names, concurrency, |name| async move {
        let request = CreateTokenRequest {
            name: name.clone(),
            duration: duration(),
            labels: Default::default(),
        };
        let created = with_retries(|| client.create_token(&request)).await?;
        let expires_at_us = rfc3339_to_us(&created.expires_at).ok_or_else(|| {
            ClientError::Protocol(format!("bad expires_at `{}`", created.expires_at))
        })?;
        Ok(MintedToken {
            cred: Credential {
                machine_id: machine_id(run_id, &name),
                name,
                how: How::Token {
                    token: created.token,
                },
            },
            expires_at_us,
        })
    })
    .await?;
    Ok(minted)
}

/// `prefix-00042`-style names.
pub fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i:05}")).collect()
}

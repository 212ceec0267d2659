//! Enrollment throughput: many concurrent `POST /api/v1/enroll` calls, each a durable write
//! (the server answers after COMMIT). Tokens are minted and worker keys made before the clock
//! starts; secret enrollments each use a distinct worker name.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use muster_client::{Client, Trust};
use muster_core::identity::{Binding, Proof, Purpose, WorkerKey};
use muster_proto::api::EnrollRequest;

use super::mint;
use super::procs::Server;

#[derive(Debug, Default)]
pub struct Enrollments {
    pub per_s: f64,
    pub ok: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    /// The server's CPU (user + system) per enrollment, in ms, over the timed part: a figure
    /// that, unlike the rate, hardly depends on what else the machine runs.
    pub server_cpu_ms: Option<f64>,
    /// Enrollments per durable commit of the server over the timed part: above 1, commits are
    /// shared (group commit), which is how the rate can pass the disk's fsync ceiling.
    pub per_commit: Option<f64>,
}

async fn enroll_all(
    url: &str,
    trust: &Trust,
    requests: Vec<EnrollRequest>,
    concurrency: usize,
    label: &str,
    server: &Server,
) -> anyhow::Result<Enrollments> {
    // A client of its own: no admin credential, a fresh connection pool, as machines would.
    let client = Client::new(url, trust, None)?;
    let client = &client;
    let total = requests.len();
    // A worker makes its key at its first start, before it enrolls: made here before the clock
    // starts, as the tokens are minted before it, so the rate counts the enrollment alone.
    let requests: Vec<(EnrollRequest, WorkerKey)> = requests
        .into_iter()
        .map(|r| (r, WorkerKey::generate(&mut rand::rngs::OsRng)))
        .collect();
    let commits_before = server.store_commits().await;
    let start = Instant::now();
    let cpu_before = crate::sys::cpu_seconds(server.pid);
    let results: Vec<Result<(), String>> = futures_util::stream::iter(requests)
        .map(|(r, key)| async move {
            // As a worker does: a signature with its own key over a fresh nonce.
            let nonce = client.challenge().await.map_err(|e| e.to_string())?.nonce;
            let public_key = key.public_key();
            let subject = match (&r.token, &r.name) {
                (Some(token), _) => token.split('.').next().unwrap_or_default().to_owned(),
                (None, Some(name)) => name.clone(),
                (None, None) => String::new(),
            };
            let binding = Binding::ServerNonce(nonce.as_bytes().to_vec());
            let proof = key.sign(&Proof {
                purpose: Purpose::Enroll,
                binding: &binding,
                subject: &subject,
                public_key: &public_key,
                ticket: None,
                process: None,
            });
            let mut r = r;
            r.public_key = Some(public_key.to_string());
            r.proof = Some(proof.to_string());
            r.nonce = Some(nonce);
            client
                .enroll(&r)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = crate::sys::cpu_seconds(server.pid)
        .zip(cpu_before)
        .map(|(a, b)| a - b);
    let mut out = Enrollments {
        server_cpu_ms: cpu.map(|c| 1000.0 * c / total.max(1) as f64),
        ..Enrollments::default()
    };
    for r in results {
        match r {
            Ok(()) => out.ok += 1,
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e);
            }
        }
    }
    out.per_s = out.ok as f64 / elapsed.max(1e-9);
    out.per_commit = server
        .store_commits()
        .await
        .zip(commits_before)
        .map(|(after, before)| out.ok as f64 / (after - before).max(1.0));
    eprintln!(
        "  {label}: {}/{total} in {elapsed:.2} s = {:.0}/s ({} errors)",
        out.ok, out.per_s, out.errors
    );
    Ok(out)
}

pub async fn tokens(
    admin: &Client,
    url: &str,
    trust: &Trust,
    run_id: &str,
    count: usize,
    concurrency: usize,
    server: &Server,
) -> anyhow::Result<Enrollments> {
    let minted = mint::tokens(admin, mint::names("e", count), run_id, concurrency, || {
        "1h".into()
    })
    .await?;
    let requests = minted
        .into_iter()
        .map(|m| {
            let token = match m.cred.how {
                crate::creds::How::Token { token } => Some(token),
                crate::creds::How::Precreated { .. } => None,
            };
            EnrollRequest {
                machine_id: m.cred.machine_id,
                token,
                name: None,
                enrollment_key: None,
                labels: Default::default(),
                public_key: None,
                proof: None,
                nonce: None,
            }
        })
        .collect();
    enroll_all(
        url,
        trust,
        requests,
        concurrency,
        "token enrollments",
        server,
    )
    .await
}

/// Enables auto-enrollment with `muster enrollment enable --secret-file`, then enrolls.
#[allow(clippy::too_many_arguments)]
pub async fn secret(
    muster: &Path,
    data_dir: &Path,
    work: &Path,
    url: &str,
    trust: &Trust,
    run_id: &str,
    count: usize,
    concurrency: usize,
    server: &Server,
) -> anyhow::Result<Enrollments> {
    let secret: String = {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        (0..48)
            .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.gen_range(0..36)]))
            .collect()
    };
    let file = work.join("enrollment-secret");
    std::fs::write(&file, &secret)?;
    let status = tokio::process::Command::new(muster)
        .args(["enrollment", "enable", "--secret-file"])
        .arg(&file)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .context("cannot run `muster enrollment enable`")?;
    if !status.success() {
        bail!("`muster enrollment enable --secret-file` failed: {status}");
    }
    let requests = mint::names("s", count)
        .into_iter()
        .map(|name| EnrollRequest {
            machine_id: mint::machine_id(run_id, &name),
            token: None,
            name: Some(name),
            enrollment_key: Some(secret.clone()),
            labels: Default::default(),
            public_key: None,
            proof: None,
            nonce: None,
        })
        .collect();
    enroll_all(
        url,
        trust,
        requests,
        concurrency,
        "secret enrollments",
        server,
    )
    .await
}

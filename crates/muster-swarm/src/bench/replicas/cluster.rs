//! R `muster serve` replicas on one PostgreSQL database, sharing one certificate (so one
//! fingerprint pins them all, as behind a load balancer), and what each one's API says about the
//! fleet.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use muster_client::Client;

use crate::bench::procs::{self, ServeOptions, Server};

/// One replica: its process, an admin client for its API, and its id (as workers' `replica`).
pub struct Replica {
    pub server: Server,
    pub admin: Client,
    pub id: String,
    pub url: String,
    /// False once it was killed.
    pub alive: bool,
}

pub struct Cluster {
    pub replicas: Vec<Replica>,
    /// `sha256:…` of the certificate every replica presents.
    pub fingerprint: String,
}

/// What one replica's API shows: workers by status, and the connected ones by the replica
/// holding them.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub by_status: BTreeMap<String, usize>,
    pub by_holder: BTreeMap<String, usize>,
}

impl View {
    pub fn connected(&self) -> usize {
        self.by_status.get("connected").copied().unwrap_or(0)
    }
}

impl Cluster {
    /// Starts `count` replicas on the database at `database_url`, one after another (the first
    /// brings the schema up to date).
    pub async fn start(
        muster: &Path,
        work: &Path,
        count: usize,
        database_url: &str,
    ) -> anyhow::Result<Self> {
        let (cert, key) = shared_certificate(work)?;
        let mut replicas = Vec::with_capacity(count);
        let mut fingerprint = None;
        for k in 0..count {
            let extra = ServeOptions {
                args: vec![
                    "--tls-cert".into(),
                    cert.display().to_string(),
                    "--tls-key".into(),
                    key.display().to_string(),
                    // Diagnostics: every server the benchmark starts has a free port of its own
                    // (`procs::spawn_serve`), so replicas never want the same one.
                ],
                env: vec![("MUSTER_DATABASE_URL".into(), database_url.to_owned())],
            };
            let server = Server::start_with(
                muster,
                &work.join(format!("replica-{k}")),
                procs::free_port()?,
                &work.join(format!("replica-{k}.log")),
                extra,
            )
            .await?;
            let local = muster_client::local::discover(&server.data_dir)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            fingerprint = local.server_file.tls_fingerprint.clone();
            let id = std::fs::read_to_string(server.data_dir.join("server-id"))
                .with_context(|| format!("replica {k} wrote no server id"))?
                .trim()
                .to_owned();
            replicas.push(Replica {
                admin: server.admin()?,
                url: local.url,
                id,
                server,
                alive: true,
            });
        }
        Ok(Self {
            replicas,
            fingerprint: fingerprint.context("the replicas speak no TLS")?,
        })
    }

    /// The URL list for a worker homed on replica `home`: `home` first, then the others in turn
    /// starting `turn` places after it. Spreading `turn` over a replica's workers spreads them
    /// over the others when it dies.
    pub fn urls_from(&self, home: usize, turn: usize) -> String {
        url_order(home, turn, self.replicas.len())
            .iter()
            .map(|k| self.replicas[*k].url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Each live replica's view, all at once.
    pub async fn views(&self) -> Vec<(usize, anyhow::Result<View>)> {
        let asks = self
            .replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| r.alive)
            .map(|(k, r)| async move { (k, view(&r.admin).await) });
        futures_util::future::join_all(asks).await
    }

    /// Asks every live replica until each shows `expected` workers connected (and, if given,
    /// none held by `dead`); returns the seconds it took, or `None` at `timeout`, and the last
    /// views.
    pub async fn wait_for_views(
        &self,
        expected: usize,
        dead: Option<&str>,
        timeout: Duration,
    ) -> (Option<f64>, Vec<(usize, anyhow::Result<View>)>) {
        let start = Instant::now();
        loop {
            let views = self.views().await;
            let agreed = views.iter().all(|(_, v)| {
                v.as_ref().is_ok_and(|v| {
                    v.connected() == expected
                        && dead.is_none_or(|d| v.by_holder.get(d).copied().unwrap_or(0) == 0)
                })
            });
            let took = start.elapsed();
            if agreed {
                eprintln!(
                    "  every replica shows {expected} connected ({:.1} s)",
                    took.as_secs_f64()
                );
                return (Some(took.as_secs_f64()), views);
            }
            let shown: Vec<String> = views
                .iter()
                .map(|(k, v)| match v {
                    Ok(v) => format!("r{k}: {}", v.connected()),
                    Err(e) => format!("r{k}: {e:#}"),
                })
                .collect();
            if took > timeout {
                eprintln!(
                    "  replicas do not agree on {expected} connected after {} s: {}",
                    timeout.as_secs(),
                    shown.join(", ")
                );
                return (None, views);
            }
            eprintln!("  connected as replicas show it: {}", shown.join(", "));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn stop(self) {
        for r in self.replicas {
            r.server.stop().await;
        }
    }
}

/// Replica indexes in the order a worker homed on `home` tries them (see
/// [`Cluster::urls_from`]).
fn url_order(home: usize, turn: usize, replicas: usize) -> Vec<usize> {
    let others: Vec<usize> = (1..replicas).map(|d| (home + d) % replicas).collect();
    let mut order = vec![home];
    if !others.is_empty() {
        let t = turn % others.len();
        order.extend(others[t..].iter().chain(&others[..t]));
    }
    order
}

/// The whole fleet as one replica lists it (pages of 5,000), counted.
async fn view(admin: &Client) -> anyhow::Result<View> {
    let workers = admin
        .list_workers_where(&[("limit", "5000".into())])
        .await
        .map_err(|e| anyhow::anyhow!("listing workers: {e}"))?;
    let mut out = View::default();
    for w in workers {
        let status = serde_json::to_value(w.status)?
            .as_str()
            .unwrap_or("?")
            .to_owned();
        if status == "connected"
            && let Some(holder) = w.replica
        {
            *out.by_holder.entry(holder).or_default() += 1;
        }
        *out.by_status.entry(status).or_default() += 1;
    }
    Ok(out)
}

/// One self-signed certificate for every replica (ECDSA P-256, like the one `muster serve`
/// makes for itself), as a fleet behind one name would have.
fn shared_certificate(work: &Path) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let cert = work.join("replicas-cert.pem");
    let key = work.join("replicas-key.pem");
    std::fs::write(&cert, certified.cert.pem())?;
    std::fs::write(&key, certified.key_pair.serialize_pem())?;
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_turn_sends_a_replicas_workers_to_another_survivor_first() {
        let order = url_order;
        assert_eq!(order(4, 0, 5), [4, 0, 1, 2, 3]);
        assert_eq!(order(4, 1, 5), [4, 1, 2, 3, 0]);
        assert_eq!(order(4, 3, 5), [4, 3, 0, 1, 2]);
        assert_eq!(order(0, 1, 2), [0, 1]);
        assert_eq!(order(0, 7, 1), [0]);
    }
}

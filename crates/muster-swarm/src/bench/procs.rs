//! The processes a benchmark run starts: `muster serve` (started, killed, restarted on the same
//! data dir) and `ws-floor`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use muster_client::Client;
use tokio::process::{Child, Command};

use crate::sys;

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn log_file(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log `{}`", path.display()))
}

pub struct Server {
    child: Child,
    pub pid: u32,
    muster: PathBuf,
    pub data_dir: PathBuf,
    pub port: u16,
    pub log: PathBuf,
    extra: ServeOptions,
}

/// What a server gets besides the benchmark's defaults: more flags, and environment variables
/// (a database URL goes there, so no process listing shows it).
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Server {
    /// Starts `muster serve` on a fresh or existing data dir and waits until it answers.
    pub async fn start(
        muster: &Path,
        data_dir: &Path,
        port: u16,
        log: &Path,
    ) -> anyhow::Result<Self> {
        Self::start_with(muster, data_dir, port, log, ServeOptions::default()).await
    }

    /// [`Server::start`] with more flags and environment.
    pub async fn start_with(
        muster: &Path,
        data_dir: &Path,
        port: u16,
        log: &Path,
        extra: ServeOptions,
    ) -> anyhow::Result<Self> {
        let child = spawn_serve(muster, data_dir, port, log, &extra)?;
        let pid = child.id().context("the server exited at once")?;
        let mut server = Self {
            child,
            pid,
            muster: muster.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            port,
            log: log.to_path_buf(),
            extra,
        };
        server.wait_ready(Duration::from_secs(60)).await?;
        Ok(server)
    }

    /// Waits until `server.json` names this process and the health endpoint answers.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "`muster serve` exited with {status}; see `{}`",
                    self.log.display()
                );
            }
            if let Ok(local) = muster_client::local::discover(&self.data_dir)
                && local.server_file.pid == self.pid
            {
                let client = Client::new(&local.url, &local.trust, None)?;
                if client.health().await.is_ok() {
                    return Ok(());
                }
            }
            if start.elapsed() > timeout {
                bail!(
                    "`muster serve` did not answer within {} s; see `{}`",
                    timeout.as_secs(),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `kill -9`, and wait until the process is gone.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// Starts the server again on the same data dir and port, without waiting for it.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.child = spawn_serve(
            &self.muster,
            &self.data_dir,
            self.port,
            &self.log,
            &self.extra,
        )?;
        self.pid = self.child.id().context("the server exited at once")?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it does not stop in time.
    pub async fn stop(mut self) {
        sys::signal(self.pid, libc::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }

    pub fn rss(&self) -> Option<u64> {
        sys::rss_bytes(self.pid)
    }

    /// CPU seconds this server process has used since it started.
    pub fn cpu(&self) -> Option<f64> {
        sys::cpu_seconds(self.pid)
    }

    /// Starts the fleet's trial so the simulated workers (external workers, all of them) may
    /// join: a fresh server runs Community Edition. A data dir whose trial already ran keeps
    /// what it has.
    pub async fn start_trial(&self) -> anyhow::Result<()> {
        match self.admin()?.start_trial().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(muster_proto::ErrorCode::LicenseTrialUnavailable) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("cannot start the trial: {e}")),
        }
    }

    /// The TLS handshakes this run of the server completed, `(full, resumed)`, from its
    /// metrics (`muster_tls_handshakes_total`); `None` if they cannot be read.
    pub async fn tls_handshakes(&self) -> Option<(f64, f64)> {
        let metrics = self.metrics().await?;
        let count = |kind: &str| {
            sample(
                &metrics,
                &format!("muster_tls_handshakes_total{{kind=\"{kind}\"}}"),
            )
        };
        Some((count("full")?, count("resumed")?))
    }

    /// The write transactions this run of the server committed (`muster_store_commit_seconds`'s
    /// count): each is one durable commit, one fsync on SQLite.
    pub async fn store_commits(&self) -> Option<f64> {
        sample(&self.metrics().await?, "muster_store_commit_seconds_count")
    }

    /// The server's metrics page, from its diagnostics address (plain HTTP on loopback, by
    /// hand: no TLS provider to set up for one GET).
    async fn metrics(&self) -> Option<String> {
        let text =
            std::fs::read_to_string(self.data_dir.join(muster_proto::local::SERVER_FILE)).ok()?;
        let file: muster_proto::local::ServerFile = serde_json::from_str(&text).ok()?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = file.diag_url?.strip_prefix("http://")?.to_owned();
        let mut stream = tokio::net::TcpStream::connect(&address).await.ok()?;
        let request =
            format!("GET /metrics HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        Some(String::from_utf8_lossy(&answer).into_owned())
    }

    /// An admin client, found through the data dir as `muster` admin commands find it.
    pub fn admin(&self) -> anyhow::Result<Client> {
        let local =
            muster_client::local::discover(&self.data_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Client::new(&local.url, &local.trust, local.admin_token)?)
    }
}

fn spawn_serve(
    muster: &Path,
    data_dir: &Path,
    port: u16,
    log: &Path,
    extra: &ServeOptions,
) -> anyhow::Result<Child> {
    let out = log_file(log)?;
    Command::new(muster)
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--no-builtin-worker")
        // Its own free port (the default one may be another server's): `tls_handshakes` reads it.
        .arg("--diag-listen")
        .arg("127.0.0.1:0")
        .args(&extra.args)
        .envs(extra.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start `{}`", muster.display()))
}

/// A running `ws-floor`.
pub struct Floor {
    child: Child,
    pub pid: u32,
    pub url: String,
    pub fingerprint: Option<String>,
}

impl Floor {
    pub async fn start(bin: &Path, tls: bool, dir: &Path) -> anyhow::Result<Self> {
        let ready = dir.join(if tls {
            "floor-tls.json"
        } else {
            "floor-plain.json"
        });
        let _ = std::fs::remove_file(&ready);
        let mut command = Command::new(bin);
        command
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&dir.join("floor.log"))?)
            .kill_on_drop(true);
        if !tls {
            command.arg("--no-tls");
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start `{}`", bin.display()))?;
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                let r: crate::floor::Ready = serde_json::from_str(&text)?;
                return Ok(Self {
                    pid: r.pid,
                    child,
                    url: r.url,
                    fingerprint: r.fingerprint,
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!("ws-floor exited with {status}");
            }
            if start.elapsed() > Duration::from_secs(20) {
                bail!("ws-floor did not start");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn rss(&self) -> Option<u64> {
        sys::rss_bytes(self.pid)
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The value of one series (`name` with its labels, as the metrics page writes it).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

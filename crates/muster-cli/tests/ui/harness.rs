//! A real `muster serve` in a temporary data dir, `muster worker` processes, and the `muster`
//! admin CLI pointed at them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use muster_proto::local::ServerFile;

pub const MUSTER: &str = env!("CARGO_BIN_EXE_muster");

/// A `muster` command with no muster settings inherited from the environment running the tests.
fn muster() -> Command {
    let mut command = Command::new(MUSTER);
    for (key, _) in std::env::vars() {
        if key.starts_with("MUSTER_") {
            command.env_remove(key);
        }
    }
    command
}

pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub url: String,
    pub fingerprint: String,
    pub password: String,
}

impl Server {
    pub fn start() -> Server {
        let dir = tempfile::tempdir().expect("a temp dir");
        let data_dir = dir.path().join("data");
        let child = muster()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .stdout(log_file(dir.path(), "server.out"))
            .stderr(log_file(dir.path(), "server.err"))
            .env("RUST_LOG", "info")
            .spawn()
            .expect("`muster serve` starts");
        let mut server = Server {
            child,
            data_dir,
            dir,
            url: String::new(),
            fingerprint: String::new(),
            password: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let file = loop {
            if let Ok(text) = std::fs::read_to_string(server.data_dir.join("server.json"))
                && let Ok(file) = serde_json::from_str::<ServerFile>(&text)
                && file.pid == server.child.id()
            {
                break file;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("`muster serve` exited with {status}:\n{}", server.logs());
            }
            assert!(
                Instant::now() < deadline,
                "`muster serve` did not start within a minute:\n{}",
                server.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        server.url = file.url;
        server.fingerprint = file.tls_fingerprint.expect("a self-signed certificate");
        server.password = std::fs::read_to_string(server.data_dir.join("admin-password"))
            .expect("the first start writes the admin password")
            .trim()
            .to_owned();
        let banner =
            std::fs::read_to_string(server.dir.path().join("server.out")).unwrap_or_default();
        assert!(
            banner.contains("admin-password"),
            "`muster serve` says where the password is:\n{banner}"
        );
        server
    }

    /// Everything the server printed so far.
    pub fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("server.out"), read("server.err"))
    }

    /// Starts `muster worker` enrolling with the auto-enrollment secret.
    pub fn worker_with_secret(&self, name: &str, secret: &str) -> Worker {
        let state_dir = self.dir.path().join(format!("worker-{name}"));
        let stderr = self.dir.path().join(format!("worker-{name}.err"));
        let child = muster()
            .arg("worker")
            .args(["--ca-fingerprint", &self.fingerprint])
            .env("MUSTER_URL", &self.url)
            .env("MUSTER_WORKER_NAME", name)
            .env("MUSTER_AUTO_ENROLLMENT_KEY", secret)
            .env("MUSTER_STATE_DIR", &state_dir)
            .env("MUSTER_MAX_JOBS", "2")
            .env("MUSTER_WORKER_LABELS", "region=eu,pool=e2e")
            .stdout(log_file(self.dir.path(), &format!("worker-{name}.out")))
            .stderr(Stdio::from(
                std::fs::File::create(&stderr).expect("a log file"),
            ))
            .spawn()
            .expect("`muster worker` starts");
        Worker { child, stderr }
    }

    /// Runs a worker command exactly as the UI printed it, in `sh` with `muster` on the `PATH`,
    /// as an operator pastes it (its own state dir, nothing else from this environment).
    pub fn run_pasted(&self, command: &str, name: &str) -> Worker {
        let bin = Path::new(MUSTER).parent().expect("the binary's directory");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let stderr = self.dir.path().join(format!("worker-{name}.err"));
        let mut sh = Command::new("sh");
        for (key, _) in std::env::vars() {
            if key.starts_with("MUSTER_") {
                sh.env_remove(key);
            }
        }
        let child = sh
            // `env` takes the command's leading `NAME=value` words as `sh` would.
            .args(["-c", &format!("exec env {command}")])
            .env("PATH", path)
            .env(
                "MUSTER_STATE_DIR",
                self.dir.path().join(format!("worker-{name}")),
            )
            .stdout(log_file(self.dir.path(), &format!("worker-{name}.out")))
            .stderr(Stdio::from(
                std::fs::File::create(&stderr).expect("a log file"),
            ))
            .spawn()
            .expect("the pasted command starts");
        Worker { child, stderr }
    }

    /// Runs an admin command against this server (found through its data dir).
    pub fn admin(&self, args: &[&str]) -> std::process::Output {
        muster()
            .args(args)
            .env("MUSTER_DATA_DIR", &self.data_dir)
            .output()
            .expect("the admin CLI runs")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Worker {
    child: Child,
    stderr: PathBuf,
}

impl Worker {
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("the worker can be waited for") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the worker was still running after {within:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    Stdio::from(std::fs::File::create(dir.join(name)).expect("a log file"))
}

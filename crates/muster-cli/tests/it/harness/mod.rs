//! The real-process harness: a `muster serve` in a temp dir, `muster worker` processes with their
//! own state dirs, admin commands run against the server's data dir, and a TCP proxy that can cut
//! connections. Every child process is killed when its handle is dropped, also when a test
//! panics, and a failing test prints what each process wrote to stdout and stderr.
//!
//! About 1,000 lines: every building block the `it` tests share (the server, workers and commands
//! as child processes, their logs, waiting, snapshot filters), so that each test reads as a
//! scenario. The TCP proxy is in `proxy.rs`; the rest is kept together because the handles share
//! the process plumbing (spawning, log capture, killing on drop) at the top.

pub mod license;
pub mod proxy;

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use proxy::Proxy;

/// How long a process may take to start, a worker to connect, a status to show.
pub const STARTUP: Duration = Duration::from_secs(20);

/// The `muster` binary under test.
pub fn muster_bin() -> &'static str {
    env!("CARGO_BIN_EXE_muster")
}

/// A `muster` command with a clean environment: no `MUSTER_*` variable from the caller's shell
/// leaks in, and the default data and state dirs point into `home`, never into the real home.
pub fn muster(home: &Path) -> Command {
    muster_in(Command::new(muster_bin()), home)
}

/// [`muster`] run by `prlimit` with an open-file limit of `nofile` (soft and hard): the same
/// process (prlimit sets its own limit and execs), so its pid is muster's.
pub fn muster_with_nofile(home: &Path, nofile: u64) -> Command {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={nofile}:{nofile}"))
        .arg(muster_bin());
    muster_in(cmd, home)
}

fn muster_in(mut cmd: Command, home: &Path) -> Command {
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("MUSTER_") || key_text == "RUST_LOG" {
            cmd.env_remove(&key);
        }
    }
    cmd.env("XDG_DATA_HOME", home.join("xdg-data"));
    cmd.env("HOME", home);
    cmd.stdin(Stdio::null());
    cmd
}

static NEXT_LOG: AtomicUsize = AtomicUsize::new(1);

/// Log files for one process: `<dir>/<label>-<n>.stdout` and `.stderr`.
#[derive(Debug, Clone)]
pub struct Logs {
    pub label: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Logs {
    fn new(dir: &Path, label: &str) -> Self {
        let n = NEXT_LOG.fetch_add(1, Ordering::Relaxed);
        Self {
            label: format!("{label} #{n}"),
            stdout: dir.join(format!("{label}-{n}.stdout")),
            stderr: dir.join(format!("{label}-{n}.stderr")),
        }
    }

    fn attach(&self, cmd: &mut Command) {
        cmd.stdout(File::create(&self.stdout).expect("create stdout log"));
        cmd.stderr(File::create(&self.stderr).expect("create stderr log"));
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Both streams, tail-trimmed, for a failure message.
    pub fn dump(&self) -> String {
        format!(
            "----- {} stdout -----\n{}\n----- {} stderr -----\n{}",
            self.label,
            tail(&self.stdout(), 6000),
            self.label,
            tail(&self.stderr(), 12000)
        )
    }
}

fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Exit code of a finished process; a signal shows as its negative number.
fn code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| -status.signal().unwrap_or(0))
}

/// Sends a signal with `kill(1)`: the workspace forbids `unsafe`, so no `libc::kill` here.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// Waits for `child` to exit, up to `timeout`. `None` if it is still running.
fn wait_child(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(code_of(status));
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what` and the last
/// observation (`describe` renders it).
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> (Option<T>, String),
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let (found, last) = check();
        if let Some(value) = found {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen:\n{last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn parse_time(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339)
        .unwrap_or_else(|e| panic!("`{text}` is not RFC 3339: {e}"))
}

/// Asserts an RFC 3339 time in UTC (`Z` or `+00:00`) and returns it.
pub fn assert_utc_time(value: &Value, field: &str) -> OffsetDateTime {
    let text = value[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` is not a string in {value:#}"));
    let t = parse_time(text);
    assert!(
        t.offset().is_utc(),
        "`{field}` = `{text}` is not in UTC ({value:#})"
    );
    t
}

/// The one `error: …; hint: …` line a failed command prints, checked for shape.
pub fn error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one `error:` line on stderr, got:\n{stderr}"
    );
    let line = lines[0];
    assert!(
        line.contains("; hint: "),
        "the error line has no `hint:`: {line}"
    );
    line.to_owned()
}

/// Snapshot settings for lines that name things that differ from run to run: temp paths,
/// ports, process ids, worker and job ids.
pub fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"/\S*muster-it-[A-Za-z0-9]+", "[TEMP]");
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    settings.add_filter(r"\bpid \d+", "pid [PID]");
    settings.add_filter(r"\b[0-9a-f]{32}\b", "[WORKER_ID]");
    settings.add_filter(r"\b[0-9a-f]{16}\b", "[JOB_ID]");
    settings
}

/// Sorted keys of a JSON object.
pub fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {value:#}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

pub fn assert_has_keys(value: &Value, required: &[&str]) {
    let have = keys(value);
    for key in required {
        assert!(
            have.iter().any(|k| k == key),
            "missing `{key}` in {value:#}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The server.

#[derive(Debug, Clone)]
pub struct ServerOpts {
    pub heartbeat: &'static str,
    pub idle_timeout: &'static str,
    pub reconnect_spread: &'static str,
    /// `--no-tls`: plain HTTP on loopback.
    pub no_tls: bool,
    /// Run the built-in worker (off by default here: `--no-builtin-worker`).
    pub builtin_worker: bool,
    /// What the server runs: a license from the tests' issuer by default, so external workers
    /// can join; Community Edition for the tests of editions.
    pub edition: Edition,
    /// `--diag-listen`: a free port by default, so parallel tests never compete for the
    /// default address; `None` leaves the server's default.
    pub diag_listen: Option<&'static str>,
    pub env: Vec<(String, String)>,
    /// Where the test's temp dir (data dir, state dirs, logs) goes; the system's temp dir by
    /// default. Confinement tests keep it out of `/tmp`, which jobs may write.
    pub temp_in: Option<PathBuf>,
    /// `--listen` for the first start; `127.0.0.1:0` by default.
    pub listen: Option<String>,
    /// The server's open-file limit (soft and hard), for tests of the connection cap; the
    /// test's own by default.
    pub nofile: Option<u64>,
}

/// The edition a test's server starts with. Every server trusts the tests' issuer
/// (`--license-issuer-key`); none has the check switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    /// A license from the tests' issuer, installed at the first start: no worker limit, a year.
    Licensed,
    /// Nothing installed.
    Community,
}

impl Default for ServerOpts {
    /// Short heartbeats so a dead connection is noticed in seconds, not the default 15 s.
    fn default() -> Self {
        Self {
            heartbeat: "1s",
            idle_timeout: "3s",
            reconnect_spread: "1s",
            no_tls: false,
            builtin_worker: false,
            edition: Edition::Licensed,
            diag_listen: Some("127.0.0.1:0"),
            env: Vec::new(),
            temp_in: None,
            listen: None,
            nofile: None,
        }
    }
}

/// What `<data-dir>/server.json` says about a running server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub url: String,
    pub port: u16,
    pub pid: u32,
    /// `None` for a `--no-tls` server.
    pub fingerprint: Option<String>,
    /// The diagnostics listener (`http://127.0.0.1:PORT`), when it runs.
    pub diag_url: Option<String>,
    pub raw: Value,
}

/// A `muster serve` process and its temp dir (data dir, logs, and the workers' state dirs).
pub struct Server {
    root: tempfile::TempDir,
    data_dir: PathBuf,
    opts: ServerOpts,
    child: Option<Child>,
    runs: Vec<Logs>,
    info: Option<ServerInfo>,
    /// The exit code of the last run, once it ended.
    last_exit: Option<i32>,
}

impl Server {
    pub fn start(opts: ServerOpts) -> Self {
        let mut root = tempfile::Builder::new();
        root.prefix("muster-it-");
        let root = match &opts.temp_in {
            Some(dir) => {
                std::fs::create_dir_all(dir).expect("temp parent");
                root.tempdir_in(dir)
            }
            None => root.tempdir(),
        }
        .expect("temp dir");
        let data_dir = root.path().join("data");
        let mut server = Self {
            root,
            data_dir,
            opts,
            child: None,
            runs: Vec::new(),
            info: None,
            last_exit: None,
        };
        std::fs::write(
            server.issuer_key_path(),
            format!("{}\n", license::issuer().public().to_paserk()),
        )
        .expect("write the tests' issuer key");
        let listen = server
            .opts
            .listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:0".into());
        server.spawn(&listen);
        if server.opts.edition == Edition::Licensed {
            server.install_license(&license::sign(None, -1, 365));
        }
        server
    }

    /// The file of issuer keys this server trusts besides muster's own: the tests' issuer.
    pub fn issuer_key_path(&self) -> PathBuf {
        self.root.path().join("test-issuer.pub")
    }

    /// `muster license install -` with `license` on stdin; returns the license as shown.
    pub fn install_license(&self, license: &str) -> Value {
        let out = self.cli_stdin(&["license", "install", "-", "--json"], license.as_bytes());
        assert!(
            out.status.success(),
            "license install failed with {:?}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("license install --json prints JSON")
    }

    pub fn start_default() -> Self {
        Self::start(ServerOpts::default())
    }

    fn spawn(&mut self, listen: &str) {
        assert!(self.child.is_none(), "the server is already running");
        let logs = Logs::new(self.root.path(), "serve");
        let mut cmd = match self.opts.nofile {
            Some(nofile) => muster_with_nofile(self.root.path(), nofile),
            None => muster(self.root.path()),
        };
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", listen])
            .args(["--heartbeat", self.opts.heartbeat])
            .args(["--idle-timeout", self.opts.idle_timeout])
            .args(["--reconnect-spread", self.opts.reconnect_spread]);
        if self.opts.no_tls {
            cmd.arg("--no-tls");
        }
        if !self.opts.builtin_worker {
            cmd.arg("--no-builtin-worker");
        }
        cmd.arg("--license-issuer-key").arg(self.issuer_key_path());
        if let Some(diag) = self.opts.diag_listen {
            cmd.args(["--diag-listen", diag]);
        }
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        logs.attach(&mut cmd);
        let child = cmd.spawn().expect("spawn muster serve");
        let pid = child.id();
        self.child = Some(child);
        self.runs.push(logs);
        self.last_exit = None;
        let server_file = self.data_dir.join("server.json");
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(code) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let code = code_of(code);
                self.child = None;
                panic!(
                    "muster serve exited with {code} before it listened\n{}",
                    self.dump()
                );
            }
            // Ready: server.json names this process, and the banner (printed once the
            // listener is serving) is out.
            if let Ok(text) = std::fs::read_to_string(&server_file)
                && let Ok(raw) = serde_json::from_str::<Value>(&text)
                && raw["pid"].as_u64() == Some(u64::from(pid))
                && self
                    .runs
                    .last()
                    .is_some_and(|l| l.stdout().contains("admin credential:"))
            {
                let url = raw["url"].as_str().expect("url in server.json").to_owned();
                let port = url
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("port in url");
                let fingerprint = raw["tls_fingerprint"].as_str().map(str::to_owned);
                assert_eq!(
                    fingerprint.is_none(),
                    self.opts.no_tls,
                    "server.json: tls_fingerprint does not match the TLS mode: {raw:#}"
                );
                let diag_url = raw["diag_url"].as_str().map(str::to_owned);
                self.info = Some(ServerInfo {
                    url,
                    port,
                    pid,
                    fingerprint,
                    diag_url,
                    raw,
                });
                return;
            }
            assert!(
                Instant::now() < deadline,
                "muster serve did not write server.json within {STARTUP:?}\n{}",
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn info(&self) -> &ServerInfo {
        self.info.as_ref().expect("the server has started")
    }

    pub fn url(&self) -> String {
        self.info().url.clone()
    }

    pub fn fingerprint(&self) -> String {
        self.info()
            .fingerprint
            .clone()
            .expect("a TLS server has a fingerprint")
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.info().port))
    }

    pub fn pid(&self) -> u32 {
        self.info().pid
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A path in this test's temp dir (for worker state dirs and scratch files).
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// The logs of the current (or last) run.
    pub fn logs(&self) -> &Logs {
        self.runs.last().expect("the server has run")
    }

    /// Everything every run of the server wrote, stdout and stderr.
    pub fn all_output(&self) -> String {
        self.runs
            .iter()
            .map(|l| format!("{}\n{}", l.stdout(), l.stderr()))
            .collect()
    }

    pub fn dump(&self) -> String {
        self.runs
            .iter()
            .map(Logs::dump)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let status = child.wait().expect("wait for the killed server");
            self.last_exit = Some(code_of(status));
        }
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> i32 {
        let mut child = self.child.take().expect("the server is running");
        signal(child.id(), "TERM");
        match wait_child(&mut child, timeout) {
            Some(code) => {
                self.last_exit = Some(code);
                code
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "muster serve did not stop within {timeout:?} of SIGTERM\n{}",
                    self.dump()
                );
            }
        }
    }

    /// Stops the server with SIGTERM and starts it again. A graceful stop writes the counts of
    /// refused attempts still in their window (see [`refused_count`]).
    pub fn restart_gracefully(&mut self) {
        assert_eq!(
            self.terminate(Duration::from_secs(20)),
            0,
            "{}",
            self.dump()
        );
        self.restart();
    }

    /// Starts the server again on the same port with another data dir (one `muster restore`
    /// made, say), after stopping it if it runs.
    pub fn restart_on(&mut self, data_dir: PathBuf) {
        if self.child.is_some() {
            self.kill9();
        }
        self.data_dir = data_dir;
        let listen = format!("127.0.0.1:{}", self.info().port);
        self.spawn(&listen);
    }

    /// `GET path` on the diagnostics listener: the status and the body.
    pub fn diag(&self, path: &str) -> (u16, String) {
        let base = self
            .info()
            .diag_url
            .clone()
            .expect("the diagnostics listener runs");
        http_get(&base, path)
    }

    /// Starts the server again on the same data dir and the same port (as a real deployment
    /// with a fixed listen address would), after a crash or a stop.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.kill9();
        }
        let listen = format!("127.0.0.1:{}", self.info().port);
        self.spawn(&listen);
    }

    // ---- admin commands ----

    /// `muster ARGS --data-dir DATA`; for `job run … -- CMD`, the data dir goes before the `--`.
    fn admin_command(&self, args: &[&str]) -> Command {
        let mut cmd = muster(self.root.path());
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        cmd.args(&args[..split])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&args[split..]);
        cmd
    }

    /// Runs `muster ARGS --data-dir DATA` and returns what it printed and its status.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.admin_command(args).output().expect("run muster")
    }

    pub fn cli_env(&self, args: &[&str], env: &[(&str, OsString)]) -> Output {
        let mut cmd = self.admin_command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run muster")
    }

    /// Runs an admin command with `input` on its standard input.
    pub fn cli_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .admin_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run muster");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        child.wait_with_output().expect("wait for muster")
    }

    /// Starts an admin command that runs for a while (`job run`, `job logs --follow`) with its
    /// output in log files.
    pub fn spawn_cli(&self, label: &str, args: &[&str]) -> Process {
        let logs = Logs::new(self.root.path(), label);
        let mut cmd = self.admin_command(args);
        logs.attach(&mut cmd);
        let child = cmd.spawn().expect("spawn muster");
        Process {
            child: Some(child),
            logs,
            exit: None,
        }
    }

    /// Runs an admin command that must succeed; returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "`muster {}` failed with {:?}\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs an admin command with `--json` that must succeed; its stdout must be JSON only.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        with_json.insert(split, "--json");
        let text = self.cli_ok(&with_json);
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "`muster {}` printed something other than JSON on stdout ({e}):\n{text}",
                with_json.join(" ")
            )
        })
    }

    /// Runs an admin command that must fail: returns (exit code, the one error line).
    pub fn cli_err(&self, args: &[&str]) -> (i32, String) {
        let out = self.cli(args);
        let code = out.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_ne!(
            code,
            0,
            "`muster {}` should have failed\nstdout:\n{}\nstderr:\n{stderr}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        (code, error_line(&stderr))
    }

    /// Mints a token; returns its plaintext `NAME.SECRET` and the JSON answer.
    pub fn create_token(&self, name: &str, duration: &str) -> (String, Value) {
        let created = self.cli_json(&["token", "create", name, "--duration", duration]);
        let token = created["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {created:#}"))
            .to_owned();
        (token, created)
    }

    pub fn tokens(&self) -> Vec<Value> {
        array(self.cli_json(&["token", "list"]))
    }

    pub fn token(&self, name: &str) -> Value {
        self.cli_json(&["token", "show", name])
    }

    pub fn workers(&self) -> Vec<Value> {
        array(self.cli_json(&["workers", "list"]))
    }

    pub fn audit(&self) -> Vec<Value> {
        array(self.cli_json(&["audit", "--limit", "1000"]))
    }

    /// Polls `muster workers list --json` until `check` accepts the list.
    pub fn wait_workers(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        wait_until(what, timeout, || {
            let out = self.cli(&["workers", "list", "--json"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let last = format!(
                "exit {:?}\n{text}\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
            if !out.status.success() {
                return (None, last);
            }
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Array(list)) if check(&list) => (Some(list), last),
                _ => (None, last),
            }
        })
    }

    /// Waits until worker `name` shows `status`; returns its record.
    pub fn wait_status(&self, name: &str, status: &str, timeout: Duration) -> Value {
        let list = self.wait_workers(
            &format!("worker `{name}` to be {status}"),
            timeout,
            |list| find(list, name).is_some_and(|w| w["status"] == status),
        );
        find(&list, name).cloned().expect("found")
    }

    // ---- workers ----

    /// A worker aimed at this server (its URL and pinned certificate), with its own state dir
    /// `<temp>/<state>`.
    pub fn worker(&self, state: &str) -> WorkerBuilder {
        WorkerBuilder {
            home: self.root.path().to_path_buf(),
            state_dir: self.path(state),
            url: Some(self.url()),
            fingerprint: self.info().fingerprint.clone(),
            token: None,
            args: Vec::new(),
            env: Vec::new(),
            via_env: false,
            label: state.to_owned(),
        }
    }

    /// A reqwest client that trusts this server's certificate (by its pinned fingerprint).
    pub fn http(&self) -> reqwest::Client {
        let digest =
            muster_client::trust::parse_fingerprint(&self.fingerprint()).expect("fingerprint");
        let tls = muster_client::Trust::Fingerprint(digest)
            .client_config()
            .expect("tls config");
        reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .timeout(Duration::from_secs(20))
            .build()
            .expect("reqwest client")
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin-token"))
            .expect("admin-token")
            .trim()
            .to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("===== server output =====\n{}", self.dump());
        }
    }
}

/// How many refused attempts of `action` (a prefix) the audit `records` account for: a record
/// whose detail contains `detail` stands for one; a summary of the same kind
/// (`37 more refused (CODE) from … in the last minute`, written when its window closes or the
/// server stops) for its count.
pub fn refused_count(records: &[Value], action: &str, detail: &str, code: &str) -> u64 {
    let summary = format!(" more refused ({code}) from ");
    records
        .iter()
        .filter(|r| {
            r["outcome"] == "refused"
                && r["action"].as_str().unwrap_or_default().starts_with(action)
        })
        .map(|r| {
            let text = r["detail"].as_str().unwrap_or_default();
            match text.split_once(&summary) {
                Some((n, _)) => n.parse().expect("a count"),
                None => u64::from(text.contains(detail)),
            }
        })
        .sum()
}

pub fn array(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => panic!("expected a JSON array, got {other:#}"),
    }
}

pub fn find<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|v| v["name"] == name)
}

// ---------------------------------------------------------------------------------------------
// Workers.

pub struct WorkerBuilder {
    home: PathBuf,
    state_dir: PathBuf,
    url: Option<String>,
    fingerprint: Option<String>,
    token: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    via_env: bool,
    label: String,
}

impl WorkerBuilder {
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    pub fn no_url(mut self) -> Self {
        self.url = None;
        self
    }

    /// Do not pin the server's certificate (the worker then trusts only the system roots).
    pub fn no_fingerprint(mut self) -> Self {
        self.fingerprint = None;
        self
    }

    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Enroll with the auto-enrollment secret, as an operator would configure it: a name and
    /// the secret in the environment.
    pub fn secret(self, name: &str, secret: &str) -> Self {
        self.env("MUSTER_WORKER_NAME", name)
            .env("MUSTER_AUTO_ENROLLMENT_KEY", secret)
    }

    /// Configure the URL, the pinned certificate and the state dir through the environment
    /// (`MUSTER_URL`, `MUSTER_CA_FINGERPRINT`, `MUSTER_STATE_DIR`) instead of flags.
    pub fn via_env(mut self) -> Self {
        self.via_env = true;
        self
    }

    pub fn start(self) -> Worker {
        let logs = Logs::new(&self.home, &format!("worker-{}", self.label));
        let mut cmd = muster(&self.home);
        cmd.arg("worker");
        if self.via_env {
            cmd.env("MUSTER_STATE_DIR", &self.state_dir);
            if let Some(url) = &self.url {
                cmd.env("MUSTER_URL", url);
            }
            if let Some(fp) = &self.fingerprint {
                cmd.env("MUSTER_CA_FINGERPRINT", fp);
            }
        } else {
            cmd.arg("--state-dir").arg(&self.state_dir);
            if let Some(url) = &self.url {
                cmd.args(["--url", url]);
            }
            if let Some(fp) = &self.fingerprint {
                cmd.args(["--ca-fingerprint", fp]);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        // The token goes through the environment, as an operator would pass a secret.
        if let Some(token) = &self.token {
            cmd.env("MUSTER_ENROLLMENT_TOKEN", token);
        }
        cmd.args(&self.args);
        logs.attach(&mut cmd);
        let child = cmd.spawn().expect("spawn muster worker");
        Worker {
            child: Some(child),
            logs,
            state_dir: self.state_dir,
            exit: None,
        }
    }
}

/// A `muster worker` process.
pub struct Worker {
    child: Option<Child>,
    pub logs: Logs,
    pub state_dir: PathBuf,
    exit: Option<i32>,
}

impl Worker {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The exit code, if the process has ended.
    pub fn try_exit(&mut self) -> Option<i32> {
        if self.exit.is_none()
            && let Some(child) = &mut self.child
            && let Some(status) = child.try_wait().expect("try_wait")
        {
            self.exit = Some(code_of(status));
        }
        self.exit
    }

    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Waits for the process to end; panics (showing its output) if it is still running after
    /// `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        if let Some(code) = self.exit {
            return code;
        }
        let child = self.child.as_mut().expect("the worker was started");
        match wait_child(child, timeout) {
            Some(code) => {
                self.exit = Some(code);
                code
            }
            None => panic!(
                "the worker is still running after {timeout:?}\n{}",
                self.logs.dump()
            ),
        }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(child) = &mut self.child
            && self.exit.is_none()
        {
            let _ = child.kill();
            let status = child.wait().expect("wait for the killed worker");
            self.exit = Some(code_of(status));
        }
    }

    /// Freezes the process (`SIGSTOP`), as a hung machine would be: its sockets stay open but
    /// nothing answers.
    pub fn freeze(&self) {
        signal(self.pid(), "STOP");
    }

    pub fn thaw(&self) {
        signal(self.pid(), "CONT");
    }

    pub fn terminate(&mut self, timeout: Duration) -> i32 {
        signal(self.pid(), "TERM");
        self.wait_exit(timeout)
    }

    pub fn stderr(&self) -> String {
        self.logs.stderr()
    }

    /// The one `error: …; hint: …` line of a worker that gave up.
    pub fn error_line(&self) -> String {
        error_line(&self.stderr())
    }

    pub fn machine_id(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("machine-id"))
            .expect("machine-id in the state dir")
            .trim()
            .to_owned()
    }

    pub fn identity(&self) -> Value {
        let text = std::fs::read_to_string(self.state_dir.join("identity.json"))
            .expect("identity.json in the state dir");
        serde_json::from_str(&text).expect("identity.json is JSON")
    }

    /// Asserts the worker has not exited (a transient problem must not end it).
    #[track_caller]
    pub fn assert_running(&mut self) {
        if let Some(code) = self.try_exit() {
            panic!(
                "the worker exited with {code} but should still be running\n{}",
                self.logs.dump()
            );
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("===== worker output =====\n{}", self.logs.dump());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Other long-running commands.

/// A long-running admin command (`job run`, `job logs --follow`), killed when dropped.
pub struct Process {
    child: Option<Child>,
    pub logs: Logs,
    exit: Option<i32>,
}

impl Process {
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        if let Some(code) = self.exit {
            return code;
        }
        let child = self.child.as_mut().expect("started");
        match wait_child(child, timeout) {
            Some(code) => {
                self.exit = Some(code);
                code
            }
            None => panic!(
                "`{}` is still running after {timeout:?}\n{}",
                self.logs.label,
                self.logs.dump()
            ),
        }
    }

    pub fn stdout(&self) -> String {
        self.logs.stdout()
    }

    pub fn stderr(&self) -> String {
        self.logs.stderr()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("===== command output =====\n{}", self.logs.dump());
        }
    }
}

/// Whether a process is alive: it exists and is not a zombie (a `Z` in `/proc/PID/stat` is a
/// killed process nobody has reaped yet, and counts as dead).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until `pid` is dead (or a zombie); panics after `timeout`.
pub fn wait_dead(pid: u32, what: &str, timeout: Duration) {
    wait_until(&format!("{what} (pid {pid}) to die"), timeout, || {
        (
            (!alive(pid)).then_some(()),
            std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default(),
        )
    });
}

/// Reads a pid a job wrote to `path`, waiting for the file to appear.
pub fn read_pid(path: &Path, timeout: Duration) -> u32 {
    wait_until(&format!("a pid in {}", path.display()), timeout, || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        (text.trim().parse().ok(), text)
    })
}

/// A port on loopback that nothing listens on (bound, then released).
pub fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A plain-HTTP `GET` (HTTP/1.0, so the server closes when done): the status and the body.
pub fn http_get(base: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority)
        .unwrap_or_else(|e| panic!("connect to {authority}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    (status, body.to_owned())
}

/// Runs a future to completion on a fresh runtime (for raw HTTP calls from synchronous tests).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// An enrollment body as a worker sends it: `body` with a fresh key's public half and its
/// signature over a nonce the server at `base` just issued (for the token's or the worker's
/// name), so the request gets past the proof to what a test is about.
pub async fn signed_enrollment(client: &reqwest::Client, base: &str, mut body: Value) -> Value {
    use muster_core::identity::{Binding, Proof, Purpose, WorkerKey};
    let challenge: Value = client
        .get(format!("{base}/api/v1/challenge"))
        .send()
        .await
        .expect("challenge answers")
        .json()
        .await
        .expect("challenge JSON");
    let nonce = challenge["nonce"].as_str().expect("a nonce").to_owned();
    let key = WorkerKey::generate(&mut rand::rngs::OsRng);
    let public_key = key.public_key();
    let subject = match (body["token"].as_str(), body["name"].as_str()) {
        (Some(token), _) => token.split('.').next().unwrap_or_default().to_owned(),
        (None, Some(name)) => name.to_owned(),
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
    body["public_key"] = Value::from(public_key.to_string());
    body["proof"] = Value::from(proof.to_string());
    body["nonce"] = Value::from(nonce);
    body
}

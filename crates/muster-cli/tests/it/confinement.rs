//! Job confinement with real processes: a job on `muster worker` or on the built-in worker
//! cannot read (or change) its worker's state dir, another job's directory, the server's data
//! dir or the worker environment, and can still use its own directory, `/tmp` and the rest of
//! the system; every process a job starts, grandchildren that ignore SIGTERM and daemons in
//! their own session included, ends after a cancel, a timeout, and a `kill -9` of the worker;
//! `--job-user` runs jobs as that user; `workers show` says how jobs are confined.
//!
//! The servers and state dirs of these tests live outside `/tmp` (which jobs may write), so what
//! is protected and what is writable do not overlap. (Over 400 lines: one feature's tests and
//! their two helpers, `Attempts` and `EscapingJob`, read best together.)

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::{
    STARTUP, Server, ServerOpts, Worker, error_line, muster_bin, read_pid, wait_dead, wait_until,
};

/// A server whose temp dir is outside `/tmp`.
fn server(builtin_worker: bool) -> Server {
    Server::start(ServerOpts {
        builtin_worker,
        temp_in: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("confinement")),
        ..Default::default()
    })
}

/// A worker enrolled with a token (passed in its environment, as operators do) and `args`.
fn start_worker(server: &Server, name: &str, args: &[&str]) -> Worker {
    let (token, _) = server.create_token(name, "1h");
    let mut builder = server.worker(name).token(&token);
    for arg in args {
        builder = builder.arg(arg);
    }
    let worker = builder.start();
    server.wait_status(name, "connected", STARTUP);
    worker
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `script` with `sh -c` on `worker` and waits for it.
fn run(server: &Server, worker: &str, script: &str) -> Output {
    server.cli(&["job", "run", "--worker", worker, "--", "sh", "-c", script])
}

/// A script of attempts, each expected to work or to be refused, run as one job and checked.
#[derive(Default)]
struct Attempts {
    script: String,
    expected: Vec<(String, &'static str)>,
}

impl Attempts {
    /// Adds a shell line that tries `command` and prints `<label>: allowed` or `<label>: denied`.
    fn expect(mut self, verdict: &'static str, label: &str, command: &str) -> Self {
        assert!(
            !label.contains('\''),
            "labels go inside single quotes: {label}"
        );
        self.script += &format!(
            "if {command} >/dev/null 2>&1; then echo '{label}: allowed'; else echo '{label}: denied'; fi\n"
        );
        self.expected.push((label.to_owned(), verdict));
        self
    }

    fn allowed(self, label: &str, command: &str) -> Self {
        self.expect("allowed", label, command)
    }

    fn denied(self, label: &str, command: &str) -> Self {
        self.expect("denied", label, command)
    }

    fn reads_denied(self, paths: &[PathBuf]) -> Self {
        paths.iter().fold(self, |a, path| {
            a.denied(
                &format!("read {}", path.display()),
                &format!("cat '{}'", path.display()),
            )
        })
    }

    /// What every confined job may do: write its own directory, `/tmp` and `/dev/null`, read the
    /// system. `/tmp` only where it does not hold the tests' state dirs: a writable directory
    /// above a state dir takes no new entries from a job (README, job confinement), which is
    /// what a checkout under `/tmp` shows.
    fn own_space(self) -> Self {
        let tmp = format!("/tmp/muster-confinement-{}-$$", std::process::id());
        let tmp_verdict = if tests_live_in_tmp() {
            "denied"
        } else {
            "allowed"
        };
        self.allowed("write its own directory", "echo ok > own && grep -q ok own")
            .expect(
                tmp_verdict,
                "write /tmp",
                &format!("echo ok > {tmp} && grep -q ok {tmp} && rm {tmp}"),
            )
            .allowed("read /etc/hostname", "cat /etc/hostname")
            .allowed("write /dev/null", "echo x > /dev/null")
    }

    /// Runs the script on `worker` (after `preamble`, whose output comes first) and checks
    /// every verdict. Returns the job's stdout.
    fn check(self, server: &Server, worker: &str, preamble: &str) -> String {
        let out = run(server, worker, &format!("{preamble}{}", self.script));
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let stdout = text(&out.stdout);
        let verdicts: BTreeMap<&str, &str> =
            stdout.lines().filter_map(|l| l.rsplit_once(": ")).collect();
        for (label, verdict) in &self.expected {
            assert_eq!(
                verdicts.get(label.as_str()).copied(),
                Some(*verdict),
                "{label}: {verdicts:#?}"
            );
        }
        stdout
    }
}

/// Every file under `dir`, except beneath `skip`.
fn files_under(dir: &Path, skip: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.starts_with(skip) {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn assert_confinement_shown(server: &Server, worker: &str) {
    let shown = server.cli_json(&["workers", "show", worker]);
    assert_eq!(shown["confinement"]["kind"], "landlock", "{shown:#}");
    assert!(
        shown["confinement"]["abi"].as_u64().unwrap_or(0) >= 1,
        "{shown:#}"
    );
    let table = server.cli_ok(&["workers", "show", worker]);
    assert!(
        table
            .lines()
            .any(|l| l.contains("confinement") && l.contains("landlock (ABI")),
        "{table}"
    );
}

#[test]
fn a_job_cannot_reach_its_workers_credentials_and_still_uses_its_own_space() {
    let server = server(false);
    let worker = start_worker(&server, "sealed", &[]);
    let state = worker.state_dir.canonicalize().unwrap();

    // Another job, still running, with a file of its own.
    let other = server.cli_json(&[
        "job",
        "run",
        "--detach",
        "--worker",
        "sealed",
        "--",
        "sh",
        "-c",
        "echo private > mine; sleep 300",
    ]);
    let other_id = other["id"].as_str().expect("job id").to_owned();
    let other_file = state.join("jobs").join(&other_id).join("mine");
    wait_until("the other job's file", STARTUP, || {
        (other_file.exists().then_some(()), String::new())
    });

    let mut secrets = files_under(&state, &state.join("jobs"));
    for expected in ["identity.json", "machine-id"] {
        assert!(
            secrets.contains(&state.join(expected)),
            "{expected} in {secrets:?}"
        );
    }
    secrets.push(other_file.clone());
    let identity_before = std::fs::read(state.join("identity.json")).unwrap();

    Attempts::default()
        .own_space()
        .denied("read ../../identity.json", "cat ../../identity.json")
        .reads_denied(&secrets)
        .denied(
            "read the worker environment",
            &format!("cat /proc/{}/environ", worker.pid()),
        )
        .denied("plant a file in the state dir", "touch ../../planted")
        .denied("delete the identity", "rm ../../identity.json")
        .denied(
            "write the other job directory",
            &format!("echo x >> '{}'", other_file.display()),
        )
        .check(&server, "sealed", "");
    assert_eq!(
        std::fs::read(state.join("identity.json")).unwrap(),
        identity_before
    );
    assert!(!state.join("planted").exists());
    assert_eq!(std::fs::read_to_string(&other_file).unwrap(), "private\n");

    // A command that does not exist is still a spawn failure, not an exit code.
    let out = server.cli(&[
        "job",
        "run",
        "--worker",
        "sealed",
        "--",
        "/definitely/not/here",
    ]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let shown = server.cli_json(&["job", "show", &newest_job_id(&server)]);
    assert_eq!(shown["ending"]["how"], "spawn_failed", "{shown:#}");
    assert!(
        shown["reason"]
            .as_str()
            .is_some_and(|r| r.contains("No such file or directory")),
        "{shown:#}"
    );

    // The launcher reads its stop signals from a blocked mask; the command inherits none of it.
    let out = server.cli(&[
        "job",
        "run",
        "--worker",
        "sealed",
        "--",
        "grep",
        "SigBlk",
        "/proc/self/status",
    ]);
    assert_eq!(
        text(&out.stdout).trim(),
        "SigBlk:\t0000000000000000",
        "{out:?}"
    );

    assert_confinement_shown(&server, "sealed");
    server.cli_ok(&["job", "cancel", &other_id]);
}

#[test]
fn a_job_on_the_builtin_worker_cannot_read_the_servers_data_dir() {
    let server = server(true);
    server.wait_status("builtin", "connected", STARTUP);
    let data = server.data_dir().canonicalize().unwrap();
    let secrets = files_under(&data, &data.join("builtin-worker/jobs"));
    for expected in ["admin-token", "muster.db"] {
        assert!(
            secrets.contains(&data.join(expected)),
            "{expected} in {secrets:?}"
        );
    }
    assert!(
        secrets
            .iter()
            .any(|p| p.starts_with(data.join("tls")) && p.to_string_lossy().contains("key")),
        "a TLS key in {secrets:?}"
    );

    Attempts::default()
        .own_space()
        .reads_denied(&secrets)
        .denied(
            "read the server environment",
            &format!("cat /proc/{}/environ", server.pid()),
        )
        .check(&server, "builtin", "");
    assert_confinement_shown(&server, "builtin");
}

#[test]
fn job_writable_paths_are_writable_and_a_missing_one_is_a_configuration_error() {
    let server = server(false);
    let allowed = server.path("allowed");
    let other = server.path("other");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    let also = server.path("also");
    std::fs::create_dir_all(&also).unwrap();
    // Through the environment, as a list, the way an operator would configure it.
    let (token, _) = server.create_token("writer", "1h");
    let _worker = server
        .worker("writer")
        .token(&token)
        .env(
            "MUSTER_JOB_WRITABLE",
            &format!("{},{}", allowed.display(), also.display()),
        )
        .start();
    server.wait_status("writer", "connected", STARTUP);
    Attempts::default()
        .allowed(
            "write the allowed path",
            &format!("echo ok > '{}/f'", allowed.display()),
        )
        .allowed(
            "write the second allowed path",
            &format!("echo ok > '{}/f'", also.display()),
        )
        // Under `/tmp`, which every job may write beneath, no path of the test is "not allowed".
        .expect(
            if tests_live_in_tmp() {
                "allowed"
            } else {
                "denied"
            },
            "write a path not allowed",
            &format!("echo ok > '{}/f'", other.display()),
        )
        .check(&server, "writer", "");
    assert!(allowed.join("f").exists());
    assert_eq!(other.join("f").exists(), tests_live_in_tmp());

    let (token, _) = server.create_token("misconfigured", "1h");
    let mut worker = server
        .worker("misconfigured")
        .token(&token)
        .arg("--job-writable")
        .arg("/definitely/not/here")
        .start();
    assert_eq!(worker.wait_exit(STARTUP), 2);
    let line = worker.error_line();
    assert!(
        line.contains("/definitely/not/here") && line.contains("--job-writable"),
        "{line}"
    );
}

// ---- every process of a job ends with it ----

/// A job whose processes try to outlive it: a grandchild that ignores SIGTERM, and a daemon
/// that double-forks into a session of its own (and ignores SIGTERM too). Each writes its pid
/// to a scratch dir in `/tmp` (which jobs may write).
struct EscapingJob {
    run: crate::harness::Process,
    id: String,
    /// The job's three processes, once they are all up.
    pids: [(u32, &'static str); 3],
    _scratch: tempfile::TempDir,
}

impl EscapingJob {
    /// Starts it with `job run [run_args] -- sh -c SCRIPT` and waits until all three run.
    fn start(server: &Server, run_args: &[&str]) -> Self {
        let scratch = tempfile::Builder::new()
            .prefix("muster-confinement-")
            .tempdir()
            .unwrap();
        let script = format!(
            "trap '' TERM
echo $$ > {d}/main.pid
sh -c 'trap \"\" TERM; echo $$ > {d}/grandchild.pid; exec sleep 300' &
( setsid sh -c 'trap \"\" TERM; echo $$ > {d}/daemon.pid; exec sleep 300' & )
echo started
wait",
            d = scratch.path().display()
        );
        let mut args = vec!["job", "run"];
        args.extend_from_slice(run_args);
        args.extend_from_slice(&["--", "sh", "-c", &script]);
        let run = server.spawn_cli("job-run", &args);
        let pid = |name: &str| read_pid(&scratch.path().join(name), STARTUP);
        let pids = [
            (pid("main.pid"), "the job's shell"),
            (pid("grandchild.pid"), "the grandchild that ignores SIGTERM"),
            (pid("daemon.pid"), "the daemon in its own session"),
        ];
        for (pid, what) in pids {
            assert!(crate::harness::alive(pid), "{what} ({pid}) is up");
        }
        // The daemon really left: another session than the job's shell.
        assert_ne!(session_of(pids[2].0), session_of(pids[0].0));
        Self {
            run,
            id: newest_job_id(server),
            pids,
            _scratch: scratch,
        }
    }

    fn wait_all_gone(&self, within: Duration) {
        for (pid, what) in self.pids {
            wait_dead(pid, what, within);
        }
    }
}

fn session_of(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(3).map(str::to_owned)
}

/// KILL_GRACE (2 s) after SIGTERM, plus room for a loaded machine.
const ALL_GONE_WITHIN: Duration = Duration::from_secs(15);

fn newest_job_id(server: &Server) -> String {
    wait_until("a job to be listed", STARTUP, || {
        let list = server.cli_json(&["job", "list"]);
        (
            list[0]["id"].as_str().map(str::to_owned),
            format!("{list:#}"),
        )
    })
}

#[test]
fn cancel_ends_every_process_of_the_job() {
    let server = server(false);
    let _worker = start_worker(&server, "tree-cancel", &[]);
    let mut job = EscapingJob::start(&server, &[]);
    server.cli_ok(&["job", "cancel", &job.id]);
    job.wait_all_gone(ALL_GONE_WITHIN);
    assert_ne!(job.run.wait_exit(STARTUP), 0);
}

#[test]
fn a_timeout_ends_every_process_of_the_job() {
    let server = server(false);
    let _worker = start_worker(&server, "tree-timeout", &[]);
    let mut job = EscapingJob::start(&server, &["--timeout", "3s"]);
    job.wait_all_gone(Duration::from_secs(3) + ALL_GONE_WITHIN);
    assert_ne!(job.run.wait_exit(STARTUP), 0);
    let shown = server.cli_json(&["job", "show", &job.id]);
    assert_eq!(shown["ending"]["how"], "timed_out", "{shown:#}");
}

#[test]
fn kill_9_of_the_worker_ends_every_process_of_the_job_and_a_restart_sweeps_its_directory() {
    let server = server(false);
    let mut worker = start_worker(&server, "tree-kill9", &[]);
    let job = EscapingJob::start(&server, &[]);
    let job_dir = worker.state_dir.join("jobs").join(&job.id);
    assert!(job_dir.is_dir(), "{}", job_dir.display());
    worker.kill9();
    job.wait_all_gone(ALL_GONE_WITHIN);
    // Nobody was left to delete its directory; the next worker on the state dir does.
    assert!(job_dir.is_dir());
    let _again = server.worker("tree-kill9").start();
    server.wait_status("tree-kill9", "connected", STARTUP);
    wait_until("the leftover job directory to be swept", STARTUP, || {
        ((!job_dir.exists()).then_some(()), String::new())
    });
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn cmdline_of(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

#[test]
fn jobs_start_through_the_workers_launch_service_which_ends_with_the_worker() {
    let server = server(false);
    let mut worker = start_worker(&server, "tree-service", &[]);
    let job = EscapingJob::start(&server, &[]);
    // The job's shell ← its launcher ← the launch service ← the worker.
    let launcher = parent_of(job.pids[0].0).expect("the job's launcher");
    assert!(
        cmdline_of(launcher).contains("__job-exec"),
        "{}",
        cmdline_of(launcher)
    );
    let service = parent_of(launcher).expect("the launch service");
    assert!(
        cmdline_of(service).contains("__job-exec --serve"),
        "{}",
        cmdline_of(service)
    );
    assert_eq!(parent_of(service), Some(worker.pid()));
    worker.kill9();
    job.wait_all_gone(ALL_GONE_WITHIN);
    wait_dead(launcher, "the job's launcher", ALL_GONE_WITHIN);
    wait_dead(service, "the launch service", ALL_GONE_WITHIN);
}

// ---- the job user ----

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[test]
fn job_user_runs_jobs_as_that_user() {
    if !running_as_root() {
        eprintln!("skipped: `--job-user` needs the worker to run as root, and this test does not");
        return;
    }
    let server = server(false);
    let _worker = start_worker(&server, "as-nobody", &["--job-user", "nobody"]);
    let stdout = Attempts::default()
        .own_space()
        .denied("read ../../identity.json", "cat ../../identity.json")
        .check(&server, "as-nobody", "id -un; id -u; stat -c %U .\n");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("nobody"), "{stdout}");
    assert_eq!(lines.next(), Some("65534"), "{stdout}");
    assert_eq!(
        lines.next(),
        Some("nobody"),
        "the job's directory: {stdout}"
    );
}

#[test]
fn job_user_is_refused_when_the_worker_is_not_root() {
    if !running_as_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and setpriv(1) to start a worker as another user");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(home.path(), Some(65534), Some(65534)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(muster_bin())
        .args([
            "worker",
            "--url",
            "https://127.0.0.1:9",
            "--job-user",
            "nobody",
        ])
        .arg("--state-dir")
        .arg(&state)
        .env("MUSTER_ENROLLMENT_TOKEN", "name.secret")
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let line = error_line(&text(&out.stderr));
    assert!(
        line.contains("needs the worker to run as root") && line.contains("hint:"),
        "{line}"
    );
}

/// Whether the tests' scratch dirs (and so the state dirs) are below `/tmp`, as in a checkout
/// under `/tmp`: jobs may write beneath `/tmp`, but not new entries directly in it then.
fn tests_live_in_tmp() -> bool {
    Path::new(env!("CARGO_TARGET_TMPDIR")).starts_with("/tmp")
}

//! Running jobs across a server restart: the worker keeps running them while it has no server,
//! reports them when it reconnects, and the server takes them over (state, the output produced
//! meanwhile, the exit code). A job is `lost` only when its worker stays away past the grace
//! period (`--job-grace`), and it never runs twice.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{STARTUP, Server, ServerOpts, Worker, wait_until};

fn start_worker(server: &Server, name: &str) -> Worker {
    let (token, _) = server.create_token(name, "1h");
    let worker = server.worker(name).token(&token).start();
    server.wait_status(name, "connected", STARTUP);
    worker
}

fn job(server: &Server, id: &str) -> Value {
    server.cli_json(&["job", "show", id])
}

pub fn wait_job(server: &Server, id: &str, state: &str, timeout: Duration) -> Value {
    wait_until(&format!("job {id} to be {state}"), timeout, || {
        let j = job(server, id);
        ((j["state"] == state).then(|| j.clone()), format!("{j:#}"))
    })
}

pub fn logs(server: &Server, id: &str) -> String {
    let out = server.cli(&["job", "logs", id]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A detached job running `script` under `sh -c`; its id.
pub fn detach(server: &Server, script: &str) -> String {
    let shown = server.cli_json(&["job", "run", "--detach", "--", "sh", "-c", script]);
    shown["id"].as_str().expect("job id").to_owned()
}

/// A scratch file path in the test's temp dir.
pub fn scratch(server: &Server, name: &str) -> PathBuf {
    let dir = server.path("scratch");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Waits until `path` holds at least `lines` lines.
pub fn wait_lines(path: &Path, lines: usize) {
    wait_until(
        &format!("{} to hold {lines} lines", path.display()),
        STARTUP,
        || {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            ((text.lines().count() >= lines).then_some(()), text)
        },
    );
}

/// Ten lines, one every 300 ms, each also appended to `marker` (so the test knows how far it
/// got and that it ran once), then exit 0.
pub fn counting_script(marker: &Path) -> String {
    format!(
        "echo started >> {m}; for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; echo $i >> {m}; sleep 0.3; done",
        m = marker.display()
    )
}

fn expected_lines() -> String {
    (1..=10).map(|i| format!("line {i}\n")).collect()
}

#[test]
fn a_job_running_through_a_graceful_server_restart_succeeds_with_all_its_output() {
    let mut server = Server::start_default();
    let _worker = start_worker(&server, "steady");
    let marker = scratch(&server, "ran");
    let id = detach(&server, &counting_script(&marker));
    wait_job(&server, &id, "running", STARTUP);
    // Someone follows it live, through the restart.
    let mut follower = server.spawn_cli("follower", &["job", "logs", "--follow", &id]);
    wait_lines(&marker, 3);

    // SIGTERM, then the same data dir again: the job ran on meanwhile.
    server.restart_gracefully();
    let done = wait_job(&server, &id, "succeeded", STARTUP);
    assert_eq!(done["exit_code"], 0, "{done:#}");
    assert_eq!(done["worker"], "steady");
    assert_eq!(logs(&server, &id), expected_lines(), "the whole output");
    let ran = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(ran.matches("started").count(), 1, "it ran once: {ran}");
    // The follower picked the stream up again where it broke: every line once.
    assert_eq!(follower.wait_exit(STARTUP), 0, "{}", follower.logs.dump());
    assert_eq!(
        follower.logs.stdout(),
        expected_lines(),
        "{}",
        follower.logs.dump()
    );
}

#[test]
fn a_job_running_through_a_server_crash_succeeds_and_never_runs_twice() {
    let mut server = Server::start_default();
    let _worker = start_worker(&server, "steady");
    let marker = scratch(&server, "ran");
    let id = detach(&server, &counting_script(&marker));
    wait_lines(&marker, 3);

    server.kill9();
    // The server stays down for a while; the job runs on without it.
    wait_lines(&marker, 8);
    server.restart();
    let done = wait_job(&server, &id, "succeeded", STARTUP);
    assert_eq!(done["exit_code"], 0, "{done:#}");
    let ran = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(ran.matches("started").count(), 1, "it ran once: {ran}");
    // Whatever the server had read before it died, and everything after: with a crash, a
    // chunk in flight on the dying connection may be missing, but the output produced while
    // the server was down is all there.
    let text = logs(&server, &id);
    for i in 8..=10 {
        assert!(text.contains(&format!("line {i}\n")), "{text}");
    }
}

#[test]
fn a_job_whose_worker_never_comes_back_is_lost_after_the_grace_period() {
    let mut server = Server::start(ServerOpts {
        env: vec![("MUSTER_JOB_GRACE".into(), "3s".into())],
        ..Default::default()
    });
    let mut worker = start_worker(&server, "gone");
    let id = detach(&server, "echo hello; sleep 300");
    wait_until("the job's output to be stored", STARTUP, || {
        let text = logs(&server, &id);
        ((text == "hello\n").then_some(()), text)
    });
    worker.kill9();
    server.wait_status("gone", "disconnected", STARTUP);
    // It waits for the worker, and then it is lost: once, with the reason.
    let lost = wait_job(&server, &id, "lost", STARTUP);
    let reason = lost["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("did not come back within 3s"), "{lost:#}");
    assert_eq!(logs(&server, &id), "hello\n");

    // It stays lost across a restart, and is not queued again.
    server.restart_gracefully();
    assert_eq!(job(&server, &id)["state"], "lost");
}

//! Jobs with real processes: `muster job run|list|show|logs|cancel` against a server and
//! workers, the command's output and exit code passed through, placement, the queue, and how a
//! job ends when it is cancelled, times out, or its worker goes away.
//!
//! Over 400 lines: 16 tests, each a whole scenario with real processes (a server, workers,
//! process trees to watch die), and the few helpers only they use at the top. Split by topic, the
//! files would share those helpers through yet another module.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    Process, STARTUP, Server, ServerOpts, Worker, alive, array, error_line, find, read_pid,
    wait_dead, wait_until,
};

/// A worker enrolled with a token named `name`, with its own `--label`s.
fn start_worker(server: &Server, name: &str, labels: &[&str]) -> Worker {
    let (token, _) = server.create_token(name, "1h");
    let mut builder = server.worker(name).token(&token);
    for label in labels {
        builder = builder.arg("--label").arg(label);
    }
    let worker = builder.start();
    server.wait_status(name, "connected", STARTUP);
    worker
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn jobs(server: &Server) -> Vec<Value> {
    array(server.cli_json(&["job", "list"]))
}

fn job(server: &Server, id: &str) -> Value {
    server.cli_json(&["job", "show", id])
}

/// The id of the newest job.
fn newest_job(server: &Server) -> String {
    wait_until("a job to be listed", STARTUP, || {
        let list = jobs(server);
        (
            list.first()
                .and_then(|j| j["id"].as_str())
                .map(str::to_owned),
            format!("{list:#?}"),
        )
    })
}

/// Waits until job `id` is in `state`; returns it.
fn wait_job(server: &Server, id: &str, state: &str, timeout: Duration) -> Value {
    wait_until(&format!("job {id} to be {state}"), timeout, || {
        let j = job(server, id);
        ((j["state"] == state).then(|| j.clone()), format!("{j:#}"))
    })
}

/// A scratch dir for pid and marker files, in the test's temp dir.
fn scratch(server: &Server, name: &str) -> PathBuf {
    let dir = server.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A shell script that records its own pid and a background child's, then waits on it: a job
/// with a process tree.
fn tree_script(dir: &Path) -> String {
    format!(
        "echo $$ > {d}/main.pid; sleep 300 & echo $! > {d}/child.pid; echo started; wait",
        d = dir.display()
    )
}

/// [`tree_script`] whose processes ignore SIGTERM: only the SIGKILL after the grace period
/// ends them.
fn stubborn_tree_script(dir: &Path) -> String {
    format!("trap '' TERM; {}", tree_script(dir))
}

/// The two processes of a [`tree_script`] job.
struct Tree {
    main: u32,
    child: u32,
}

impl Tree {
    /// Waits for both to be gone.
    fn wait_dead(&self, timeout: Duration) {
        wait_dead(self.main, "the job's shell", timeout);
        wait_dead(self.child, "the job's background child", timeout);
    }
}

/// Waits for a tree job to be up.
fn tree_pids(dir: &Path) -> Tree {
    let main = read_pid(&dir.join("main.pid"), STARTUP);
    let child = read_pid(&dir.join("child.pid"), STARTUP);
    assert!(alive(main) && alive(child), "the job's processes are up");
    Tree { main, child }
}

/// Runs a process-tree job (`script`, writing its pids to the scratch dir `name`) with
/// `muster job run`, and waits for the tree to be up: the `job run` process, the tree, the job id.
fn run_tree_job(
    server: &Server,
    name: &str,
    script: fn(&Path) -> String,
) -> (Process, Tree, String) {
    let dir = scratch(server, name);
    let script = script(&dir);
    let run = server.spawn_cli("job-run", &["job", "run", "--", "sh", "-c", &script]);
    let tree = tree_pids(&dir);
    (run, tree, newest_job(server))
}

/// How a job ended, in words (empty while it runs).
fn reason(job: &Value) -> &str {
    job["reason"].as_str().unwrap_or_default()
}

#[test]
fn output_and_exit_code_round_trip() {
    let server = Server::start_default();
    let _w = start_worker(&server, "plain", &[]);

    let out = server.cli(&[
        "job",
        "run",
        "--",
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; printf 'no newline'; exit 7",
    ]);
    assert_eq!(code(&out), 7, "{out:?}");
    assert_eq!(text(&out.stdout), "to-stdout\nno newline");
    assert_eq!(
        text(&out.stderr),
        "to-stderr\n",
        "the command's own exit code is passed on silently"
    );
    let id = newest_job(&server);
    let shown = job(&server, &id);
    assert_eq!(shown["state"], "failed", "{shown:#}");
    assert_eq!(shown["exit_code"], 7, "{shown:#}");
    assert_eq!(shown["worker"], "plain", "{shown:#}");
    // The stored output is split the same way.
    let logs = server.cli(&["job", "logs", &id]);
    assert_eq!(code(&logs), 0, "{logs:?}");
    assert_eq!(text(&logs.stdout), "to-stdout\nno newline");
    assert_eq!(text(&logs.stderr), "to-stderr\n");

    // Success.
    let out = server.cli(&["job", "run", "--", "echo", "fine"]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(text(&out.stdout), "fine\n");
    assert_eq!(job(&server, &newest_job(&server))["state"], "succeeded");

    // `--json`: the job as it ended, and nothing else, on stdout.
    let ended = server.cli(&[
        "job",
        "run",
        "--json",
        "--",
        "sh",
        "-c",
        "echo hidden; exit 3",
    ]);
    assert_eq!(code(&ended), 3, "{ended:?}");
    let ended: Value = serde_json::from_slice(&ended.stdout).expect("JSON only on stdout");
    for key in ["id", "state", "worker", "exit_code"] {
        assert!(ended.get(key).is_some(), "no `{key}` in {ended:#}");
    }
    assert_eq!(ended["exit_code"], 3);
    assert_eq!(ended["state"], "failed");
    assert_eq!(
        ended["ending"],
        serde_json::json!({"how": "exited", "code": 3})
    );

    // Killed by a signal: 128 + N.
    let out = server.cli(&["job", "run", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(code(&out), 143, "{out:?}");
    let shown = job(&server, &newest_job(&server));
    assert_eq!(shown["state"], "failed");
    assert_eq!(
        shown["ending"],
        serde_json::json!({"how": "signalled", "signal": 15})
    );
    assert!(reason(&shown).contains("signal 15"), "{shown:#}");

    // Could not start: 127, with the reason.
    let out = server.cli(&["job", "run", "--", "/definitely/not/a/program"]);
    assert_eq!(code(&out), 127, "{out:?}");
    let line = error_line(&text(&out.stderr));
    assert!(line.contains("could not start"), "{line}");
}

#[test]
fn env_reaches_the_command_and_each_job_runs_in_its_own_directory_under_the_state_dir_deleted_after()
 {
    let server = Server::start_default();
    let worker = start_worker(&server, "envy", &[]);
    let script = "echo \"$GREETING\"; echo \"[$EMPTY]\"; pwd; touch here && ls";
    let run = |value: &str| {
        let env = format!("GREETING={value}");
        let out = server.cli(&[
            "job", "run", "--env", &env, "--env", "EMPTY=", "--", "sh", "-c", script,
        ]);
        assert_eq!(code(&out), 0, "{out:?}");
        let id = newest_job(&server);
        (text(&out.stdout), id)
    };
    let (first, id1) = run("hello-value-1");
    let (second, id2) = run("hello-value-2");
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines[0], "hello-value-1", "{first}");
    assert_eq!(lines[1], "[]", "{first}");
    let state_dir = worker.state_dir.canonicalize().unwrap();
    let dir1 = PathBuf::from(lines[2]);
    assert_eq!(dir1, state_dir.join("jobs").join(&id1), "{first}");
    assert_eq!(lines[3], "here", "the job ran in its directory: {first}");
    // Its output is kept; its directory is not.
    assert!(!dir1.exists(), "{} is deleted", dir1.display());
    let dir2 = PathBuf::from(second.lines().nth(2).unwrap());
    assert_eq!(dir2, state_dir.join("jobs").join(&id2), "{second}");
    assert_ne!(dir1, dir2);

    // Values may be secrets: listings show the keys, never the values.
    let shown = job(&server, &id1);
    assert_eq!(shown["env_keys"], serde_json::json!(["EMPTY", "GREETING"]));
    for text in [
        server.cli_ok(&["job", "list", "--json"]),
        server.cli_ok(&["job", "show", &id1]),
        server.cli_ok(&["audit", "--json", "--limit", "1000"]),
    ] {
        assert!(
            !text.contains("hello-value-1"),
            "an env value shows:\n{text}"
        );
    }
}

#[test]
fn jobs_land_on_the_worker_their_labels_or_name_select() {
    let server = Server::start_default();
    let _a = start_worker(&server, "place-a", &["zone=a", "tier=web"]);
    let _b = start_worker(&server, "place-b", &["zone=b", "tier=web"]);
    let run_on = |selector: &[&str]| -> String {
        let mut args = vec!["job", "run", "--json"];
        args.extend_from_slice(selector);
        args.extend_from_slice(&["--", "true"]);
        let out = server.cli(&args);
        assert_eq!(code(&out), 0, "{out:?}");
        let ended: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        ended["worker"].as_str().expect("worker").to_owned()
    };
    for _ in 0..3 {
        assert_eq!(run_on(&["--label", "zone=a"]), "place-a");
        assert_eq!(
            run_on(&["--label", "zone=b", "--label", "tier=web"]),
            "place-b"
        );
        assert_eq!(run_on(&["--worker", "place-b"]), "place-b");
        assert_eq!(run_on(&["--worker", "place-a"]), "place-a");
    }
    // Both match: either may take it.
    let any = run_on(&["--label", "tier=web"]);
    assert!(any == "place-a" || any == "place-b", "{any}");
    // A worker that does not exist is refused at once.
    let out = server.cli(&["job", "run", "--worker", "nobody", "--", "true"]);
    assert_eq!(code(&out), 1, "{out:?}");
    assert!(error_line(&text(&out.stderr)).contains("no worker named"));
}

#[test]
fn the_builtin_worker_runs_jobs_on_a_lone_server() {
    let server = Server::start(ServerOpts {
        builtin_worker: true,
        ..Default::default()
    });
    let builtin = server.wait_status("builtin", "connected", STARTUP);
    assert_eq!(builtin["enrolled_via"], "builtin", "{builtin:#}");
    assert_eq!(server.workers().len(), 1);

    let out = server.cli(&["job", "run", "--", "sh", "-c", "echo from-builtin; pwd"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("from-builtin"));
    let id = newest_job(&server);
    let shown = job(&server, &id);
    assert_eq!(shown["worker"], "builtin", "{shown:#}");
    assert_eq!(shown["state"], "succeeded", "{shown:#}");
    let expected = server
        .data_dir()
        .canonicalize()
        .unwrap()
        .join("builtin-worker/jobs")
        .join(&id);
    assert_eq!(lines.next().map(PathBuf::from), Some(expected));

    // It is part of the server: it cannot be revoked or removed.
    let (_, line) = server.cli_err(&["workers", "revoke", "builtin"]);
    assert!(line.contains("built-in"), "{line}");
    let (_, line) = server.cli_err(&["workers", "remove", "builtin"]);
    assert!(line.contains("built-in"), "{line}");
    assert_eq!(
        server.wait_status("builtin", "connected", STARTUP)["enrolled_via"],
        "builtin"
    );
}

#[test]
fn a_queued_job_runs_when_a_matching_worker_arrives() {
    let server = Server::start_default();
    let submitted = server.cli_json(&[
        "job",
        "run",
        "--detach",
        "--label",
        "pool=late",
        "--",
        "sh",
        "-c",
        "echo arrived",
    ]);
    let id = submitted["id"].as_str().expect("id").to_owned();
    assert_eq!(submitted["state"], "queued", "{submitted:#}");
    assert!(submitted["worker"].is_null(), "{submitted:#}");
    assert!(submitted["exit_code"].is_null(), "{submitted:#}");
    // Someone follows it while it waits.
    let mut follower = server.spawn_cli("follow", &["job", "logs", "--follow", &id]);
    // A worker without the label does not take it.
    let _other = start_worker(&server, "other", &["pool=early"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(job(&server, &id)["state"], "queued");

    let _late = start_worker(&server, "late", &["pool=late"]);
    let done = wait_job(&server, &id, "succeeded", STARTUP);
    assert_eq!(done["worker"], "late", "{done:#}");
    assert_eq!(done["exit_code"], 0, "{done:#}");
    assert_eq!(follower.wait_exit(STARTUP), 0, "{}", follower.logs.dump());
    assert_eq!(follower.stdout(), "arrived\n");
}

#[test]
fn a_job_no_worker_takes_in_time_fails_with_a_clear_reason() {
    let server = Server::start_default();
    let _w = start_worker(&server, "cpu-only", &["kind=cpu"]);
    let started = Instant::now();
    let out = server.cli(&[
        "job",
        "run",
        "--label",
        "kind=gpu",
        "--queue-timeout",
        "1s",
        "--",
        "true",
    ]);
    let took = started.elapsed();
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(took >= Duration::from_millis(900), "gave up after {took:?}");
    assert!(took < Duration::from_secs(6), "gave up only after {took:?}");
    let line = error_line(&text(&out.stderr));
    assert!(line.contains("no matching worker"), "{line}");
    let shown = job(&server, &newest_job(&server));
    assert_eq!(shown["state"], "failed", "{shown:#}");
    assert_eq!(shown["ending"]["how"], "no_worker", "{shown:#}");
    assert!(shown["exit_code"].is_null(), "{shown:#}");
    assert!(shown["worker"].is_null(), "{shown:#}");
    assert!(
        reason(&shown).starts_with("no matching worker had a free slot within 1s"),
        "{shown:#}"
    );
}

#[test]
fn cancel_kills_the_whole_process_tree() {
    let server = Server::start_default();
    let _w = start_worker(&server, "cancel-me", &[]);
    let (mut run, tree, id) = run_tree_job(&server, "cancel-pids", tree_script);
    assert_eq!(job(&server, &id)["state"], "running");

    let answer = server.cli_json(&["job", "cancel", &id]);
    assert_eq!(answer["id"], id.as_str(), "{answer:#}");
    assert_eq!(
        run.wait_exit(Duration::from_secs(10)),
        130,
        "{}",
        run.logs.dump()
    );
    assert_eq!(run.stdout(), "started\n");
    assert!(error_line(&run.stderr()).contains("cancelled"));
    let shown = job(&server, &id);
    assert_eq!(shown["state"], "cancelled", "{shown:#}");
    tree.wait_dead(Duration::from_secs(5));

    // Cancelling again: it has ended.
    let (code, line) = server.cli_err(&["job", "cancel", &id]);
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("already ended"), "{line}");
    // A queued job is cancelled at once.
    let queued = server.cli_json(&[
        "job",
        "run",
        "--detach",
        "--label",
        "none=here",
        "--",
        "true",
    ]);
    let qid = queued["id"].as_str().unwrap();
    assert_eq!(
        server.cli_json(&["job", "cancel", qid])["state"],
        "cancelled"
    );
}

#[test]
fn a_timeout_kills_the_whole_process_tree() {
    let server = Server::start_default();
    let _w = start_worker(&server, "slowpoke", &[]);
    let dir = scratch(&server, "timeout-pids");
    let script = tree_script(&dir);
    let started = Instant::now();
    let mut run = server.spawn_cli(
        "job-run",
        &["job", "run", "--timeout", "1s", "--", "sh", "-c", &script],
    );
    let tree = tree_pids(&dir);
    assert_eq!(
        run.wait_exit(Duration::from_secs(15)),
        124,
        "{}",
        run.logs.dump()
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(error_line(&run.stderr()).contains("timed out"));
    let shown = job(&server, &newest_job(&server));
    assert_eq!(shown["state"], "failed", "{shown:#}");
    assert_eq!(shown["ending"]["how"], "timed_out", "{shown:#}");
    assert!(shown["exit_code"].is_null(), "{shown:#}");
    assert!(reason(&shown).starts_with("timed out"), "{shown:#}");
    assert_eq!(shown["timeout_ms"], 1000);
    tree.wait_dead(Duration::from_secs(5));
}

#[test]
fn revoking_the_worker_mid_job_kills_the_job_and_marks_it_lost() {
    let server = Server::start_default();
    let mut worker = start_worker(&server, "revoked-mid-job", &[]);
    let (mut run, tree, id) = run_tree_job(&server, "revoke-pids", tree_script);

    server.cli_ok(&["workers", "revoke", "revoked-mid-job"]);
    assert_eq!(worker.wait_exit(STARTUP), 5, "{}", worker.logs.dump());
    assert_eq!(
        run.wait_exit(Duration::from_secs(10)),
        255,
        "{}",
        run.logs.dump()
    );
    assert!(error_line(&run.stderr()).contains("lost"));
    let shown = job(&server, &id);
    assert_eq!(shown["state"], "lost", "{shown:#}");
    assert!(reason(&shown).contains("revoked"), "{shown:#}");
    tree.wait_dead(Duration::from_secs(5));
}

#[test]
fn a_worker_stopped_with_sigterm_mid_job_kills_the_job_before_it_goes() {
    let server = Server::start_default();
    let mut worker = start_worker(&server, "stopping", &[]);
    let (mut run, tree, id) = run_tree_job(&server, "stop-pids", stubborn_tree_script);

    assert_eq!(worker.terminate(STARTUP), 0, "{}", worker.logs.dump());
    // Killed (SIGKILL after the grace period: they ignore SIGTERM) before the worker exited.
    tree.wait_dead(Duration::from_millis(500));
    assert_eq!(
        run.wait_exit(Duration::from_secs(10)),
        255,
        "{}",
        run.logs.dump()
    );
    assert_eq!(job(&server, &id)["state"], "lost");
}

#[test]
fn a_job_whose_worker_is_killed_is_lost_and_never_run_again() {
    // A short wait for the worker: it is gone for good.
    let server = Server::start(ServerOpts {
        env: vec![("MUSTER_JOB_GRACE".into(), "2s".into())],
        ..Default::default()
    });
    let mut worker = start_worker(&server, "crashy", &[]);
    let dir = scratch(&server, "crash");
    let marker = dir.join("ran");
    let script = format!(
        "echo once >> {m}; echo $$ > {d}/main.pid; exec sleep 300",
        m = marker.display(),
        d = dir.display()
    );
    let mut run = server.spawn_cli("job-run", &["job", "run", "--", "sh", "-c", &script]);
    let main = read_pid(&dir.join("main.pid"), STARTUP);
    let id = newest_job(&server);

    worker.kill9();
    assert_eq!(run.wait_exit(STARTUP), 255, "{}", run.logs.dump());
    let shown = wait_job(&server, &id, "lost", STARTUP);
    assert!(reason(&shown).contains("disconnected"), "{shown:#}");
    // The job does not run on, unobserved, after its worker died.
    wait_dead(main, "the job's process", Duration::from_secs(5));

    // The worker comes back; the job stays lost and does not run again.
    let mut again = server.worker("crashy").start();
    server.wait_status("crashy", "connected", STARTUP);
    std::thread::sleep(Duration::from_secs(2));
    again.assert_running();
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "once\n");
    assert_eq!(job(&server, &id)["state"], "lost");
    assert_eq!(jobs(&server).len(), 1);
    assert!(server.workers()[0]["running_jobs"] == 0);
}

#[test]
fn a_server_restart_keeps_queued_jobs_and_finished_results() {
    let mut server = Server::start_default();
    let _w = start_worker(&server, "steady", &["pool=a"]);
    let out = server.cli(&[
        "job",
        "run",
        "--",
        "sh",
        "-c",
        "echo before-restart; exit 3",
    ]);
    assert_eq!(code(&out), 3, "{out:?}");
    let finished = newest_job(&server);
    let before = job(&server, &finished);
    let queued = server.cli_json(&[
        "job",
        "run",
        "--detach",
        "--label",
        "pool=b",
        "--",
        "sh",
        "-c",
        "echo after-restart",
    ]);
    let queued_id = queued["id"].as_str().unwrap().to_owned();
    assert_eq!(queued["state"], "queued");
    // And one that is running when the server goes down.
    let marker = scratch(&server, "restart").join("ran");
    let script = format!("echo once >> {}; sleep 300", marker.display());
    let running = server.cli_json(&[
        "job", "run", "--detach", "--label", "pool=a", "--", "sh", "-c", &script,
    ]);
    let running_id = running["id"].as_str().unwrap().to_owned();
    wait_job(&server, &running_id, "running", STARTUP);
    wait_until("the running job to start", STARTUP, || {
        (marker.exists().then_some(()), String::new())
    });

    server.kill9();
    server.restart();

    let after = job(&server, &finished);
    assert_eq!(after, before, "the finished job changed across the restart");
    assert_eq!(after["exit_code"], 3);
    let logs = server.cli(&["job", "logs", &finished]);
    assert_eq!(text(&logs.stdout), "before-restart\n");
    assert_eq!(job(&server, &queued_id)["state"], "queued");

    // The job that was running is not queued again: it waits for its worker.
    assert_eq!(job(&server, &running_id)["state"], "running");

    let _b = start_worker(&server, "arrives", &["pool=b"]);
    let done = wait_job(&server, &queued_id, "succeeded", STARTUP);
    assert_eq!(done["worker"], "arrives");
    let logs = server.cli(&["job", "logs", &queued_id]);
    assert_eq!(text(&logs.stdout), "after-restart\n");
    // `steady` is back, still running its job (it kept it while the server was down): taken
    // over, not run again. A cancel reaches it.
    server.wait_status("steady", "connected", Duration::from_secs(40));
    assert_eq!(job(&server, &running_id)["state"], "running");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "once\n");
    wait_until("the job to be taken over", STARTUP, || {
        let out = server.cli(&["job", "cancel", &running_id]);
        (out.status.success().then_some(()), format!("{out:?}"))
    });
    wait_job(&server, &running_id, "cancelled", STARTUP);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "once\n");
}

#[test]
fn output_beyond_the_cap_is_streamed_live_and_only_the_first_mib_is_kept() {
    const TOTAL: usize = 5 * 1024 * 1024;
    const CAP: usize = 1024 * 1024;
    let server = Server::start_default();
    let _w = start_worker(&server, "chatty", &[]);
    let script = format!("yes 0123456789abcdef | head -c {TOTAL}");
    let out = server.cli(&["job", "run", "--", "sh", "-c", &script]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let expected: Vec<u8> = b"0123456789abcdef\n"
        .iter()
        .copied()
        .cycle()
        .take(TOTAL)
        .collect();
    assert_eq!(out.stdout.len(), TOTAL, "live output was lost");
    assert!(out.stdout == expected, "live output was garbled");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("keeps the first"),
        "`job run` says the stored output is cut: {stderr}"
    );

    let id = newest_job(&server);
    let shown = job(&server, &id);
    assert_eq!(shown["state"], "succeeded", "{shown:#}");
    assert_eq!(shown["output_truncated"], true, "{shown:#}");
    assert_eq!(shown["output_bytes"], TOTAL as u64, "{shown:#}");
    let stored = server.cli(&["job", "logs", &id]);
    assert_eq!(code(&stored), 0);
    let kept = stored.stdout.len();
    assert!(
        (CAP - 64 * 1024..=CAP).contains(&kept),
        "kept {kept} bytes, not about 1 MiB"
    );
    assert!(
        stored.stdout[..] == expected[..kept],
        "the kept output is the first part"
    );
}

#[test]
fn workers_list_shows_busy_and_idle() {
    let server = Server::start_default();
    let (token, _) = server.create_token("slots", "1h");
    let _w = server
        .worker("slots")
        .token(&token)
        .arg("--max-jobs")
        .arg("2")
        .start();
    let idle = server.wait_status("slots", "connected", STARTUP);
    assert_eq!(idle["running_jobs"], 0, "{idle:#}");
    assert_eq!(idle["slots"], 2, "{idle:#}");
    let row = |server: &Server| {
        server
            .cli_ok(&["workers", "list"])
            .lines()
            .find(|l| l.trim_start().starts_with("slots "))
            .unwrap_or_else(|| {
                panic!(
                    "no `slots` row in:\n{}",
                    server.cli_ok(&["workers", "list"])
                )
            })
            .to_owned()
    };
    assert!(row(&server).contains("idle 0/2"), "{}", row(&server));

    let submit = || {
        server.cli_json(&[
            "job", "run", "--detach", "--worker", "slots", "--", "sleep", "30",
        ])["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let first = submit();
    wait_job(&server, &first, "running", STARTUP);
    let busy = server.wait_workers("one job running", STARTUP, |l| {
        find(l, "slots").is_some_and(|w| w["running_jobs"] == 1)
    });
    assert_eq!(find(&busy, "slots").unwrap()["slots"], 2);
    assert!(row(&server).contains("busy 1/2"), "{}", row(&server));
    let second = submit();
    let third = submit();
    wait_job(&server, &second, "running", STARTUP);
    server.wait_workers("two jobs running", STARTUP, |l| {
        find(l, "slots").is_some_and(|w| w["running_jobs"] == 2)
    });
    assert!(row(&server).contains("busy 2/2"), "{}", row(&server));
    // No free slot: the third waits.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(job(&server, &third)["state"], "queued");

    for id in [&first, &second, &third] {
        server.cli_ok(&["job", "cancel", id]);
    }
    server.wait_workers("idle again", STARTUP, |l| {
        find(l, "slots").is_some_and(|w| w["running_jobs"] == 0)
    });
    assert!(row(&server).contains("idle 0/2"), "{}", row(&server));
}

#[test]
fn stopping_the_server_kills_the_builtin_workers_jobs_and_they_end_lost() {
    let mut server = Server::start(ServerOpts {
        builtin_worker: true,
        ..Default::default()
    });
    server.wait_status("builtin", "connected", STARTUP);
    let (mut run, tree, id) = run_tree_job(&server, "builtin-stop", stubborn_tree_script);

    assert_eq!(
        server.terminate(Duration::from_secs(15)),
        0,
        "{}",
        server.dump()
    );
    // Killed before the server exited, not by some later sweep.
    tree.wait_dead(Duration::from_millis(500));
    assert_ne!(run.wait_exit(STARTUP), 0, "{}", run.logs.dump());

    server.restart();
    let shown = job(&server, &id);
    assert_eq!(shown["state"], "lost", "{shown:#}");
    assert!(reason(&shown).contains("stopped"), "{shown:#}");
}

#[test]
fn jobs_do_not_inherit_the_workers_credentials() {
    use crate::enrollment::{SECRET, enable};
    let server = Server::start_default();
    enable(&server, SECRET, &[]);
    let (token, _) = server.create_token("by-token", "1h");
    let created = server.cli_json(&["workers", "create", "by-hand"]);
    let api_key = created["api_key"].as_str().unwrap().to_owned();
    // Each configured the way an operator would: through the environment.
    let _a = server
        .worker("by-secret")
        .via_env()
        .secret("by-secret", SECRET)
        .start();
    let _b = server
        .worker("by-token")
        .via_env()
        .env("MUSTER_ENROLLMENT_TOKEN", &token)
        .start();
    let _c = server
        .worker("by-hand")
        .via_env()
        .env("MUSTER_WORKER_ID", created["id"].as_str().unwrap())
        .env("MUSTER_WORKER_API_KEY", &api_key)
        .start();
    server.wait_workers("three connected", STARTUP, |list| {
        list.len() == 3 && list.iter().all(|w| w["status"] == "connected")
    });
    let secret_part = token.split_once('.').unwrap().1.to_owned();
    for name in ["by-secret", "by-token", "by-hand"] {
        let out = server.cli(&["job", "run", "--worker", name, "--", "env"]);
        assert_eq!(code(&out), 0, "{out:?}");
        let env = text(&out.stdout);
        assert!(env.contains("MUSTER_JOB_ID="), "{env}");
        let stored = text(&server.cli(&["job", "logs", &newest_job(&server)]).stdout);
        for (what, secret) in [
            ("the auto-enrollment secret", SECRET),
            ("the enrollment token", secret_part.as_str()),
            ("the API key", api_key.as_str()),
        ] {
            assert!(
                !env.contains(secret) && !stored.contains(secret),
                "a job on `{name}` sees {what} in its environment:\n{env}"
            );
        }
    }
}

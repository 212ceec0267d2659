//! The job runner with real processes, started directly (`JobLauncher::Unconfined`): the
//! launcher itself is the `muster` binary, tested by `muster-cli`'s `confinement` tests.

use super::*;

fn start(id: &str, command: &[&str], timeout_ms: Option<u64>) -> JobStart {
    JobStart {
        id: id.into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        env: [("GREETING".to_owned(), "hello".to_owned())].into(),
        timeout_ms,
    }
}

/// Whether a process exists and is not a zombie (killed, not yet reaped by init).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Collects what a job sends until its JobFinished.
async fn collect(rx: &mut mpsc::Receiver<Message>) -> (Vec<u8>, Vec<u8>, JobExit) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        match rx.recv().await.expect("channel") {
            Message::Binary(b) => {
                let (kind, _, payload) = frame::decode(&b).expect("frame");
                if kind == frame::STDOUT {
                    out.extend_from_slice(payload)
                } else {
                    err.extend_from_slice(payload)
                }
            }
            Message::Text(t) => {
                match serde_json::from_str::<WorkerMessage>(t.as_str()).expect("message") {
                    WorkerMessage::JobFinished { exit, .. } => return (out, err, exit),
                    WorkerMessage::TicketSaved { .. } | WorkerMessage::Resume { .. } => {}
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn output_env_dir_and_exit_code_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (mut jobs, mut rx) = JobManager::new(dir.path().to_path_buf(), JobOptions::unconfined());
    jobs.message(ServerMessage::JobStart(start(
        "00000000000000c1",
        &["sh", "-c", "echo $GREETING; echo oops >&2; pwd; exit 7"],
        None,
    )));
    let (out, err, exit) = collect(&mut rx).await;
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("hello\n"), "{out}");
    assert!(
        out.trim_end().ends_with("jobs/00000000000000c1") || out.contains("00000000000000c1"),
        "{out}"
    );
    assert_eq!(err, b"oops\n");
    assert_eq!(exit, JobExit::Exited { code: 7 });
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("child.pid");
    let (mut jobs, mut rx) = JobManager::new(dir.path().to_path_buf(), JobOptions::unconfined());
    let script = format!("sleep 30 & echo $! > {}; wait", marker.display());
    jobs.message(ServerMessage::JobStart(start(
        "00000000000000c2",
        &["sh", "-c", &script],
        Some(300),
    )));
    let (_, _, exit) = collect(&mut rx).await;
    assert_eq!(exit, JobExit::TimedOut);
    let pid: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!alive(pid), "the background child {pid} was killed too");
}

#[tokio::test]
async fn cancel_and_spawn_failure_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (mut jobs, mut rx) = JobManager::new(dir.path().to_path_buf(), JobOptions::unconfined());
    jobs.message(ServerMessage::JobStart(start(
        "00000000000000c3",
        &["sleep", "30"],
        None,
    )));
    tokio::time::sleep(Duration::from_millis(100)).await;
    jobs.message(ServerMessage::JobCancel {
        id: "00000000000000c3".into(),
    });
    assert_eq!(collect(&mut rx).await.2, JobExit::Cancelled);
    jobs.message(ServerMessage::JobStart(start(
        "00000000000000c4",
        &["/definitely/not/here"],
        None,
    )));
    assert!(matches!(
        collect(&mut rx).await.2,
        JobExit::SpawnFailed { .. }
    ));
}

#[tokio::test]
async fn a_flood_of_output_waits_for_the_channel() {
    let dir = tempfile::tempdir().unwrap();
    let (mut jobs, mut rx) = JobManager::new(dir.path().to_path_buf(), JobOptions::unconfined());
    // 64 MiB of output, while nobody reads: the queue fills and the command blocks.
    jobs.message(ServerMessage::JobStart(start(
        "00000000000000c5",
        &["head", "-c", "67108864", "/dev/zero"],
        None,
    )));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rx.len(),
        OUTBOUND_QUEUE,
        "bounded: the queue is full and no more is read"
    );
    let (out, _, exit) = collect(&mut rx).await;
    assert_eq!(out.len(), 64 << 20);
    assert_eq!(exit, JobExit::Exited { code: 0 });
}

#[tokio::test]
async fn a_job_directory_is_deleted_when_the_job_ends_and_leftovers_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let leftover = dir.path().join("00000000000000aa");
    std::fs::create_dir_all(leftover.join("deep")).unwrap();
    std::fs::write(leftover.join("deep/file"), "from a killed worker").unwrap();
    let (mut jobs, mut rx) = JobManager::new(dir.path().to_path_buf(), JobOptions::unconfined());
    assert!(!leftover.exists(), "swept when the manager starts");

    jobs.message(ServerMessage::JobStart(start(
        "00000000000000c6",
        &["sh", "-c", "mkdir -p a/b; echo x > a/b/f; pwd"],
        None,
    )));
    let (out, _, exit) = collect(&mut rx).await;
    assert_eq!(exit, JobExit::Exited { code: 0 });
    let job_dir = std::path::PathBuf::from(String::from_utf8(out).unwrap().trim());
    assert!(
        job_dir.ends_with("00000000000000c6"),
        "{}",
        job_dir.display()
    );
    assert!(!job_dir.exists(), "deleted before the end was reported");
}

/// The report a new channel starts with.
fn report(jobs: &mut JobManager) -> (Vec<String>, Vec<String>, Vec<Message>) {
    let mut first = jobs.resume();
    let Message::Text(text) = first.remove(0) else {
        panic!("the report comes first")
    };
    match serde_json::from_str::<WorkerMessage>(text.as_str()).expect("report") {
        WorkerMessage::Resume { running, ended } => {
            (running, ended.into_iter().map(|e| e.id).collect(), first)
        }
        other => panic!("not a report: {other:?}"),
    }
}

#[tokio::test]
async fn a_job_runs_on_without_a_channel_and_is_reported_until_its_end_went_out() {
    let dir = tempfile::tempdir().unwrap();
    let (mut jobs, mut rx) = JobManager::new(dir.path().to_path_buf(), JobOptions::unconfined());
    jobs.message(ServerMessage::JobStart(start(
        "00000000000000d1",
        &["sh", "-c", "echo one; sleep 0.3; echo two"],
        None,
    )));
    // The channel goes: the job carries on.
    jobs.lost();
    let (running, ended, _) = report(&mut jobs);
    assert_eq!(running, ["00000000000000d1"]);
    assert!(ended.is_empty());

    let mut frames = Vec::new();
    let exit = loop {
        let message = rx.recv().await.expect("frame");
        frames.push(message.clone());
        if let Message::Text(t) = &message
            && let Ok(WorkerMessage::JobFinished { exit, .. }) = serde_json::from_str(t.as_str())
        {
            break exit;
        }
    };
    assert_eq!(exit, JobExit::Exited { code: 0 }, "it ran to its end");
    // Its end is queued but not sent: still reported running.
    assert_eq!(report(&mut jobs).0, ["00000000000000d1"]);
    // The channel died under the end: it is kept for the next channel, after the report.
    let end = frames.pop().unwrap();
    jobs.unsent(end.clone());
    let (running, _, again) = report(&mut jobs);
    assert_eq!(running, ["00000000000000d1"]);
    assert_eq!(again, std::slice::from_ref(&end));
    // It went out: from now on the report repeats the ending instead.
    jobs.sent(&end);
    let (running, ended, again) = report(&mut jobs);
    assert!(running.is_empty());
    assert_eq!(ended, ["00000000000000d1"]);
    assert!(again.is_empty());
}

#[tokio::test]
async fn stopping_the_worker_stops_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut jobs, _rx) = JobManager::new(dir.path().to_path_buf(), JobOptions::unconfined());
    jobs.message(ServerMessage::JobStart(start(
        "00000000000000d2",
        &["sleep", "30"],
        None,
    )));
    tokio::time::sleep(Duration::from_millis(100)).await;
    jobs.lost();
    assert_eq!(jobs.running(), 1, "a lost channel stops nothing");
    jobs.stop_all();
    jobs.wait_stopped(Duration::from_secs(10)).await;
    assert_eq!(jobs.running(), 0);
}

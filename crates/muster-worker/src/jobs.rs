//! Running jobs on the worker.
//!
//! Each job runs in its own directory under the state dir, in its own process group, with stdin
//! closed. Its stdout and stderr are read in chunks and sent as binary frames through a bounded
//! queue to the control channel: when the network (or the server's disk) is slower than the
//! command, the queue fills, the readers wait, the pipes fill, and the command blocks on write.
//! Nothing is buffered without bound. A timeout or a cancel kills the whole group (TERM, then
//! KILL after a grace period); so does losing the control channel, because a job whose worker
//! is gone is `lost` on the server and must not keep running unobserved.
//!
//! Over 400 lines with its tests (about 320 without): they run real processes through the
//! `JobManager` (output, exit, timeout, cancel), beside the code that spawns and kills them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use muster_core::job::JobId;
use muster_proto::control::{JobExit, JobStart, ServerMessage, WorkerMessage, frame};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::channel::Events;

/// Bytes read from a pipe at a time (and so the largest output frame).
const CHUNK: usize = 32 * 1024;
/// Frames waiting for the channel, across all jobs, before readers wait.
pub const OUTBOUND_QUEUE: usize = 16;
/// How long a killed job's group has after SIGTERM before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the command exits, how long its pipes may stay open (held by leftover background
/// processes) before the group is killed.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Why a job is being stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancel,
    /// The control channel went away.
    Lost,
}

pub struct JobManager {
    jobs_dir: PathBuf,
    outbound: mpsc::Sender<Message>,
    running: HashMap<String, watch::Sender<Option<Stop>>>,
    finished: mpsc::UnboundedReceiver<String>,
    finished_tx: mpsc::UnboundedSender<String>,
}

impl JobManager {
    /// A manager and the receiving end of its outbound queue, which the channel drains.
    pub fn new(jobs_dir: PathBuf) -> (Self, mpsc::Receiver<Message>) {
        let (outbound, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (finished_tx, finished) = mpsc::unbounded_channel();
        (
            Self {
                jobs_dir,
                outbound,
                running: HashMap::new(),
                finished,
                finished_tx,
            },
            rx,
        )
    }

    pub fn running(&mut self) -> usize {
        while let Ok(id) = self.finished.try_recv() {
            self.running.remove(&id);
        }
        self.running.len()
    }

    fn start(&mut self, start: JobStart) {
        self.running();
        if JobId::parse(&start.id).is_err() || self.running.contains_key(&start.id) {
            return;
        }
        let (stop_tx, stop_rx) = watch::channel(None);
        self.running.insert(start.id.clone(), stop_tx);
        let dir = self.jobs_dir.join(&start.id);
        let outbound = self.outbound.clone();
        let finished = self.finished_tx.clone();
        tokio::spawn(async move {
            let id = start.id.clone();
            let exit = run_job(start, dir, &outbound, stop_rx).await;
            if let Some(exit) = exit {
                let text = serde_json::to_string(&WorkerMessage::JobFinished {
                    id: id.clone(),
                    exit,
                })
                .unwrap_or_default();
                let _ = outbound.send(Message::Text(text.into())).await;
            }
            let _ = finished.send(id);
        });
    }

    /// Waits, up to `within`, for every job told to stop (by [`Events::lost`]) to be gone, so the
    /// worker does not exit while a job's process group still runs: exiting drops the job tasks
    /// mid-kill, and only the group leader would die with the worker.
    pub async fn wait_stopped(&mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.running() > 0 {
            match tokio::time::timeout_at(deadline, self.finished.recv()).await {
                Ok(Some(id)) => {
                    self.running.remove(&id);
                }
                Ok(None) | Err(_) => {
                    tracing::warn!(
                        jobs = self.running.len(),
                        "jobs did not stop in time; exiting anyway"
                    );
                    return;
                }
            }
        }
    }

    fn stop(&mut self, id: &str, why: Stop) {
        if let Some(stop) = self.running.get(id) {
            let _ = stop.send(Some(why));
        }
    }
}

impl Events for JobManager {
    fn message(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::JobStart(start) => {
                tracing::info!(job = %start.id, command = ?start.command.first(), "job started");
                self.start(start);
            }
            ServerMessage::JobCancel { id } => {
                tracing::info!(job = %id, "job cancelled");
                self.stop(&id, Stop::Cancel);
            }
            ServerMessage::Welcome(_) | ServerMessage::Reconnect { .. } => {}
        }
    }

    fn lost(&mut self) {
        self.running();
        for (id, stop) in &self.running {
            tracing::warn!(job = %id, "killing the job: the control channel is gone, so the server counts it as lost");
            let _ = stop.send(Some(Stop::Lost));
        }
    }
}

/// Runs one job to its end. `None` means the end is not worth reporting (the channel is gone).
async fn run_job(
    start: JobStart,
    dir: PathBuf,
    outbound: &mpsc::Sender<Message>,
    mut stop: watch::Receiver<Option<Stop>>,
) -> Option<JobExit> {
    let raw_id = JobId::parse(&start.id).ok()?.to_bytes();
    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
        return Some(JobExit::SpawnFailed {
            error: format!("cannot create the job directory `{}`: {e}", dir.display()),
        });
    }
    let mut child = match spawn(&start, &dir) {
        Ok(child) => child,
        Err(e) => {
            return Some(JobExit::SpawnFailed {
                error: format!("`{}`: {e}", start.command[0]),
            });
        }
    };
    let group = child.id().and_then(|pid| i32::try_from(pid).ok());
    let readers = [
        child
            .stdout
            .take()
            .map(|pipe| tokio::spawn(pump(pipe, frame::STDOUT, raw_id, outbound.clone()))),
        child
            .stderr
            .take()
            .map(|pipe| tokio::spawn(pump(pipe, frame::STDERR, raw_id, outbound.clone()))),
    ];
    let timeout = start.timeout_ms.map(Duration::from_millis);
    let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(u64::from(u32::MAX))));
    tokio::pin!(deadline);

    let (status, stopped) = tokio::select! {
        status = child.wait() => (status.ok(), None),
        () = &mut deadline, if timeout.is_some() => (None, Some(JobExit::TimedOut)),
        why = wait_for_stop(&mut stop) => (None, Some(match why { Stop::Cancel => JobExit::Cancelled, Stop::Lost => JobExit::Cancelled })),
    };
    let lost = *stop.borrow() == Some(Stop::Lost);
    let status = match status {
        Some(status) => Some(status),
        None => {
            kill_group(group, libc::SIGTERM);
            match tokio::time::timeout(KILL_GRACE, child.wait()).await {
                Ok(status) => status.ok(),
                Err(_) => {
                    kill_group(group, libc::SIGKILL);
                    child.wait().await.ok()
                }
            }
        }
    };
    // The command is done; give its pipes a moment, then make sure nothing of it lingers.
    for reader in readers.into_iter().flatten() {
        let abort = reader.abort_handle();
        if tokio::time::timeout(DRAIN_GRACE, reader).await.is_err() {
            kill_group(group, libc::SIGKILL);
            abort.abort();
        }
    }
    kill_group(group, libc::SIGKILL);
    if lost {
        return None;
    }
    if let Some(exit) = stopped {
        return Some(exit);
    }
    use std::os::unix::process::ExitStatusExt;
    Some(match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => JobExit::Exited { code },
            (None, Some(signal)) => JobExit::Signalled { signal },
            (None, None) => JobExit::Exited { code: -1 },
        },
        None => JobExit::SpawnFailed {
            error: "lost track of the process".into(),
        },
    })
}

async fn wait_for_stop(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    loop {
        if let Some(why) = *stop.borrow() {
            return why;
        }
        if stop.changed().await.is_err() {
            // The manager is gone: treat it as a lost channel.
            return Stop::Lost;
        }
    }
}

/// Credentials the worker (or the server, for the built-in worker) may have been given through
/// its environment. A job inherits the rest of the environment, never these: its output is
/// stored and shown, and it may run code the worker's operator did not write.
const CREDENTIAL_VARS: &[&str] = &[
    "MUSTER_AUTO_ENROLLMENT_KEY",
    "MUSTER_ENROLLMENT_TOKEN",
    "MUSTER_WORKER_API_KEY",
    "MUSTER_ADMIN_TOKEN",
    "MUSTER_DATABASE_URL",
];

fn spawn(start: &JobStart, dir: &std::path::Path) -> std::io::Result<Child> {
    let mut command = Command::new(&start.command[0]);
    for var in CREDENTIAL_VARS {
        command.env_remove(var);
    }
    command
        .args(&start.command[1..])
        .current_dir(dir)
        .envs(&start.env)
        .env("MUSTER_JOB_ID", &start.id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    die_with_parent(&mut command);
    command.spawn()
}

/// Asks the kernel to kill the job's main process if the worker dies (say, `kill -9`), so a
/// job never runs on unobserved after its worker is gone.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and calls only prctl, which is
    // async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Signals every process in the job's group.
#[allow(unsafe_code)]
fn kill_group(group: Option<i32>, signal: i32) {
    if let Some(pgid) = group.filter(|p| *p > 1) {
        // SAFETY: killpg has no memory-safety preconditions; a stale group id fails with ESRCH.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

/// Copies one pipe into output frames until EOF, waiting on the bounded queue.
async fn pump<R: tokio::io::AsyncRead + Unpin>(
    mut pipe: R,
    kind: u8,
    job: [u8; 8],
    outbound: mpsc::Sender<Message>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let message = Message::Binary(frame::encode(kind, job, &buf[..n]).into());
                if outbound.send(message).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
                        WorkerMessage::TicketSaved { .. } => {}
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn output_env_dir_and_exit_code_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (mut jobs, mut rx) = JobManager::new(dir.path().to_path_buf());
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
        let (mut jobs, mut rx) = JobManager::new(dir.path().to_path_buf());
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
        let (mut jobs, mut rx) = JobManager::new(dir.path().to_path_buf());
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
        let (mut jobs, mut rx) = JobManager::new(dir.path().to_path_buf());
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
}

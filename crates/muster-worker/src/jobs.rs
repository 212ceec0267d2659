//! Running jobs on the worker.
//!
//! Each job runs in its own directory under the state dir (deleted when the job ends), with stdin
//! closed. A real worker starts it through the job launcher (`muster __job-exec`, see
//! [`crate::confine`]): Landlock keeps the job away from the worker's credentials, it may run as
//! another user, and every process it starts, grandchildren and daemons included, ends with it,
//! also when the worker is killed with -9. A load generator running thousands of workers in one
//! process starts commands directly instead ([`JobLauncher::Unconfined`]).
//!
//! Its stdout and stderr are read in chunks and sent as binary frames through a bounded queue to
//! the control channel: when the network (or the server's disk) is slower than the command, the
//! queue fills, the readers wait, the pipes fill, and the command blocks on write. Nothing is
//! buffered without bound. A timeout or a cancel stops the job (TERM, then KILL after a grace
//! period).
//!
//! Losing the control channel does not stop a job: the worker keeps running it, its output waits
//! in the bounded queue (and then in the pipes: the command blocks on write rather than lose a
//! byte), and the next channel — to the same server after a restart, or to another replica —
//! starts with a report of the jobs the worker holds ([`WorkerMessage::Resume`]), so the server
//! takes them over. A job ends with the worker only when the worker itself stops.

mod process;
mod workspace;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use muster_core::job::JobId;
use muster_proto::control::{JobEnded, JobExit, JobStart, ServerMessage, WorkerMessage, frame};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::channel::Events;
use crate::confine::{JobUser, Protection};
pub(crate) use process::CREDENTIAL_VARS;
use process::JobProcess;

/// Bytes read from a pipe at a time (and so the largest output frame).
const CHUNK: usize = 32 * 1024;
/// Frames waiting for the channel, across all jobs, before readers wait.
pub const OUTBOUND_QUEUE: usize = 16;
/// How long a stopped job's processes have after SIGTERM before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the command exits, how long its pipes may stay open (held by leftover background
/// processes) before they are killed.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// Endings repeated in every report, in case the channel that carried them died unread.
const RECENT_ENDINGS: usize = 32;

/// How jobs are started.
#[derive(Debug, Clone)]
pub struct JobOptions {
    pub launcher: JobLauncher,
}

impl JobOptions {
    /// Commands run as the worker's own children, unconfined.
    pub fn unconfined() -> Self {
        Self {
            launcher: JobLauncher::Unconfined,
        }
    }
}

#[derive(Debug, Clone)]
pub enum JobLauncher {
    /// The command is the worker's own child, in its own process group, with the worker's
    /// rights; processes that leave the group survive the job. For load generators.
    Unconfined,
    /// Each job starts through `EXE __job-exec`.
    Confined(Launcher),
}

/// The job launcher and what it is told for every job.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `muster` binary: `/proc/self/exe`, which still names the running binary after a
    /// package upgrade replaced the file.
    pub exe: PathBuf,
    /// Landlock's protection, or `None` where Landlock is unavailable.
    pub protection: Option<Protection>,
    /// Run jobs as this user (the worker runs as root).
    pub user: Option<JobUser>,
    /// The long-lived launcher that forks one per job; `None`: `exe` is started per job.
    pub service: Option<Arc<crate::confine::LaunchService>>,
}

impl JobLauncher {
    fn user(&self) -> Option<&JobUser> {
        match self {
            Self::Unconfined => None,
            Self::Confined(launcher) => launcher.user.as_ref(),
        }
    }
}

/// Why a job is being stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancel,
    /// The worker is exiting.
    Exit,
}

pub struct JobManager {
    jobs_dir: PathBuf,
    options: Arc<JobOptions>,
    outbound: mpsc::Sender<Message>,
    running: HashMap<String, watch::Sender<Option<Stop>>>,
    /// Jobs started whose end has not gone out on a socket yet: what a report says is running.
    unreported: HashSet<String>,
    /// The latest endings that went out, repeated in reports.
    ended: VecDeque<JobEnded>,
    /// Frames a dead channel could not send, for the next one.
    unsent: Vec<Message>,
    finished: mpsc::UnboundedReceiver<String>,
    finished_tx: mpsc::UnboundedSender<String>,
}

impl JobManager {
    /// A manager and the receiving end of its outbound queue, which the channel drains. Job
    /// directories a killed worker left in `jobs_dir` are deleted.
    pub fn new(jobs_dir: PathBuf, options: JobOptions) -> (Self, mpsc::Receiver<Message>) {
        workspace::sweep(&jobs_dir);
        let (outbound, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (finished_tx, finished) = mpsc::unbounded_channel();
        (
            Self {
                jobs_dir,
                options: Arc::new(options),
                outbound,
                running: HashMap::new(),
                unreported: HashSet::new(),
                ended: VecDeque::new(),
                unsent: Vec::new(),
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
        if JobId::parse(&start.id).is_err()
            || self.running.contains_key(&start.id)
            || self.unreported.contains(&start.id)
        {
            return;
        }
        self.unreported.insert(start.id.clone());
        let (stop_tx, stop_rx) = watch::channel(None);
        self.running.insert(start.id.clone(), stop_tx);
        let dir = self.jobs_dir.join(&start.id);
        let options = Arc::clone(&self.options);
        let outbound = self.outbound.clone();
        let finished = self.finished_tx.clone();
        tokio::spawn(async move {
            let id = start.id.clone();
            let exit = run_job(start, dir, &options, &outbound, stop_rx).await;
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

    /// Stops every job: the worker is exiting for good (a shutdown, a permanent refusal).
    pub fn stop_all(&mut self) {
        self.running();
        for (id, stop) in &self.running {
            tracing::warn!(job = %id, "killing the job: the worker is stopping");
            let _ = stop.send(Some(Stop::Exit));
        }
    }

    /// Waits, up to `within`, for every job told to stop (by [`JobManager::stop_all`]) to be gone, so the
    /// worker does not exit while a job's processes still run: exiting drops the job tasks
    /// mid-kill.
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
                tracing::info!(job = %start.id, command = start.command.first().map_or("", String::as_str), "job started");
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
        if !self.unreported.is_empty() {
            tracing::info!(
                jobs = self.unreported.len(),
                "the control channel is gone; jobs keep running and are reported when it is back"
            );
        }
    }

    fn resume(&mut self) -> Vec<Message> {
        let mut running: Vec<String> = self.unreported.iter().cloned().collect();
        running.sort();
        let report = WorkerMessage::Resume {
            running,
            ended: self.ended.iter().cloned().collect(),
        };
        let mut first = Vec::with_capacity(1 + self.unsent.len());
        if let Ok(text) = serde_json::to_string(&report) {
            first.push(Message::Text(text.into()));
        }
        first.append(&mut self.unsent);
        first
    }

    fn sent(&mut self, message: &Message) {
        let Message::Text(text) = message else { return };
        if let Ok(WorkerMessage::JobFinished { id, exit }) =
            serde_json::from_str::<WorkerMessage>(text.as_str())
            && self.unreported.remove(&id)
        {
            if self.ended.len() == RECENT_ENDINGS {
                self.ended.pop_front();
            }
            self.ended.push_back(JobEnded { id, exit });
        }
    }

    fn unsent(&mut self, message: Message) {
        // A report is made afresh for each channel; anything else goes out again.
        if let Message::Text(text) = &message
            && matches!(
                serde_json::from_str::<WorkerMessage>(text.as_str()),
                Ok(WorkerMessage::Resume { .. })
            )
        {
            return;
        }
        self.unsent.push(message);
    }
}

/// Runs one job to its end, in a directory of its own that is deleted afterwards. `None` means
/// the end is not worth reporting (the worker is exiting).
async fn run_job(
    start: JobStart,
    dir: PathBuf,
    options: &JobOptions,
    outbound: &mpsc::Sender<Message>,
    stop: watch::Receiver<Option<Stop>>,
) -> Option<JobExit> {
    if let Err(e) = workspace::create(&dir, options.launcher.user()).await {
        return Some(JobExit::SpawnFailed {
            error: format!("cannot create the job directory `{}`: {e}", dir.display()),
        });
    }
    let exit = run_in(start, &dir, options, outbound, stop).await;
    workspace::remove(&dir).await;
    exit
}

async fn run_in(
    start: JobStart,
    dir: &std::path::Path,
    options: &JobOptions,
    outbound: &mpsc::Sender<Message>,
    mut stop: watch::Receiver<Option<Stop>>,
) -> Option<JobExit> {
    let raw_id = JobId::parse(&start.id).ok()?.to_bytes();
    if start.command.is_empty() {
        return Some(JobExit::SpawnFailed {
            error: "the job has no command".into(),
        });
    }
    let mut job = match JobProcess::spawn(&start, dir, &options.launcher).await {
        Ok(job) => job,
        Err(error) => return Some(JobExit::SpawnFailed { error }),
    };
    let (stdout, stderr) = job.take_pipes();
    let readers = [
        stdout.map(|pipe| tokio::spawn(pump(pipe, frame::STDOUT, raw_id, outbound.clone()))),
        stderr.map(|pipe| tokio::spawn(pump(pipe, frame::STDERR, raw_id, outbound.clone()))),
    ];
    let timeout = start.timeout_ms.map(Duration::from_millis);
    let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(u64::from(u32::MAX))));
    tokio::pin!(deadline);

    let (status, stopped) = tokio::select! {
        status = job.wait() => (status, None),
        () = &mut deadline, if timeout.is_some() => (None, Some(JobExit::TimedOut)),
        _ = wait_for_stop(&mut stop) => (None, Some(JobExit::Cancelled)),
    };
    let lost = *stop.borrow() == Some(Stop::Exit);
    let status = match status {
        Some(status) => Some(status),
        None => job.stop().await,
    };
    // The command is done; give its pipes a moment, then make sure nothing of it lingers.
    for reader in readers.into_iter().flatten() {
        let abort = reader.abort_handle();
        if tokio::time::timeout(DRAIN_GRACE, reader).await.is_err() {
            job.kill_leftovers();
            abort.abort();
        }
    }
    job.kill_leftovers();
    if lost {
        return None;
    }
    if let Some(exit) = stopped {
        return Some(exit);
    }
    Some(job.ending(status).await)
}

async fn wait_for_stop(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    loop {
        if let Some(why) = *stop.borrow() {
            return why;
        }
        if stop.changed().await.is_err() {
            // The manager is gone: the worker is exiting.
            return Stop::Exit;
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
mod tests;

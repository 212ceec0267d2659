//! One job's processes, as the worker sees them: started through the launcher (`muster
//! __job-exec`, see [`crate::confine`]) or, for load generators, directly.
//!
//! Through the launcher, the worker holds the launcher's control socket: it sends the job on it,
//! closes its sending side to stop the job (cancel, timeout, lost channel), and reads back how the
//! command ended once the launcher has ended every process of the job. Directly, the command is
//! the worker's own child in its own process group, stopped by signalling the group: what leaves
//! the group (a `setsid` daemon) survives, which is why real workers use the launcher.

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use muster_proto::control::{JobExit, JobStart};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::{JobLauncher, KILL_GRACE, Launcher};
use crate::confine::{self, LaunchSpec};

/// How long past its own grace period the launcher may take to end a job before the worker
/// kills it (a launcher that hangs is a bug; its job's processes would then outlive it).
const LAUNCHER_MARGIN: Duration = Duration::from_secs(3);

/// Credentials the worker (or the server, for the built-in worker) may have been given through
/// its environment. A job inherits the rest of the environment, never these: its output is
/// stored and shown, and it may run code the worker's operator did not write.
pub(crate) const CREDENTIAL_VARS: &[&str] = &[
    "MUSTER_AUTO_ENROLLMENT_KEY",
    "MUSTER_ENROLLMENT_TOKEN",
    "MUSTER_WORKER_API_KEY",
    "MUSTER_ADMIN_TOKEN",
    "MUSTER_DATABASE_URL",
];

/// A job's output pipe, as the worker reads it.
pub(super) type Pipe = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

pub(super) struct JobProcess {
    /// The worker's child: the command, or the launcher it started. `None` for a launcher the
    /// launch service forked (not the worker's child).
    child: Option<Child>,
    pipes: (Option<Pipe>, Option<Pipe>),
    how: How,
}

enum How {
    /// The command itself, leading its own process group.
    Group { group: Option<Pid> },
    /// The launcher, with the worker's end of its control socket.
    Launched {
        control: Option<OwnedWriteHalf>,
        report: JoinHandle<Option<JobExit>>,
        /// What the report said, once read (a launcher from the service is waited for this way).
        reported: Option<Option<JobExit>>,
        /// The launcher's pid, for one the service forked.
        forked: Option<Pid>,
    },
}

impl JobProcess {
    /// Starts the job in `dir`. The error is the reason, for a `SpawnFailed` ending.
    pub(super) async fn spawn(
        start: &JobStart,
        dir: &std::path::Path,
        launcher: &JobLauncher,
    ) -> Result<Self, String> {
        match launcher {
            JobLauncher::Unconfined => spawn_direct(start, dir),
            JobLauncher::Confined(launcher) => spawn_launcher(start, dir, launcher).await,
        }
    }

    pub(super) fn take_pipes(&mut self) -> (Option<Pipe>, Option<Pipe>) {
        (self.pipes.0.take(), self.pipes.1.take())
    }

    /// Waits for the process (the command, or the launcher) to exit. A launcher the service
    /// forked has ended when its control socket closes, after its report.
    pub(super) async fn wait(&mut self) -> Option<ExitStatus> {
        if let Some(child) = &mut self.child {
            return child.wait().await.ok();
        }
        if let How::Launched {
            report, reported, ..
        } = &mut self.how
            && reported.is_none()
        {
            *reported = Some(report.await.ok().flatten());
        }
        Some(ExitStatus::from_raw(0))
    }

    /// Ends the job early and waits for it: SIGTERM, a grace period, then SIGKILL.
    pub(super) async fn stop(&mut self) -> Option<ExitStatus> {
        match &mut self.how {
            How::Group { group } => {
                let group = *group;
                signal_group(group, Signal::SIGTERM);
                match tokio::time::timeout(KILL_GRACE, self.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        signal_group(group, Signal::SIGKILL);
                        self.wait().await
                    }
                }
            }
            How::Launched {
                control, forked, ..
            } => {
                let forked = *forked;
                // The launcher reads the closed stream as "stop", and does the rest.
                drop(control.take());
                match tokio::time::timeout(KILL_GRACE + LAUNCHER_MARGIN, self.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        tracing::warn!("the job launcher did not end the job in time; killing it");
                        match (&mut self.child, forked) {
                            (Some(child), _) => {
                                let _ = child.start_kill();
                            }
                            // Not reaped by anyone but the kernel once it ends: while its
                            // control socket is open it is alive, so the pid is still its own.
                            (None, Some(pid)) => {
                                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                            }
                            (None, None) => {}
                        }
                        self.wait().await
                    }
                }
            }
        }
    }

    /// Kills whatever of the job may still hold its output pipes open. Through the launcher
    /// nothing can: it ends every process of the job before it exits.
    pub(super) fn kill_leftovers(&self) {
        if let How::Group { group } = &self.how {
            signal_group(*group, Signal::SIGKILL);
        }
    }

    /// How the command ended, given the exit status of what the worker started.
    pub(super) async fn ending(self, status: Option<ExitStatus>) -> JobExit {
        match self.how {
            How::Group { .. } => match status {
                Some(status) => from_status(status),
                None => JobExit::SpawnFailed {
                    error: "lost track of the process".into(),
                },
            },
            How::Launched {
                report, reported, ..
            } => {
                let reported = match reported {
                    Some(reported) => reported,
                    None => tokio::time::timeout(Duration::from_secs(1), report)
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .flatten(),
                };
                reported.unwrap_or_else(|| JobExit::SpawnFailed {
                    error: format!(
                        "the job launcher ended without saying how the command did ({}); its complaint, if any, is in the job's output",
                        status.map_or_else(|| "unknown status".to_owned(), |s| s.to_string())
                    ),
                })
            }
        }
    }
}

fn from_status(status: ExitStatus) -> JobExit {
    match (status.code(), status.signal()) {
        (Some(code), _) => JobExit::Exited { code },
        (None, Some(signal)) => JobExit::Signalled { signal },
        (None, None) => JobExit::Exited { code: -1 },
    }
}

/// The parts of the command line both ways share: the job's environment, minus the worker's
/// credentials, and output pipes.
fn job_command(program: &std::ffi::OsStr, start: &JobStart) -> Command {
    let mut command = Command::new(program);
    for var in CREDENTIAL_VARS {
        command.env_remove(var);
    }
    command
        .envs(&start.env)
        .env("MUSTER_JOB_ID", &start.id)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    command
}

fn spawn_direct(start: &JobStart, dir: &std::path::Path) -> Result<JobProcess, String> {
    let mut command = job_command(start.command[0].as_ref(), start);
    command
        .args(&start.command[1..])
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    die_with_parent(&mut command);
    let child = command
        .spawn()
        .map_err(|e| format!("`{}`: {e}", start.command[0]))?;
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw);
    Ok(JobProcess::of_child(child, How::Group { group }))
}

impl JobProcess {
    fn of_child(mut child: Child, how: How) -> Self {
        let pipes = (
            child.stdout.take().map(|p| Box::new(p) as Pipe),
            child.stderr.take().map(|p| Box::new(p) as Pipe),
        );
        Self {
            child: Some(child),
            pipes,
            how,
        }
    }
}

async fn spawn_launcher(
    start: &JobStart,
    dir: &std::path::Path,
    launcher: &Launcher,
) -> Result<JobProcess, String> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| format!("cannot make the launcher's control socket: {e}"))?;
    let (child, pipes, forked) = match &launcher.service {
        Some(service) => match fork_from_service(service, start, theirs).await? {
            Ok((pid, pipes)) => (None, pipes, Some(pid)),
            Err(theirs) => {
                let child = exec_launcher(start, launcher, theirs)?;
                (Some(child), (None, None), None)
            }
        },
        None => (
            Some(exec_launcher(start, launcher, theirs)?),
            (None, None),
            None,
        ),
    };
    let spec = LaunchSpec {
        worker_pid: std::process::id(),
        command: start.command.clone(),
        dir: dir.to_path_buf(),
        protection: launcher.protection.clone(),
        user: launcher.user.clone(),
        kill_grace_ms: u64::try_from(KILL_GRACE.as_millis()).unwrap_or(u64::MAX),
    };
    let mut line = serde_json::to_vec(&spec).unwrap_or_default();
    line.push(b'\n');
    ours.set_nonblocking(true)
        .map_err(|e| format!("cannot set up the launcher's control socket: {e}"))?;
    let socket = tokio::net::UnixStream::from_std(ours)
        .map_err(|e| format!("cannot set up the launcher's control socket: {e}"))?;
    let (mut read, mut write) = socket.into_split();
    // A launcher that died before reading its job reports nothing; `ending` says so.
    let _ = write.write_all(&line).await;
    let report = tokio::spawn(async move {
        let mut text = String::new();
        read.read_to_string(&mut text).await.ok()?;
        serde_json::from_str(text.lines().last()?).ok()
    });
    let how = How::Launched {
        control: Some(write),
        report,
        reported: None,
        forked,
    };
    Ok(match child {
        Some(child) => JobProcess::of_child(child, how),
        None => JobProcess {
            child: None,
            pipes,
            how,
        },
    })
}

/// What the launch service did for a job: forked its launcher (its pid, the output pipes), or
/// not (the launcher's end of the control socket back, for the caller to start the launcher
/// itself). `Err`: whether it forked one is unknown, and the job fails to start.
type Forked = Result<(Pid, (Option<Pipe>, Option<Pipe>)), std::os::unix::net::UnixStream>;

/// Has the launch service fork the job's launcher, with fresh output pipes.
async fn fork_from_service(
    service: &std::sync::Arc<crate::confine::LaunchService>,
    start: &JobStart,
    theirs: std::os::unix::net::UnixStream,
) -> Result<Forked, String> {
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC);
    let (Ok((out_r, out_w)), Ok((err_r, err_w)), Ok(keep)) = (pipe(), pipe(), theirs.try_clone())
    else {
        return Ok(Err(theirs));
    };
    let mut env: Vec<(String, String)> = start
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push(("MUSTER_JOB_ID".into(), start.id.clone()));
    let service = std::sync::Arc::clone(service);
    let fds = [OwnedFd::from(theirs), out_w, err_w];
    let forked = tokio::task::spawn_blocking(move || service.launch(env, fds)).await;
    let pid = match forked {
        Ok(Ok(pid)) => pid,
        Ok(Err(crate::confine::service::LaunchError::NotForked(why))) => {
            tracing::warn!("the launch service failed ({why}); starting the job's launcher anew");
            return Ok(Err(keep));
        }
        Ok(Err(crate::confine::service::LaunchError::Unknown(why))) => {
            tracing::warn!(
                "the launch service failed ({why}); later jobs start their launcher anew"
            );
            return Err(format!("cannot start the job launcher: {why}"));
        }
        Err(e) => return Err(format!("cannot start the job launcher: {e}")),
    };
    let reader = |fd: OwnedFd| {
        tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
            .ok()
            .map(|r| Box::new(r) as Pipe)
    };
    Ok(Ok((
        Pid::from_raw(i32::try_from(pid).unwrap_or(0)),
        (reader(out_r), reader(err_r)),
    )))
}

/// Starts `muster __job-exec` for one job, its control socket on stdin.
fn exec_launcher(
    start: &JobStart,
    launcher: &Launcher,
    theirs: std::os::unix::net::UnixStream,
) -> Result<Child, String> {
    let mut command = job_command(launcher.exe.as_os_str(), start);
    // No kill_on_drop: killing the launcher outright would orphan the job's processes. If the
    // worker lets go of a job, its end of the socket closes, and the launcher ends the job.
    // The launcher's parent-death signal follows the thread that forks it: here a runtime
    // worker thread, which lives as long as the runtime (muster never uses `block_in_place`,
    // which would let such a thread end early).
    command
        .arg(confine::SUBCOMMAND)
        .current_dir("/")
        .stdin(Stdio::from(OwnedFd::from(theirs)));
    command.spawn().map_err(|e| {
        format!(
            "cannot start the job launcher `{} {}`: {e}",
            launcher.exe.display(),
            confine::SUBCOMMAND
        )
    })
}

/// Signals every process in the job's group.
fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(group) = group.filter(|p| p.as_raw() > 1) {
        // A group that is gone already fails with ESRCH: nothing to do.
        let _ = killpg(group, signal);
    }
}

/// Asks the kernel to kill the command if the worker dies (say, `kill -9`), so a job never runs
/// on unobserved after its worker is gone. (The launcher sets this up for itself.)
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and calls only prctl, which is
    // async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            Ok(())
        });
    }
}

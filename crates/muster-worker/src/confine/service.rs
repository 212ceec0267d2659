//! The launch service: one long-lived `muster __job-exec --serve` per worker that forks a
//! launcher for each job, instead of the worker executing the `muster` binary anew per job.
//!
//! Executing `muster` costs milliseconds (mapping and relocating a large binary, then parsing the
//! command line) before the launcher does anything; that was most of a job's start-up. The
//! service pays it once: it is started when the worker starts, single-threaded and outside the
//! sandbox like every launcher, and for each job it receives, on a `SOCK_SEQPACKET` socket (its
//! stdin), the job's environment and three descriptors — the launcher's control socket, and the
//! write ends of the job's stdout and stderr pipes. It forks; the child puts those on its stdin,
//! stdout and stderr, takes the job's environment, and is from then on exactly the launcher
//! `muster __job-exec` would have been ([`super::launcher`]): a subreaper that confines the
//! command and ends every process of the job. Only the fork is new, and the service is
//! single-threaded, so the child is a faithful copy.
//!
//! It dies with the worker (a parent-death SIGKILL, and each request checks that its parent is
//! still the worker), and its launchers then get their own parent-death signal; they also see
//! the worker's end of their control socket close, as before. Where the service cannot be
//! started or has gone, the worker starts `muster __job-exec` per job as before.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SigHandler, Signal};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use serde::{Deserialize, Serialize};

/// The largest request (the job's environment, as JSON) the service takes.
const MAX_REQUEST: usize = 128 * 1024;
/// How long the worker waits for the service to say it forked: a fork takes a millisecond; a
/// service that stopped answering must not hold every later job up.
const ANSWER_WITHIN_S: i64 = 10;

/// Why a job's launcher was not forked by the service.
#[derive(Debug)]
pub enum LaunchError {
    /// No launcher was forked: the worker may start one itself.
    NotForked(String),
    /// The service did not say whether it forked one: no second launcher may be started on the
    /// same control socket, so the job fails to start. The service is not asked again.
    Unknown(String),
}

/// One job for the service to fork a launcher for. The descriptors travel beside it.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    /// The service's parent must still be this process: the worker.
    worker_pid: u32,
    /// Set in the launcher's environment (and so the command's): the job's own variables and
    /// `MUSTER_JOB_ID`.
    env: Vec<(String, String)>,
}

/// The answer: the forked launcher's pid, or why there is none.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Forked(u32),
    Failed(String),
}

/// The worker's handle on its launch service.
pub struct LaunchService {
    /// The worker's end of the service's socket. Requests are one at a time.
    socket: Mutex<OwnedFd>,
    /// Set once the service failed to answer: from then on jobs start the launcher anew.
    broken: AtomicBool,
    /// Killed when the worker lets go of the service.
    _process: tokio::process::Child,
}

impl std::fmt::Debug for LaunchService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchService").finish_non_exhaustive()
    }
}

impl LaunchService {
    /// Starts `exe __job-exec --serve` with the environment jobs inherit (`env_remove`: the
    /// worker's credentials). `None` if it cannot be started: jobs then start the launcher
    /// per job.
    pub fn start(exe: &Path, env_remove: &[&str]) -> Option<Self> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .ok()?;
        nix::sys::socket::setsockopt(
            &ours,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(ANSWER_WITHIN_S, 0),
        )
        .ok()?;
        let mut command = tokio::process::Command::new(exe);
        command
            .arg(super::SUBCOMMAND)
            .arg("--serve")
            .current_dir("/")
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .kill_on_drop(true);
        for var in env_remove {
            command.env_remove(var);
        }
        // Its parent-death signal follows the thread that forks it: a runtime thread, which
        // lives as long as the runtime (as for the per-job launcher).
        let process = command.spawn().ok()?;
        Some(Self {
            socket: Mutex::new(ours),
            broken: AtomicBool::new(false),
            _process: process,
        })
    }

    /// Has the service fork a launcher for a job, handing it `fds` (its control socket, the
    /// write ends of stdout and stderr) and `env`. Blocking (a send and a short wait for the
    /// fork): call it off the runtime. Returns the launcher's pid.
    pub fn launch(
        &self,
        env: Vec<(String, String)>,
        fds: [OwnedFd; 3],
    ) -> Result<u32, LaunchError> {
        let request = serde_json::to_vec(&Request {
            worker_pid: std::process::id(),
            env,
        })
        .map_err(|e| LaunchError::NotForked(e.to_string()))?;
        if request.len() > MAX_REQUEST {
            return Err(LaunchError::NotForked(
                "the job's environment is too large for the launch service".into(),
            ));
        }
        let socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        if self.broken.load(Ordering::SeqCst) {
            return Err(LaunchError::NotForked(
                "the launch service stopped answering earlier".into(),
            ));
        }
        let lost = |why: String| {
            self.broken.store(true, Ordering::SeqCst);
            LaunchError::Unknown(why)
        };
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        sendmsg::<()>(
            socket.as_raw_fd(),
            &[IoSlice::new(&request)],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| {
            // Nothing was delivered: nothing was forked.
            self.broken.store(true, Ordering::SeqCst);
            LaunchError::NotForked(format!("the launch service is gone ({e})"))
        })?;
        // Ours are closed now: the launcher holds its own copies.
        drop(fds);
        let mut buf = [0u8; 1024];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let got = recvmsg::<()>(socket.as_raw_fd(), &mut iov, None, MsgFlags::empty())
            .map_err(|e| lost(format!("the launch service did not answer ({e})")))?
            .bytes;
        if got == 0 {
            return Err(lost("the launch service is gone".into()));
        }
        match serde_json::from_slice(&buf[..got]) {
            Ok(Reply::Forked(pid)) => Ok(pid),
            Ok(Reply::Failed(why)) => Err(LaunchError::NotForked(why)),
            Err(e) => Err(lost(format!("the launch service answered nonsense ({e})"))),
        }
    }
}

/// `muster __job-exec --serve`: forks a launcher per request until the worker closes the socket
/// (or dies). Returns the exit code.
pub fn serve() -> u8 {
    // Dies with the worker; its launchers then get their own parent-death signal.
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() {
        return 1;
    }
    // Launchers are reaped by the kernel: the service never waits for them.
    // SAFETY: single-threaded, before anything else; SIG_IGN installs no handler.
    #[allow(unsafe_code)]
    let ignored = unsafe { nix::sys::signal::signal(Signal::SIGCHLD, SigHandler::SigIgn) };
    if ignored.is_err() {
        return 1;
    }
    let socket = 0;
    let mut buf = vec![0u8; MAX_REQUEST];
    loop {
        let mut space = nix::cmsg_space!([RawFd; 3]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let (bytes, fds) = match recvmsg::<()>(
            socket,
            &mut iov,
            Some(space.as_mut_slice()),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for cmsg in cmsgs {
                        if let ControlMessageOwned::ScmRights(received) = cmsg {
                            for fd in received {
                                // SAFETY: the kernel just gave us this descriptor; nothing
                                // else owns it.
                                #[allow(unsafe_code)]
                                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                                fds.push(fd);
                            }
                        }
                    }
                }
                (msg.bytes, fds)
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 1,
        };
        if bytes == 0 {
            // The worker closed its end: it is stopping.
            return 0;
        }
        let reply = match (
            serde_json::from_slice::<Request>(&buf[..bytes]),
            <[OwnedFd; 3]>::try_from(fds),
        ) {
            (Ok(request), Ok(fds)) => {
                if nix::unistd::getppid().as_raw() != request.worker_pid as i32 {
                    // The worker is gone: nobody would ever stop what we start.
                    return 1;
                }
                fork_launcher(request.env, fds)
            }
            _ => Reply::Failed("the launch service got a malformed request".into()),
        };
        let answer = serde_json::to_vec(&reply).unwrap_or_default();
        if sendmsg::<()>(
            socket,
            &[IoSlice::new(&answer)],
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .is_err()
        {
            return 1;
        }
    }
}

/// Forks the launcher for one job. In the child this never returns.
fn fork_launcher(env: Vec<(String, String)>, fds: [OwnedFd; 3]) -> Reply {
    let service = std::process::id();
    // SAFETY: the service is single-threaded, so the child is a faithful copy with no lock held
    // by another thread; it goes on as a launcher, which is itself single-threaded.
    #[allow(unsafe_code)]
    let forked = unsafe { nix::unistd::fork() };
    match forked {
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(fds);
            Reply::Forked(u32::try_from(child.as_raw()).unwrap_or(0))
        }
        Ok(nix::unistd::ForkResult::Child) => {
            let code = match become_launcher(env, fds) {
                Ok(()) => super::launcher::run(Some(service)),
                Err(e) => {
                    eprintln!("muster: the job launcher failed: {e}");
                    127
                }
            };
            std::process::exit(i32::from(code))
        }
        Err(e) => Reply::Failed(format!("cannot fork a job launcher: {e}")),
    }
}

/// In the forked child: what `muster __job-exec` would have started with.
fn become_launcher(env: Vec<(String, String)>, fds: [OwnedFd; 3]) -> std::io::Result<()> {
    // SAFETY: restores the default disposition (the launcher waits for its children itself).
    #[allow(unsafe_code)]
    unsafe {
        nix::sys::signal::signal(Signal::SIGCHLD, SigHandler::SigDfl)?;
    }
    // Its own process group, as the worker starts a launcher.
    nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))?;
    // stdin: the control socket (this replaces the service's socket); stdout, stderr: the pipes.
    let [control, stdout, stderr] = fds;
    nix::unistd::dup2_stdin(&control)?;
    nix::unistd::dup2_stdout(&stdout)?;
    nix::unistd::dup2_stderr(&stderr)?;
    drop((control, stdout, stderr));
    for (key, value) in env {
        // SAFETY: this process is single-threaded: nothing reads the environment meanwhile.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var(key, value);
        }
    }
    Ok(())
}

//! The job launcher: `muster __job-exec`, the process between the worker and each job's
//! command.
//!
//! The worker starts it with the job's environment and output pipes, and a Unix socket as its
//! stdin: the control socket. The launcher reads the job ([`LaunchSpec`]) from it, arranges to
//! learn of the worker's death (`PR_SET_PDEATHSIG`, and the socket closing), becomes a child
//! subreaper, and spawns the command in its own process group: confined by Landlock, as the job
//! user if there is one, in the job's directory, with stdin on `/dev/null`. Then it waits. When
//! the command exits, or the worker closes its end of the socket (cancel, timeout, lost channel)
//! or dies, it ends every remaining descendant ([`super::reaper`]), writes how the command ended (a
//! [`JobExit`] as one JSON line) to the socket, and exits.
//!
//! The launcher itself stays outside the sandbox, so a confined job can neither signal nor trace
//! it. It runs single-threaded and before any async runtime (`muster` dispatches to it first).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use muster_proto::control::JobExit;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{Gid, Pid, Uid};

use super::reaper::Children;
use super::sandbox;
use super::spec::{JobUser, LaunchSpec};

/// The launcher's exit code when the command could not be started (as a shell's).
const SPAWN_FAILED: u8 = 127;
/// Signals that tell the launcher to end the job: SIGTERM is also the parent-death signal.
const STOP_SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

/// Runs one job (the spec arrives on stdin) and returns the launcher's exit code: the command's
/// own code, 128 + the signal that killed it, or 127 if it never started.
pub fn main() -> u8 {
    run(None)
}

/// [`main`], in a launcher the launch service forked ([`super::service`]): its parent is the
/// service, `service_pid`, not the worker.
pub(super) fn run(service_pid: Option<u32>) -> u8 {
    match launch(service_pid) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("muster: the job launcher failed: {message}");
            SPAWN_FAILED
        }
    }
}

fn launch(service_pid: Option<u32>) -> Result<u8, String> {
    // Blocked before anything can arrive, so no stop request is lost: they are read from the
    // signalfd in the loop below.
    let mut mask = SigSet::empty();
    for signal in STOP_SIGNALS {
        mask.add(signal);
    }
    mask.add(Signal::SIGCHLD);
    mask.thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("cannot open a signalfd: {e}"))?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)
        .map_err(|e| format!("cannot set the parent-death signal: {e}"))?;

    let control = control_socket()?;
    let spec = read_spec(&control)?;
    // The worker may have died before the parent-death signal was set: then nobody would ever
    // tell us to stop, so run nothing. (A forked launcher's parent is the launch service, which
    // dies with the worker.)
    let parent = service_pid.unwrap_or(spec.worker_pid);
    if nix::unistd::getppid().as_raw() != parent as i32 {
        return Err("the worker is gone".into());
    }
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("cannot become a child subreaper: {e}"))?;

    let main = match spawn(&spec) {
        Ok(pid) => pid,
        Err(error) => {
            let program = spec.command.first().map(String::as_str).unwrap_or("");
            report(
                &control,
                &JobExit::SpawnFailed {
                    error: format!("`{program}`: {error}"),
                },
            );
            return Ok(SPAWN_FAILED);
        }
    };
    let mut children = Children::new(main);
    wait_for_end(&mut children, &signals, &control);
    children.end_all(Duration::from_millis(spec.kill_grace_ms), &mut |within| {
        wait_signals(&signals, None, within);
    });
    let exit = children.ended().cloned().unwrap_or(JobExit::SpawnFailed {
        error: "the launcher lost track of the command".into(),
    });
    report(&control, &exit);
    Ok(match exit {
        JobExit::Exited { code } => u8::try_from(code).unwrap_or(1),
        JobExit::Signalled { signal } => u8::try_from(128 + signal).unwrap_or(1),
        _ => SPAWN_FAILED,
    })
}

/// The control socket: the launcher's stdin.
fn control_socket() -> Result<UnixStream, String> {
    let fd: OwnedFd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("no control socket on stdin: {e}"))?;
    Ok(UnixStream::from(fd))
}

fn read_spec(control: &UnixStream) -> Result<LaunchSpec, String> {
    let mut line = String::new();
    BufReader::new(control)
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the job: {e}"))?;
    serde_json::from_str(&line).map_err(|e| format!("cannot read the job: {e}"))
}

/// Writes how the command ended, for the worker. A worker that is gone does not hear it.
fn report(mut control: &UnixStream, exit: &JobExit) {
    let mut line = serde_json::to_vec(exit).unwrap_or_default();
    line.push(b'\n');
    let _ = control.write_all(&line);
}

/// Waits until the command has exited, or the job must stop: a stop signal (the worker's
/// death among them) or the worker closing its end of the control socket.
fn wait_for_end(children: &mut Children, signals: &SignalFd, mut control: &UnixStream) {
    loop {
        if !children.reap() || children.ended().is_some() {
            return;
        }
        let (stop, control_ready) = wait_signals(signals, Some(control), Duration::MAX);
        if stop {
            return;
        }
        if control_ready {
            let mut buf = [0u8; 64];
            match control.read(&mut buf) {
                // The worker asks for nothing more than an end: any end of its stream is one.
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// Waits up to `within` for a signal (or for `control` to be readable). Returns whether a stop
/// signal came, and whether the control socket is readable.
fn wait_signals(
    signals: &SignalFd,
    control: Option<&UnixStream>,
    within: Duration,
) -> (bool, bool) {
    let timeout = if within == Duration::MAX {
        PollTimeout::NONE
    } else {
        PollTimeout::try_from(within).unwrap_or(PollTimeout::MAX)
    };
    let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
    if let Some(control) = control {
        fds.push(PollFd::new(control.as_fd(), PollFlags::POLLIN));
    }
    if poll(&mut fds, timeout).is_err() {
        return (false, false);
    }
    let control_ready = fds
        .get(1)
        .and_then(PollFd::revents)
        .is_some_and(|r| !r.is_empty());
    let mut stop = false;
    while let Ok(Some(info)) = signals.read_signal() {
        let number = i32::try_from(info.ssi_signo).unwrap_or(0);
        stop |= STOP_SIGNALS.iter().any(|s| *s as i32 == number);
    }
    (stop, control_ready)
}

/// Starts the command: in the job's directory, in a process group of its own, stdin on
/// `/dev/null`, stdout and stderr the launcher's own (the job's pipes); then, between fork and
/// exec, as the job user and under Landlock.
fn spawn(spec: &LaunchSpec) -> Result<Pid, String> {
    let (program, args) = spec
        .command
        .split_first()
        .ok_or_else(|| "the job has no command".to_owned())?;
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(&spec.dir)
        .stdin(Stdio::null())
        .process_group(0);
    if let Some(user) = &spec.user {
        command
            .env("HOME", &user.home)
            .env("USER", &user.name)
            .env("LOGNAME", &user.name);
    }
    let ruleset = spec
        .protection
        .as_ref()
        .map(|p| sandbox::ruleset(&sandbox::job_rules(&p.protected, &p.writable, &spec.dir)))
        .transpose()?;
    let user = spec.user.clone();
    let mut ruleset = ruleset;
    let as_root = user
        .as_ref()
        .map_or_else(|| nix::unistd::geteuid().is_root(), |u| u.uid == 0);
    // SAFETY: the closure runs in the forked child before exec. The launcher is single-threaded
    // (it runs before any runtime or thread is started), so the child is a faithful copy with no
    // lock held by another thread, and what the closure does (unblock signals, set groups and
    // ids, capget and capset, prctl, and the landlock_restrict_self system call) is safe there. std offers no
    // safe way to act between fork and exec; the user switch needs supplementary groups (not in
    // stable std) and must come after the chdir into the job's directory, which the job user may
    // not be able to reach by its path.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            // The launcher blocks the signals it reads from its signalfd; the mask is inherited
            // through exec, and the command must start with none blocked.
            SigSet::all().thread_unblock()?;
            if let Some(user) = &user {
                become_user(user)?;
            }
            if as_root {
                drop_capabilities()?;
            }
            if let Some(ruleset) = ruleset.take() {
                sandbox::apply(ruleset)?;
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|e| e.to_string())?;
    let pid = i32::try_from(child.id()).map_err(|_| "pid out of range".to_owned())?;
    // The child is reaped by `Children`, never through the handle.
    drop(child);
    Ok(Pid::from_raw(pid))
}

/// Drops root for the job user: supplementary groups, then group, then user.
fn become_user(user: &JobUser) -> std::io::Result<()> {
    let groups: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups)?;
    nix::unistd::setgid(Gid::from_raw(user.gid))?;
    nix::unistd::setuid(Uid::from_raw(user.uid))?;
    Ok(())
}

/// Capabilities a job running as root does not get: each would let it around the sandbox. With
/// `CAP_SYS_ADMIN` or `CAP_PERFMON` a process reads any other's `/proc/PID/environ` and memory
/// map despite Landlock (Linux lets performance monitors do so); the others load kernel code, do
/// raw I/O, attach BPF programs, trace, open files by handle, or make device nodes. Root keeps
/// the rest; running jobs as another user (`--job-user`) is the stronger boundary.
const ROOT_JOB_DROPS: [rustix::thread::CapabilitySet; 8] = [
    rustix::thread::CapabilitySet::SYS_ADMIN,
    rustix::thread::CapabilitySet::PERFMON,
    rustix::thread::CapabilitySet::SYS_PTRACE,
    rustix::thread::CapabilitySet::SYS_MODULE,
    rustix::thread::CapabilitySet::SYS_RAWIO,
    rustix::thread::CapabilitySet::BPF,
    rustix::thread::CapabilitySet::DAC_READ_SEARCH,
    rustix::thread::CapabilitySet::MKNOD,
];

/// Removes [`ROOT_JOB_DROPS`] from the bounding set (so the exec cannot grant them back) and
/// from the current sets.
fn drop_capabilities() -> std::io::Result<()> {
    let mut all = rustix::thread::CapabilitySet::empty();
    for cap in ROOT_JOB_DROPS {
        rustix::thread::remove_capability_from_bounding_set(cap)?;
        all |= cap;
    }
    let mut sets = rustix::thread::capabilities(None)?;
    sets.effective &= !all;
    sets.permitted &= !all;
    sets.inheritable &= !all;
    rustix::thread::set_capabilities(None, sets)?;
    Ok(())
}

/// The `--probe` mode: confine this process as a job would be and print the result, the value
/// of the worker's confinement header.
pub fn probe() -> u8 {
    println!("{}", sandbox::probe());
    0
}

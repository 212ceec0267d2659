//! Ending every process a job started.
//!
//! The launcher is a child subreaper, so a descendant whose parent dies is re-parented to the
//! launcher, never to init: double-forked daemons and `setsid` included. To end a job it signals
//! its direct children and the process groups they lead, reaps, and goes round again until it
//! has no child left (killing a parent hands its children to the launcher, to be signalled in the
//! next round).
//!
//! Only direct children are signalled by pid: a child stays ours, and its pid cannot be reused,
//! until we reap it. Deeper descendants are reached through the process group their ancestor
//! leads (the command's own group, at least) or, once their parent dies, as our children.

use std::time::{Duration, Instant};

use muster_proto::control::JobExit;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Between KILL rounds: long enough for the kernel to deliver, short enough not to matter.
const KILL_ROUND: Duration = Duration::from_millis(50);

/// The launcher's children: the job's command and whatever it left behind.
pub struct Children {
    main: Pid,
    ended: Option<JobExit>,
}

impl Children {
    pub fn new(main: Pid) -> Self {
        Self { main, ended: None }
    }

    /// How the command itself ended, once it has.
    pub fn ended(&self) -> Option<&JobExit> {
        self.ended.as_ref()
    }

    /// Reaps every child that has ended, noting how the command did. Returns whether any child
    /// is left.
    pub fn reap(&mut self) -> bool {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return true,
                Ok(WaitStatus::Exited(pid, code)) if pid == self.main => {
                    self.ended = Some(JobExit::Exited { code });
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == self.main => {
                    self.ended = Some(JobExit::Signalled {
                        signal: signal as i32,
                    });
                }
                Ok(_) => {}
                Err(Errno::EINTR) => {}
                // ECHILD: nothing left to wait for.
                Err(_) => return false,
            }
        }
    }

    /// Ends every remaining process: SIGTERM (and SIGCONT, so a stopped process gets to act on
    /// it), up to `grace` for them to go, then SIGKILL round after round until no child is left.
    /// `wait` blocks until a child may have changed state, or the given time has passed.
    pub fn end_all(&mut self, grace: Duration, wait: &mut dyn FnMut(Duration)) {
        if !self.reap() {
            return;
        }
        let me = nix::unistd::getpid();
        signal_children(me, Signal::SIGTERM);
        signal_children(me, Signal::SIGCONT);
        let deadline = Instant::now() + grace;
        let mut termed = children_of(me);
        while self.reap() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Children adopted during the grace period (their parent just died) get their
            // SIGTERM too.
            let adopted: Vec<Child> = children_of(me)
                .into_iter()
                .filter(|c| !termed.contains(c))
                .collect();
            for child in &adopted {
                child.signal(Signal::SIGTERM);
            }
            termed.extend(adopted);
            wait((deadline - now).min(KILL_ROUND * 4));
        }
        while self.reap() {
            signal_children(me, Signal::SIGKILL);
            wait(KILL_ROUND);
        }
    }
}

/// A direct child of the launcher, and the process group it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Child {
    pid: Pid,
    group: Pid,
}

impl Child {
    fn signal(self, signal: Signal) {
        // Gone already (a zombie still takes signals without complaint): nothing to do.
        let _ = kill(self.pid, signal);
        // The group it leads cannot be reused while it lives, so signalling it is safe.
        if self.group == self.pid {
            let _ = killpg(self.group, signal);
        }
    }
}

fn signal_children(me: Pid, signal: Signal) {
    for child in children_of(me) {
        child.signal(signal);
    }
}

/// The direct children of `parent`, from `/proc`.
fn children_of(parent: Pid) -> Vec<Child> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (ppid, group) = parent_and_group(&stat)?;
            (ppid == parent.as_raw()).then(|| Child {
                pid: Pid::from_raw(pid),
                group: Pid::from_raw(group),
            })
        })
        .collect()
}

/// The parent pid and process group in a `/proc/PID/stat` line. The command name (in
/// parentheses) may itself hold spaces and parentheses, so fields are counted after the last `)`.
fn parent_and_group(stat: &str) -> Option<(i32, i32)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(1);
    let ppid = fields.next()?.parse().ok()?;
    let group = fields.next()?.parse().ok()?;
    Some((ppid, group))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_after_the_command_name() {
        let line = "4242 (we ird) (name)) S 17 4242 4242 0 -1 4194560 100 0 0 0";
        assert_eq!(parent_and_group(line), Some((17, 4242)));
        assert_eq!(parent_and_group("garbage"), None);
    }

    #[test]
    fn this_process_is_the_parent_of_what_it_spawns() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = nix::unistd::getpid();
        let pid = Pid::from_raw(child.id() as i32);
        assert!(children_of(me).iter().any(|c| c.pid == pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!children_of(me).iter().any(|c| c.pid == pid));
    }
}

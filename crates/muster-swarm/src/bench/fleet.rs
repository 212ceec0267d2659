//! Swarm processes started by the benchmark, and what their events say.
//!
//! Each swarm writes JSON lines on stdout; one reader task per process folds them into a
//! [`Tracker`]: who is connected, when each worker last got its welcome, the close frame it got,
//! whether it gave up, and why attempts failed.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use muster_proto::control::CloseCode;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, ChildStdin, Command};

use crate::events::Event;

/// What one worker has been through.
#[derive(Debug, Default, Clone)]
pub struct Rec {
    pub connected: bool,
    pub last_welcome: Option<u64>,
    /// The server that welcomed it last, as an index into [`State::servers`] (only when its
    /// swarm was given several servers).
    pub server: Option<u8>,
    /// Close code and time of the last close frame.
    pub close_frame: Option<(CloseCode, u64)>,
    /// Exit code, time and reason, if the worker stopped for good.
    pub gave_up: Option<(u8, u64, String)>,
}

#[derive(Debug, Default)]
pub struct State {
    pub workers: HashMap<String, Rec>,
    pub connected: usize,
    pub gave_up: usize,
    /// Why attempts failed, by reason, to say what limited a run.
    pub retry_reasons: HashMap<String, usize>,
    /// The servers named in welcomes, in the order first seen.
    pub servers: Vec<String>,
}

impl State {
    /// The index of `url` in [`State::servers`], if a worker was welcomed there.
    pub fn server_index(&self, url: &str) -> Option<u8> {
        let i = self.servers.iter().position(|s| s == url)?;
        u8::try_from(i).ok()
    }

    fn intern_server(&mut self, url: String) -> Option<u8> {
        if let Some(i) = self.server_index(&url) {
            return Some(i);
        }
        self.servers.push(url);
        u8::try_from(self.servers.len() - 1).ok()
    }
}

#[derive(Default)]
pub struct Tracker {
    state: Mutex<State>,
}

impl Tracker {
    pub fn apply(&self, event: Event) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Welcome { w, t, url } => {
                let server = url.and_then(|u| s.intern_server(u));
                let rec = s.workers.entry(w).or_default();
                rec.last_welcome = Some(t);
                rec.server = server;
                let newly = !rec.connected;
                rec.connected = true;
                if newly {
                    s.connected += 1;
                }
            }
            Event::Closed { w, .. } => {
                let rec = s.workers.entry(w).or_default();
                let was = rec.connected;
                rec.connected = false;
                if was {
                    s.connected -= 1;
                }
            }
            Event::CloseFrame { w, t, code, .. } => {
                s.workers.entry(w).or_default().close_frame = Some((CloseCode::from(code), t));
            }
            Event::GaveUp { w, t, exit, reason } => {
                s.workers.entry(w).or_default().gave_up = Some((exit, t, reason));
                s.gave_up += 1;
            }
            Event::Retry { reason, .. } => {
                let key: String = reason.chars().take(100).collect();
                *s.retry_reasons.entry(key).or_default() += 1;
            }
            Event::Enrolled { .. } | Event::Connected { .. } | Event::Status { .. } => {}
        }
    }

    /// Reads the state under the lock.
    pub fn with<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&s)
    }

    /// Waits until `count` reaches `target`, printing progress to stderr every two seconds.
    /// Returns the last count and whether the target was reached in time.
    pub async fn wait_for(
        &self,
        label: &str,
        target: usize,
        timeout: Duration,
        count: impl Fn(&State) -> usize,
    ) -> (usize, bool) {
        let start = Instant::now();
        let mut last_print = Instant::now();
        loop {
            let n = self.with(&count);
            if n >= target {
                eprintln!(
                    "  {label} {n}/{target} ({:.1} s)",
                    start.elapsed().as_secs_f64()
                );
                return (n, true);
            }
            if start.elapsed() > timeout {
                eprintln!(
                    "  {label} {n}/{target}: gave up waiting after {} s",
                    timeout.as_secs()
                );
                return (n, false);
            }
            if last_print.elapsed() > Duration::from_secs(2) {
                let (gave_up, top) = self.with(|s| (s.gave_up, top_reasons(s, 1)));
                let why = top
                    .first()
                    .map(|(r, c)| format!("; most retried: {r} ({c}x)"))
                    .unwrap_or_default();
                eprintln!(
                    "  {label} {n}/{target} ({:.0} s, {gave_up} gave up{why})",
                    start.elapsed().as_secs_f64()
                );
                last_print = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The most frequent retry reasons.
pub fn top_reasons(s: &State, n: usize) -> Vec<(String, usize)> {
    let mut all: Vec<_> = s
        .retry_reasons
        .iter()
        .map(|(r, c)| (r.clone(), *c))
        .collect();
    all.sort_by_key(|b| std::cmp::Reverse(b.1));
    all.truncate(n);
    all
}

/// The most frequent retry reasons since `before` (an earlier copy of
/// [`State::retry_reasons`]), as `COUNTx reason`: what a window such as a failover ran into.
pub fn reasons_since(s: &State, before: &HashMap<String, usize>, n: usize) -> Vec<String> {
    let mut all: Vec<(String, usize)> = s
        .retry_reasons
        .iter()
        .map(|(r, c)| (r.clone(), c - before.get(r).copied().unwrap_or(0)))
        .filter(|(_, c)| *c > 0)
        .collect();
    all.sort_by_key(|b| std::cmp::Reverse(b.1));
    all.into_iter()
        .take(n)
        .map(|(r, c)| format!("{c}x {r}"))
        .collect()
}

/// Where a swarm connects.
pub enum Target<'a> {
    DataDir(&'a Path),
    Url {
        url: &'a str,
        fingerprint: Option<&'a str>,
    },
}

/// Several swarm processes sharing one credentials file.
pub struct Fleet {
    children: Vec<(Child, Option<ChildStdin>)>,
    pub tracker: Arc<Tracker>,
}

impl Fleet {
    /// No process yet; every process spawned reports to `tracker` (which several fleets may
    /// share).
    pub fn new(tracker: Arc<Tracker>) -> Self {
        Self {
            children: Vec::new(),
            tracker,
        }
    }

    /// `processes` swarm processes sharing the credentials in `creds`, with a tracker of their
    /// own.
    pub fn start(
        swarm_bin: &Path,
        creds: &Path,
        target: Target<'_>,
        processes: usize,
        log_dir: &Path,
        label: &str,
        extra_args: &[String],
    ) -> anyhow::Result<Self> {
        let mut fleet = Self::new(Arc::default());
        for index in 0..processes {
            let log = log_dir.join(format!("swarm-{label}-{index}.log"));
            fleet.spawn(
                swarm_bin,
                creds,
                &target,
                (index, processes),
                &log,
                extra_args,
            )?;
        }
        Ok(fleet)
    }

    /// One more swarm process: share `index` of `of` of the credentials in `creds`.
    pub fn spawn(
        &mut self,
        swarm_bin: &Path,
        creds: &Path,
        target: &Target<'_>,
        (index, of): (usize, usize),
        log: &Path,
        extra_args: &[String],
    ) -> anyhow::Result<()> {
        let mut command = Command::new(swarm_bin);
        command
            .arg("--creds")
            .arg(creds)
            .arg("--index")
            .arg(index.to_string())
            .arg("--of")
            .arg(of.to_string())
            .arg("--stop-on-eof")
            .args(extra_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .kill_on_drop(true);
        match target {
            Target::DataDir(dir) => {
                command.arg("--data-dir").arg(dir);
            }
            Target::Url { url, fingerprint } => {
                command.arg("--url").arg(url);
                if let Some(fp) = fingerprint {
                    command.arg("--fingerprint").arg(fp);
                }
            }
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start `{}`", swarm_bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let stdin = child.stdin.take();
        let tracker = Arc::clone(&self.tracker);
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(event) = serde_json::from_str::<Event>(&line) {
                    tracker.apply(event);
                }
            }
        });
        self.children.push((child, stdin));
        Ok(())
    }

    /// Pids of the swarm processes (to read their memory).
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|(c, _)| c.id()).collect()
    }

    /// Closes the swarms' stdin (they close their channels and exit), then waits.
    pub async fn stop(mut self) {
        for (_, stdin) in &mut self.children {
            stdin.take();
        }
        for (child, _) in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(20), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connected_count_follows_welcomes_and_closes() {
        let t = Tracker::default();
        let w = |name: &str, t: u64| Event::Welcome {
            w: name.into(),
            t,
            url: None,
        };
        let closed = |name: &str| Event::Closed {
            w: name.into(),
            t: 9,
            class: "lost".into(),
            exit: None,
            reason: String::new(),
            welcomed: true,
        };
        t.apply(w("a", 1));
        t.apply(w("b", 2));
        t.apply(w("b", 3));
        assert_eq!(t.with(|s| s.connected), 2);
        t.apply(closed("a"));
        t.apply(closed("a"));
        assert_eq!(t.with(|s| s.connected), 1);
        t.apply(w("a", 4));
        assert_eq!(t.with(|s| s.connected), 2);
        assert_eq!(t.with(|s| s.workers["b"].last_welcome), Some(3));
        t.apply(Event::Welcome {
            w: "c".into(),
            t: 5,
            url: Some("https://127.0.0.1:2".into()),
        });
        t.apply(Event::Welcome {
            w: "a".into(),
            t: 6,
            url: Some("https://127.0.0.1:1".into()),
        });
        let second = t.with(|s| s.server_index("https://127.0.0.1:1"));
        assert_eq!(second, Some(1));
        assert_eq!(t.with(|s| s.workers["a"].server), second);
        assert_eq!(t.with(|s| s.workers["b"].server), None);
    }
}

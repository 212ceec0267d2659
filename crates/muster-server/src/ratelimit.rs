//! Failed attempts per source, and in all. After too many in a window, a source is refused
//! without any secret check (which is what makes guessing cost the guesser, not us); and however
//! many sources an attacker has, the failed attempts of all of them together are capped too, so
//! the slow checks spent on guesses have a ceiling.
//!
//! Sources are counted by [`SourceKey`]: an IPv4 address, or an IPv6 /64 (one host's share).
//! Windows are fixed: every `window` the counts start over. The map of one window is replaced
//! whole at the next, and dropped outside the lock, so keeping it tidy costs nothing per request
//! however many sources it saw; it holds at most [`MAX_TRACKED`] sources (beyond that, new
//! sources are held only to the global ceiling).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::sources::SourceKey;

/// Sources tracked in one window, at most.
pub const MAX_TRACKED: usize = 100_000;

pub struct FailureLimiter {
    per_source: u32,
    global: u32,
    window: Duration,
    state: Mutex<State>,
}

struct State {
    started: Instant,
    sources: HashMap<SourceKey, Entry>,
    /// Failures of every source in this window.
    failures: u32,
    /// Attempts reserved and not settled, of every source.
    pending: u32,
}

/// One source's failures in the current window, and its slow checks under way.
#[derive(Default)]
struct Entry {
    failures: u32,
    /// Attempts reserved with [`FailureLimiter::reserve`] and not settled yet: each may still
    /// fail, so they count against the limit while they run. Without this, a burst of
    /// concurrent guesses would all pass the check before the first failure is recorded.
    pending: u32,
}

/// How long a source blocked only by its own attempts in flight is asked to wait.
const PENDING_WAIT: Duration = Duration::from_secs(1);

impl FailureLimiter {
    /// At most `per_source` failures per source and `global` in all, per `window`.
    pub fn new(per_source: u32, global: u32, window: Duration) -> Self {
        Self {
            per_source,
            global,
            window,
            state: Mutex::new(State {
                started: Instant::now(),
                sources: HashMap::new(),
                failures: 0,
                pending: 0,
            }),
        }
    }

    /// `Err(wait)` when `addr`'s source, or everyone together, failed too often in this window.
    pub fn check(&self, addr: IpAddr) -> Result<(), Duration> {
        self.with_state(|state, rest| {
            let own = state
                .sources
                .get(&SourceKey::of(addr))
                .map_or(0, |e| e.failures);
            if own >= self.per_source || state.failures >= self.global {
                Err(rest)
            } else {
                Ok(())
            }
        })
    }

    /// Reserves one attempt that may fail (a slow secret check), counting it against the limits
    /// until it is settled (or dropped, which settles it as no failure). `Err(wait)` when
    /// failures and attempts in flight already reach a limit.
    pub fn reserve(&self, addr: IpAddr) -> Result<Reservation<'_>, Duration> {
        let key = SourceKey::of(addr);
        self.with_state(|state, rest| {
            if state.failures >= self.global {
                return Err(rest);
            }
            if state.failures + state.pending >= self.global {
                return Err(PENDING_WAIT);
            }
            let tracked = state.sources.len() < MAX_TRACKED;
            if let Some(entry) = state.entry(key, tracked) {
                if entry.failures >= self.per_source {
                    return Err(rest);
                }
                if entry.failures + entry.pending >= self.per_source {
                    return Err(PENDING_WAIT);
                }
                entry.pending += 1;
            }
            state.pending += 1;
            Ok(Reservation {
                limiter: self,
                key,
                started: state.started,
                settled: false,
            })
        })
    }

    /// Records a failure that was not reserved (a cheap check that failed).
    pub fn record_failure(&self, addr: IpAddr) {
        let key = SourceKey::of(addr);
        self.with_state(|state, _| {
            let tracked = state.sources.len() < MAX_TRACKED;
            if let Some(entry) = state.entry(key, tracked) {
                entry.failures += 1;
            }
            state.failures += 1;
        });
    }

    fn settle(&self, key: SourceKey, started: Instant, failed: bool) {
        self.with_state(|state, _| {
            // A reservation from a window that has ended counts in no window now.
            if state.started != started {
                return;
            }
            state.pending = state.pending.saturating_sub(1);
            if let Some(entry) = state.sources.get_mut(&key) {
                entry.pending = entry.pending.saturating_sub(1);
                if failed {
                    entry.failures += 1;
                }
            }
            if failed {
                state.failures += 1;
            }
        });
    }

    /// Runs `f` on the current window's state (starting a new window when the last one is over)
    /// with the time left in the window. The old window's map is dropped after the lock is
    /// released.
    fn with_state<R>(&self, f: impl FnOnce(&mut State, Duration) -> R) -> R {
        let now = Instant::now();
        let mut old = None;
        let result = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if now.duration_since(state.started) >= self.window {
                old = Some(std::mem::take(&mut state.sources));
                state.started = now;
                state.failures = 0;
                state.pending = 0;
            }
            let rest = self
                .window
                .saturating_sub(now.duration_since(state.started));
            f(&mut state, rest)
        };
        drop(old);
        result
    }

    /// Sources tracked in the current window.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.with_state(|state, _| state.sources.len())
    }
}

impl State {
    /// The source's entry; a new one only while `room` is left.
    fn entry(&mut self, key: SourceKey, room: bool) -> Option<&mut Entry> {
        if room {
            Some(self.sources.entry(key).or_default())
        } else {
            self.sources.get_mut(&key)
        }
    }
}

/// An attempt in flight, counted against its source until settled.
pub struct Reservation<'a> {
    limiter: &'a FailureLimiter,
    key: SourceKey,
    started: Instant,
    settled: bool,
}

impl Reservation<'_> {
    /// The attempt is over; `failed` records a failure against the source.
    pub fn settle(mut self, failed: bool) {
        self.settled = true;
        self.limiter.settle(self.key, self.started, failed);
    }
}

impl Drop for Reservation<'_> {
    /// An attempt abandoned midway (its request went away) taught nobody anything.
    fn drop(&mut self) {
        if !self.settled {
            self.limiter.settle(self.key, self.started, false);
        }
    }
}

impl Default for FailureLimiter {
    /// Ten failures a minute per source: generous for a fat-fingered operator, useless for
    /// guessing a 32-character secret. Six hundred a minute in all: at most ten slow checks a
    /// second spent on guesses, however many addresses they come from.
    fn default() -> Self {
        Self::new(10, 600, Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn attempts_in_flight_count_against_the_limit() {
        let limiter = FailureLimiter::new(3, 100, Duration::from_secs(60));
        let a = ip("10.0.0.1");
        let first = limiter.reserve(a).unwrap();
        let second = limiter.reserve(a).unwrap();
        let third = limiter.reserve(a).unwrap();
        assert!(limiter.reserve(a).is_err(), "three may fail already");
        second.settle(false);
        drop(third);
        let fourth = limiter.reserve(a).unwrap();
        first.settle(true);
        fourth.settle(true);
        limiter.reserve(a).unwrap().settle(true);
        assert!(limiter.check(a).is_err());
        assert!(limiter.reserve(a).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn blocks_after_the_limit_until_the_window_passes() {
        let limiter = FailureLimiter::new(3, 100, Duration::from_secs(60));
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
            limiter.record_failure(a);
        }
        assert!(limiter.check(a).is_err());
        assert!(limiter.check(b).is_ok(), "other addresses are unaffected");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(limiter.check(a).is_ok());
        assert_eq!(limiter.tracked(), 0, "a new window starts empty");
    }

    #[test]
    fn many_addresses_together_reach_the_global_ceiling() {
        // Before: ten loopback addresses got a hundred slow checks with no refusal.
        let limiter = FailureLimiter::new(10, 25, Duration::from_secs(60));
        let mut refused = 0;
        for host in 1..=10u8 {
            let addr = IpAddr::from([127, 0, 0, host]);
            for _ in 0..10 {
                match limiter.reserve(addr) {
                    Ok(r) => r.settle(true),
                    Err(_) => refused += 1,
                }
            }
        }
        assert_eq!(refused, 100 - 25, "only 25 failures in all");
        assert!(
            limiter.check(ip("192.0.2.1")).is_err(),
            "a fresh address too"
        );
    }

    #[test]
    fn an_ipv6_host_is_one_source_however_many_addresses_it_uses() {
        let limiter = FailureLimiter::new(3, 100, Duration::from_secs(60));
        for i in 0..3 {
            limiter.record_failure(ip(&format!("2001:db8:0:1::{i:x}")));
        }
        assert!(limiter.check(ip("2001:db8:0:1::ffff")).is_err());
        assert!(limiter.check(ip("2001:db8:0:2::1")).is_ok());
    }

    #[test]
    fn tracking_stops_at_its_bound_and_the_global_ceiling_still_holds() {
        let limiter = FailureLimiter::new(1, u32::MAX, Duration::from_secs(60));
        for n in 0..(MAX_TRACKED as u32 + 10) {
            limiter.record_failure(IpAddr::from(n.to_be_bytes()));
        }
        assert_eq!(limiter.tracked(), MAX_TRACKED);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reservation_from_an_ended_window_counts_in_no_window() {
        let limiter = FailureLimiter::new(2, 100, Duration::from_secs(60));
        let a = ip("10.0.0.1");
        let old = limiter.reserve(a).unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
        old.settle(true);
        assert!(limiter.reserve(a).is_ok());
        assert!(limiter.check(a).is_ok());
    }
}

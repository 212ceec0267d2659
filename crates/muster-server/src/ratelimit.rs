//! Failed enrollment attempts per source address. After too many in a window, the address is
//! refused without any secret check (which is what makes guessing cost the guesser, not us).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, Entry>>,
}

/// Failures of one address in its current window, and slow checks of its under way.
struct Entry {
    failures: u32,
    started: Instant,
    /// Attempts reserved with [`FailureLimiter::reserve`] and not settled yet: each may still
    /// fail, so they count against the limit while they run. Without this, a burst of
    /// concurrent guesses would all pass the check before the first failure is recorded.
    pending: u32,
}

/// How long an address blocked only by its own attempts in flight is asked to wait.
const PENDING_WAIT: Duration = Duration::from_secs(1);

impl FailureLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` when `addr` has failed too often in the current window.
    pub fn check(&self, addr: IpAddr) -> Result<(), Duration> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get(&addr) {
            Some(e) if e.failures >= self.max_failures && e.started.elapsed() < self.window => {
                Err(self.window.saturating_sub(e.started.elapsed()))
            }
            _ => Ok(()),
        }
    }

    /// Reserves one attempt that may fail (a slow secret check), counting it against the limit
    /// until it is settled (or dropped, which settles it as no failure). `Err(wait)` when
    /// failures and attempts in flight already reach the limit.
    pub fn reserve(&self, addr: IpAddr) -> Result<Reservation<'_>, Duration> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = self.entry(&mut seen, addr);
        if entry.failures >= self.max_failures {
            return Err(self.window.saturating_sub(entry.started.elapsed()));
        }
        if entry.failures + entry.pending >= self.max_failures {
            return Err(PENDING_WAIT);
        }
        entry.pending += 1;
        Ok(Reservation {
            limiter: self,
            addr,
            settled: false,
        })
    }

    fn settle(&self, addr: IpAddr, failed: bool) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = self.entry(&mut seen, addr);
        entry.pending = entry.pending.saturating_sub(1);
        if failed {
            entry.failures += 1;
        }
    }

    pub fn record_failure(&self, addr: IpAddr) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        self.entry(&mut seen, addr).failures += 1;
    }

    /// The address's entry, its window restarted if it has passed.
    fn entry<'a>(&self, seen: &'a mut HashMap<IpAddr, Entry>, addr: IpAddr) -> &'a mut Entry {
        let now = Instant::now();
        if seen.len() > 10_000 {
            let window = self.window;
            seen.retain(|_, e| e.pending > 0 || now.duration_since(e.started) < window);
        }
        let entry = seen.entry(addr).or_insert(Entry {
            failures: 0,
            started: now,
            pending: 0,
        });
        if now.duration_since(entry.started) >= self.window {
            entry.failures = 0;
            entry.started = now;
        }
        entry
    }
}

/// An attempt in flight, counted against its address until settled.
pub struct Reservation<'a> {
    limiter: &'a FailureLimiter,
    addr: IpAddr,
    settled: bool,
}

impl Reservation<'_> {
    /// The attempt is over; `failed` records a failure against the address.
    pub fn settle(mut self, failed: bool) {
        self.settled = true;
        self.limiter.settle(self.addr, failed);
    }
}

impl Drop for Reservation<'_> {
    /// An attempt abandoned midway (its request went away) taught nobody anything.
    fn drop(&mut self) {
        if !self.settled {
            self.limiter.settle(self.addr, false);
        }
    }
}

impl Default for FailureLimiter {
    /// Ten failures a minute: generous for a fat-fingered operator, useless for guessing a
    /// 32-character secret.
    fn default() -> Self {
        Self::new(10, Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_in_flight_count_against_the_limit() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
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
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
            limiter.record_failure(a);
        }
        assert!(limiter.check(a).is_err());
        assert!(limiter.check(b).is_ok(), "other addresses are unaffected");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(limiter.check(a).is_ok());
    }
}

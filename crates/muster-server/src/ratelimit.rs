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
    seen: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

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
            Some((count, started))
                if *count >= self.max_failures && started.elapsed() < self.window =>
            {
                Err(self.window.saturating_sub(started.elapsed()))
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, addr: IpAddr) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if seen.len() > 10_000 {
            let window = self.window;
            seen.retain(|_, (_, started)| now.duration_since(*started) < window);
        }
        let entry = seen.entry(addr).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 += 1;
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

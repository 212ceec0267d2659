//! The server's clock: the only clock that decides expiry.
//!
//! Wall time is anchored once at start and then advanced by tokio's monotonic clock. Deadlines
//! and "now" therefore come from the same source as the timers that enforce them, and a test
//! that pauses tokio's time (`tokio::time::pause`/`advance`) moves both together.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use muster_core::Timestamp;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_wall_millis: i64,
    base_instant: Instant,
}

impl Clock {
    pub fn system() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self::starting_at(Timestamp::from_unix_millis(
            i64::try_from(wall.as_millis()).unwrap_or(0),
        ))
    }

    /// A clock that reads `start` now (for tests).
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            base_wall_millis: start.unix_millis(),
            base_instant: Instant::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        let elapsed = Instant::now().saturating_duration_since(self.base_instant);
        Timestamp::from_unix_millis(self.base_wall_millis).saturating_add(elapsed)
    }

    /// The tokio instant at which this clock will read `at` (now, if `at` is past).
    pub fn instant_at(&self, at: Timestamp) -> Instant {
        let now = self.now();
        Instant::now() + now.until(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time() {
        let clock = Clock::starting_at(Timestamp::from_unix_millis(1_000));
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(clock.now().unix_millis(), 1_250);
        let deadline = Timestamp::from_unix_millis(2_000);
        assert_eq!(
            clock.instant_at(deadline) - Instant::now(),
            Duration::from_millis(750)
        );
        assert_eq!(
            clock.instant_at(Timestamp::from_unix_millis(0)),
            Instant::now()
        );
    }
}

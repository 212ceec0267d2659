//! Reconnect delays: exponential backoff with full jitter and a cap ("Exponential Backoff And
//! Jitter", AWS Architecture Blog). Full jitter spreads a fleet that lost its server at the same
//! instant over the whole window instead of bringing it back in synchronized waves.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The ceiling of the next delay: `min(cap, base * 2^attempt)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay, uniformly random in `[0, ceiling]`, and one step further along.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rng.gen_range(0..=millis))
    }

    /// After a connection that worked, start again from the base.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl Default for Backoff {
    /// 500 ms doubling to a 30 s cap: a blip is healed in well under a second on average, and a
    /// long outage is probed every 15 s on average per worker.
    fn default() -> Self {
        Self::new(Duration::from_millis(500), Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn delays_grow_to_the_cap_and_stay_within_the_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut rng = StdRng::seed_from_u64(7);
        let ceilings: Vec<_> = (0..8)
            .map(|_| {
                let ceiling = b.ceiling();
                let delay = b.next_delay(&mut rng);
                assert!(delay <= ceiling);
                ceiling.as_millis()
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_is_full_not_a_fixed_fraction() {
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<u128> = (0..1000)
            .map(|_| {
                Backoff::new(Duration::from_secs(1), Duration::from_secs(1))
                    .next_delay(&mut rng)
                    .as_millis()
            })
            .collect();
        assert!(
            delays.iter().any(|d| *d < 100),
            "some retries come almost at once"
        );
        assert!(
            delays.iter().any(|d| *d > 900),
            "some wait nearly the whole window"
        );
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..200 {
            b.next_delay(&mut rand::thread_rng());
        }
        assert_eq!(b.ceiling(), Duration::from_secs(30));
    }
}

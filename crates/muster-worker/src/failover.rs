//! Which of several server URLs (`--url a,b,c`, replicas) the worker's next attempt goes to.
//!
//! The first attempt goes to the first URL: it is the operator's preferred server, and
//! enrollment goes there too. After a lost channel or a failed attempt the next one goes to a
//! server chosen uniformly at random among the *others*: never the one that just failed (unless
//! it is the only one). Every worker of a fleet usually has the same list, so "the next URL"
//! would send all of a dead replica's workers to one survivor; a random other spreads them
//! evenly over the survivors, as a load balancer would.

use rand::Rng;

/// The index of the server the next attempt goes to, among `len` servers.
#[derive(Debug, Clone)]
pub struct Rotation {
    len: usize,
    current: usize,
}

impl Rotation {
    /// Starts at the first server.
    pub fn new(len: usize) -> Self {
        Self { len, current: 0 }
    }

    /// The server the next attempt goes to.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The attempt at [`Rotation::current`] failed (or its channel was lost): moves to a server
    /// chosen uniformly among the others, and returns it.
    pub fn after_failure(&mut self, rng: &mut impl Rng) -> usize {
        if self.len > 1 {
            // A draw among the len − 1 others: skip over the one that failed.
            let pick = rng.gen_range(0..self.len - 1);
            self.current = if pick >= self.current { pick + 1 } else { pick };
        }
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn starts_at_the_first_url() {
        assert_eq!(Rotation::new(4).current(), 0);
        assert_eq!(Rotation::new(1).current(), 0);
    }

    #[test]
    fn one_url_is_retried_itself() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut rotation = Rotation::new(1);
        for _ in 0..10 {
            assert_eq!(rotation.after_failure(&mut rng), 0);
        }
    }

    #[test]
    fn after_a_failure_never_the_failed_url_and_the_others_evenly() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (len, draws) = (5usize, 40_000usize);
        for failed in 0..len {
            let mut counts = vec![0usize; len];
            for _ in 0..draws {
                let mut rotation = Rotation {
                    len,
                    current: failed,
                };
                let next = rotation.after_failure(&mut rng);
                assert_ne!(next, failed, "went back to the URL that just failed");
                assert_eq!(rotation.current(), next);
                counts[next] += 1;
            }
            // Each of the 4 others should get a quarter: 10,000 ± a few %.
            let expected = draws / (len - 1);
            for (other, &n) in counts.iter().enumerate() {
                if other == failed {
                    continue;
                }
                assert!(
                    n.abs_diff(expected) < expected / 20,
                    "after {failed} failed, {other} got {n} of {draws} (expected about {expected}): {counts:?}"
                );
            }
        }
    }

    /// Two servers: the other one, every time.
    #[test]
    fn two_urls_alternate() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut rotation = Rotation::new(2);
        for i in 1..10 {
            assert_eq!(rotation.after_failure(&mut rng), i % 2);
        }
    }
}

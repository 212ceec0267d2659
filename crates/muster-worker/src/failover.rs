//! Which of several server URLs (`--url a,b,c`, replicas) the worker's next attempt goes to.
//!
//! The first attempt goes to the first URL: it is the operator's preferred server, and
//! enrollment goes there too. After a lost channel or a failed attempt the next one goes to a
//! server chosen uniformly at random among those that have not failed since the worker was last
//! welcomed: never the one that just failed (unless it is the only one), and not a dead replica
//! again while others are still untried. Every worker of a fleet usually has the same list, so
//! "the next URL" would send all of a dead replica's workers to one survivor; a random other
//! spreads them evenly over the survivors, as a load balancer would. Once every server has
//! failed, all but the last one to fail are candidates again.

use rand::Rng;

/// The index of the server the next attempt goes to, among `len` servers.
#[derive(Debug, Clone)]
pub struct Rotation {
    len: usize,
    current: usize,
    /// The servers that failed since the worker was last welcomed.
    failed: Vec<bool>,
}

impl Rotation {
    /// Starts at the first server.
    pub fn new(len: usize) -> Self {
        Self {
            len,
            current: 0,
            failed: vec![false; len],
        }
    }

    /// The server the next attempt goes to.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The worker was welcomed: every server is a candidate again after the next failure.
    pub fn welcomed(&mut self) {
        self.failed.fill(false);
    }

    /// The attempt at [`Rotation::current`] failed (or its channel was lost): moves to a server
    /// chosen uniformly among those that have not failed since the last welcome (among all the
    /// others once every one has), and returns it.
    pub fn after_failure(&mut self, rng: &mut impl Rng) -> usize {
        if self.len < 2 {
            return self.current;
        }
        if let Some(slot) = self.failed.get_mut(self.current) {
            *slot = true;
        }
        if self.failed.iter().all(|&f| f) {
            // Every server failed in this episode: start over, all but the one that just did.
            self.failed.fill(false);
            if let Some(slot) = self.failed.get_mut(self.current) {
                *slot = true;
            }
        }
        let untried: Vec<usize> = (0..self.len).filter(|&i| !self.failed[i]).collect();
        self.current = untried[rng.gen_range(0..untried.len())];
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
                let mut rotation = Rotation::new(len);
                rotation.current = failed;
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
    /// A dead replica (0) is not tried again until every survivor has failed once.
    #[test]
    fn a_failed_url_is_not_tried_again_while_others_are_untried() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..1_000 {
            let mut rotation = Rotation::new(5);
            let mut tried = vec![rotation.current()];
            for _ in 0..4 {
                let next = rotation.after_failure(&mut rng);
                assert!(
                    !tried.contains(&next),
                    "went back to {next} before trying all: {tried:?}"
                );
                tried.push(next);
            }
            // All five failed: any but the last one is a candidate again.
            let last = rotation.current();
            assert_ne!(rotation.after_failure(&mut rng), last);
        }
    }

    /// A welcome forgets the failures: the server that failed before is a candidate again.
    #[test]
    fn a_welcome_forgets_the_failures() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut seen_first_again = false;
        for _ in 0..200 {
            let mut rotation = Rotation::new(3);
            rotation.after_failure(&mut rng); // 0 failed
            rotation.welcomed();
            let next = rotation.after_failure(&mut rng); // the other one failed
            seen_first_again |= next == 0;
        }
        assert!(seen_first_again, "0 never chosen again after a welcome");
    }
}

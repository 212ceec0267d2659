//! Percentiles of latency samples.

/// The nearest-rank percentile (`p` in 0–100) of `samples`: the smallest sample that at least
/// `p` percent of the samples do not exceed. `None` when there are none. With 200 samples p99 is
/// the third largest, so the two worst are what a p99 forgives.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    // Multiply before dividing: 0.99 * 200 is not exactly 198 in floating point.
    let rank = (p.clamp(0.0, 100.0) * n as f64 / 100.0).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// Count, median, p99 and max of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

pub fn summarize(samples: &[f64]) -> Option<Summary> {
    Some(Summary {
        count: samples.len(),
        p50: percentile(samples, 50.0)?,
        p99: percentile(samples, 99.0)?,
        max: percentile(samples, 100.0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_on_a_known_set() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
        assert_eq!(percentile(&samples, 100.0), Some(100.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
    }

    #[test]
    fn order_does_not_matter_and_small_sets_work() {
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn p99_of_two_hundred_forgives_the_two_worst() {
        let mut samples: Vec<f64> = (0..200).map(|i| f64::from(i % 10)).collect();
        samples[17] = 500.0;
        samples[99] = 900.0;
        assert_eq!(summarize(&samples).unwrap().p99, 9.0);
        samples[150] = 600.0;
        let s = summarize(&samples).unwrap();
        assert_eq!(s.p99, 500.0);
        assert_eq!(s.max, 900.0);
        assert_eq!(s.count, 200);
    }
}

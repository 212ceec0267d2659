//! How long ago or until a time, as people read it: one rounding rule for every place muster
//! shows a relative time (the CLI's tables, the web UI), so the two never disagree.
//!
//! Each length is rounded to the nearest unit shown, never down: a token made for a day reads
//! `in 24 h` (or `in 24h`) a moment after it was made, not `in 23 h`. Under a day the UI keeps
//! minutes beside hours; past two days only days are shown.

use std::fmt;

/// A length of time rounded for people; see the module's rule. Built by [`Span::of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Seconds(u64),
    Minutes(u64),
    /// Hours and the minutes beyond them (under a day; minutes may be 0).
    HoursMinutes(u64, u64),
    /// Whole hours, from one day to two (minutes no longer shown).
    Hours(u64),
    Days(u64),
}

const DAY_MINUTES: u64 = 24 * 60;

impl Span {
    /// The length of `millis` (its sign ignored), rounded to the nearest unit shown. Every step
    /// rounds the exact length, and a rounding that reaches the next unit carries into it
    /// (59.6 s reads `1 min`, 23 h 59 min 40 s reads `24 h`).
    pub fn of(millis: i64) -> Self {
        let ms = millis.unsigned_abs();
        let secs = (ms + 500) / 1000;
        if secs < 60 {
            return Span::Seconds(secs);
        }
        let mins = (ms + 30_000) / 60_000;
        if mins < 60 {
            return Span::Minutes(mins);
        }
        if mins < DAY_MINUTES {
            return Span::HoursMinutes(mins / 60, mins % 60);
        }
        let hours = (ms + 1_800_000) / 3_600_000;
        if hours < 48 {
            return Span::Hours(hours);
        }
        Span::Days((ms + 43_200_000) / 86_400_000)
    }

    /// The short form the CLI prints in tables: `5s`, `3m`, `2h5m`, `24h`, `4d`.
    pub fn compact(self) -> String {
        match self {
            Span::Seconds(s) => format!("{s}s"),
            Span::Minutes(m) => format!("{m}m"),
            Span::HoursMinutes(h, 0) | Span::Hours(h) => format!("{h}h"),
            Span::HoursMinutes(h, m) => format!("{h}h{m}m"),
            Span::Days(d) => format!("{d}d"),
        }
    }
}

/// The long form the web UI shows: `5 s`, `3 min`, `2 h 5 min`, `24 h`, `4 d`.
impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Span::Seconds(s) => write!(f, "{s} s"),
            Span::Minutes(m) => write!(f, "{m} min"),
            Span::HoursMinutes(h, 0) | Span::Hours(h) => write!(f, "{h} h"),
            Span::HoursMinutes(h, m) => write!(f, "{h} h {m} min"),
            Span::Days(d) => write!(f, "{d} d"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000;
    const MIN: i64 = 60 * S;
    const H: i64 = 60 * MIN;
    const D: i64 = 24 * H;

    fn both(millis: i64) -> (String, String) {
        let span = Span::of(millis);
        (span.to_string(), span.compact())
    }

    #[test]
    fn a_day_less_a_moment_is_a_day_never_23_hours() {
        for ms in [D, D - 1, D - S, D - 20 * S, D - 29 * S, D + 29 * MIN] {
            assert_eq!(both(ms), ("24 h".into(), "24h".into()), "{ms} ms");
        }
        assert_eq!(both(D - 40 * S), ("23 h 59 min".into(), "23h59m".into()));
    }

    #[test]
    fn each_boundary_rounds_to_the_nearest_unit_and_carries() {
        let cases = [
            (0, "0 s", "0s"),
            (499, "0 s", "0s"),
            (500, "1 s", "1s"),
            (59_499, "59 s", "59s"),
            (59_500, "1 min", "1m"),
            (90 * S - 1, "1 min", "1m"),
            (90 * S, "2 min", "2m"),
            (H - 31 * S, "59 min", "59m"),
            (H - 30 * S, "1 h", "1h"),
            (H + 5 * MIN, "1 h 5 min", "1h5m"),
            (2 * H, "2 h", "2h"),
            (36 * H, "36 h", "36h"),
            (48 * H - 30 * MIN - 1, "47 h", "47h"),
            (48 * H - 30 * MIN, "2 d", "2d"),
            (3 * D, "3 d", "3d"),
            (3 * D + 12 * H - 1, "3 d", "3d"),
            (3 * D + 12 * H, "4 d", "4d"),
        ];
        for (ms, long, short) in cases {
            assert_eq!(both(ms), (long.into(), short.into()), "{ms} ms");
        }
    }

    #[test]
    fn the_sign_does_not_change_the_length() {
        assert_eq!(Span::of(-D + 1), Span::of(D - 1));
        assert_eq!(Span::of(-5 * H - 20 * MIN), Span::HoursMinutes(5, 20));
        assert_eq!(
            Span::of(i64::MIN),
            Span::of(i64::MIN + 1),
            "no overflow at the extreme"
        );
    }
}

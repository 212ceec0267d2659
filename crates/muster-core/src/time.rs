//! Points in time as the domain sees them: milliseconds since the Unix epoch, in UTC.
//!
//! The server is the only clock that decides expiry, so the domain never reads the time itself;
//! callers pass `now` in. That keeps every rule testable with any clock.

use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    pub fn saturating_add(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(millis))
    }

    /// `duration` before `self` (for cut-offs: "older than 30 days").
    pub fn saturating_sub(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(millis))
    }

    /// How long from `self` until `later`; zero when `later` is not after `self`.
    pub fn until(self, later: Timestamp) -> Duration {
        let diff = later.0.saturating_sub(self.0);
        Duration::from_millis(u64::try_from(diff).unwrap_or(0))
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-22T07:43:44.123Z`.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(dt) => {
                let dt = dt.replace_nanosecond((self.0.rem_euclid(1000) as u32) * 1_000_000);
                dt.ok()
                    .and_then(|d| d.format(&Rfc3339).ok())
                    .unwrap_or_else(|| self.0.to_string())
            }
            Err(_) => self.0.to_string(),
        }
    }

    pub fn parse_rfc3339(input: &str) -> Option<Self> {
        let dt = OffsetDateTime::parse(input, &Rfc3339).ok()?;
        i64::try_from(dt.unix_timestamp_nanos() / 1_000_000)
            .ok()
            .map(Self)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_utc_and_round_trips() {
        let t = Timestamp::from_unix_millis(1_795_000_000_123);
        let s = t.to_rfc3339();
        assert!(s.ends_with('Z'), "{s}");
        assert!(s.contains(".123"), "{s}");
        assert_eq!(Timestamp::parse_rfc3339(&s), Some(t));
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_unix_millis(1000);
        assert_eq!(t.saturating_add(Duration::from_secs(1)).unix_millis(), 2000);
        assert_eq!(t.until(Timestamp::from_unix_millis(500)), Duration::ZERO);
        assert_eq!(
            Timestamp::from_unix_millis(i64::MAX)
                .saturating_add(Duration::MAX)
                .unix_millis(),
            i64::MAX
        );
    }
}

//! Wall-clock timestamps in microseconds. Every process of a benchmark run is on one machine, so
//! CLOCK_REALTIME readings from different processes can be subtracted directly.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (CLOCK_REALTIME).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Milliseconds between two microsecond timestamps; negative when `to` comes first.
pub fn ms_between(from_us: u64, to_us: u64) -> f64 {
    (to_us as f64 - from_us as f64) / 1000.0
}

/// An RFC 3339 timestamp (as the API prints them) in microseconds since the epoch.
pub fn rfc3339_to_us(text: &str) -> Option<u64> {
    let at = muster_core::Timestamp::parse_rfc3339(text)?;
    u64::try_from(at.unix_millis()).ok().map(|ms| ms * 1000)
}

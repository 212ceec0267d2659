//! Source addresses as limits see them, and per-source counts that cost nothing when idle.
//!
//! An attacker rarely has one address: an IPv6 host has a whole /64, so IPv6 addresses are
//! grouped by their /64 prefix; IPv4 addresses (and IPv4-mapped IPv6 ones) stand for
//! themselves. Counts live in a map that holds only sources with something in progress: an entry
//! goes away with its last guard, so the map never needs sweeping.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// What a per-source limit counts by: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKey {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl SourceKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    SourceKey::V6Prefix(prefix)
                }
            },
        }
    }
}

/// `192.0.2.1`, or `2001:db8:1:2::/64`: how an audit record names a source.
impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceKey::V4(octets) => write!(f, "{}", Ipv4Addr::from(*octets)),
            SourceKey::V6Prefix(prefix) => {
                let mut full = [0u8; 16];
                full[..8].copy_from_slice(prefix);
                write!(f, "{}/64", Ipv6Addr::from(full))
            }
        }
    }
}

/// At most `max` things in progress per source.
pub struct PerSource {
    max: u32,
    counts: Mutex<HashMap<SourceKey, u32>>,
}

impl PerSource {
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one more for `source`, or `None` if it already has `max` in progress.
    pub fn try_enter(self: &Arc<Self>, source: IpAddr) -> Option<SourceGuard> {
        let key = SourceKey::of(source);
        let mut counts = self.lock();
        let count = counts.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(SourceGuard {
            owner: Arc::clone(self),
            key,
        })
    }

    /// Sources with something in progress (for tests and metrics).
    pub fn sources(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SourceKey, u32>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One thing in progress for a source; dropping it ends it.
pub struct SourceGuard {
    owner: Arc<PerSource>,
    key: SourceKey,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut counts = self.owner.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_are_one_source() {
        assert_eq!(
            SourceKey::of(ip("2001:db8:1:2::1")),
            SourceKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            SourceKey::of(ip("2001:db8:1:2::1")),
            SourceKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            SourceKey::of(ip("::ffff:10.0.0.1")),
            SourceKey::of(ip("10.0.0.1"))
        );
        assert_ne!(SourceKey::of(ip("10.0.0.1")), SourceKey::of(ip("10.0.0.2")));
        assert_eq!(SourceKey::of(ip("::ffff:10.0.0.1")).to_string(), "10.0.0.1");
        assert_eq!(
            SourceKey::of(ip("2001:db8:1:2:ffff::9")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn a_source_gets_at_most_its_share_and_its_entry_goes_with_its_last_guard() {
        let limit = PerSource::new(2);
        let a = limit.try_enter(ip("10.0.0.1")).unwrap();
        let b = limit.try_enter(ip("10.0.0.1")).unwrap();
        assert!(limit.try_enter(ip("10.0.0.1")).is_none());
        let other = limit.try_enter(ip("10.0.0.2")).unwrap();
        assert_eq!(limit.sources(), 2);
        drop(a);
        let c = limit.try_enter(ip("10.0.0.1")).unwrap();
        drop((b, c, other));
        assert_eq!(limit.sources(), 0, "idle sources cost nothing");
    }
}

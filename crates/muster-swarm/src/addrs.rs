//! Spreading connections over loopback source addresses.
//!
//! One source address has about 28,000 ephemeral ports (and connections in TIME_WAIT hold theirs
//! for a minute), so 19,000 workers plus a reconnect storm from one address would run out. Every
//! address in 127.0.0.0/8 reaches the loopback interface, so worker `i` binds to the `i`-th
//! address of a small range, round-robin.

use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    first: u32,
    count: u32,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourcesError {
    #[error("source addresses from `{0}` leave 127.0.0.0/8; only loopback sources are used")]
    NotLoopback(Ipv4Addr),
    #[error("at least one source address is needed")]
    Empty,
}

impl Sources {
    /// `count` addresses starting at `first`; all must stay inside 127.0.0.0/8.
    pub fn new(first: Ipv4Addr, count: u32) -> Result<Self, SourcesError> {
        if count == 0 {
            return Err(SourcesError::Empty);
        }
        let start = u32::from(first);
        let last = start
            .checked_add(count - 1)
            .map(Ipv4Addr::from)
            .ok_or(SourcesError::NotLoopback(first))?;
        if !first.is_loopback() || !last.is_loopback() {
            return Err(SourcesError::NotLoopback(first));
        }
        Ok(Self {
            first: start,
            count,
        })
    }

    /// The source address of worker number `index` (its index in the whole run, so that
    /// several swarm processes that split one run spread the same way).
    pub fn for_worker(&self, index: usize) -> IpAddr {
        let offset = (index % self.count as usize) as u32;
        IpAddr::V4(Ipv4Addr::from(self.first + offset))
    }

    pub fn count(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_rotate_over_the_range_and_wrap() {
        let s = Sources::new(Ipv4Addr::new(127, 0, 0, 2), 3).unwrap();
        let got: Vec<String> = (0..7).map(|i| s.for_worker(i).to_string()).collect();
        assert_eq!(
            got,
            [
                "127.0.0.2",
                "127.0.0.3",
                "127.0.0.4",
                "127.0.0.2",
                "127.0.0.3",
                "127.0.0.4",
                "127.0.0.2"
            ]
        );
    }

    #[test]
    fn ranges_cross_octets_but_never_leave_loopback() {
        let s = Sources::new(Ipv4Addr::new(127, 0, 0, 254), 4).unwrap();
        assert_eq!(s.for_worker(3).to_string(), "127.0.1.1");
        assert_eq!(
            Sources::new(Ipv4Addr::new(127, 255, 255, 254), 4),
            Err(SourcesError::NotLoopback(Ipv4Addr::new(127, 255, 255, 254)))
        );
        assert!(Sources::new(Ipv4Addr::new(10, 0, 0, 1), 1).is_err());
        assert_eq!(
            Sources::new(Ipv4Addr::new(127, 0, 0, 2), 0),
            Err(SourcesError::Empty)
        );
    }

    #[test]
    fn load_is_even() {
        let s = Sources::new(Ipv4Addr::new(127, 0, 0, 2), 16).unwrap();
        let mut counts = std::collections::HashMap::new();
        for i in 0..19_000 {
            *counts.entry(s.for_worker(i)).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 16);
        assert!(counts.values().all(|c| (1187..=1188).contains(c)));
    }
}

//! The few operating-system calls the tools need: the open-file limit, process memory, signals.

use std::path::Path;

/// Raises the soft open-file limit to the hard limit; returns the limit now in force. Each
/// simulated worker holds one socket, so the default soft limit (often 1024) would cap a swarm.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: getrlimit/setrlimit only read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return 1024;
            }
        }
    }
    limit.rlim_cur
}

/// A process's resident memory (`VmRSS` in `/proc/PID/status`), in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    parse_kib_field(&status, "VmRSS:").map(|kib| kib * 1024)
}

/// Total memory of the machine, in bytes.
pub fn mem_total_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_kib_field(&info, "MemTotal:").map(|kib| kib * 1024)
}

fn parse_kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: i32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    #[allow(unsafe_code)]
    // SAFETY: kill(2) takes plain integers.
    let rc = unsafe { libc::kill(pid, signal) };
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kib_fields_are_read() {
        let status = "Name:\tmuster\nVmPeak:\t  9000 kB\nVmRSS:\t  1234 kB\n";
        assert_eq!(parse_kib_field(status, "VmRSS:"), Some(1234));
        assert_eq!(parse_kib_field(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_has_memory() {
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }
}

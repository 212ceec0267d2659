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

/// CPU time (user + system) a process has used, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    let ticks = parse_cpu_ticks(&stat)?;
    #[allow(unsafe_code)]
    // SAFETY: sysconf takes and returns plain integers.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| ticks as f64 / per_second as f64)
}

/// utime + stime from `/proc/PID/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The one-minute load average: how busy the machine was (other work shows up here).
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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
    fn cpu_ticks_are_counted_after_the_name() {
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5";
        assert_eq!(parse_cpu_ticks(stat), Some(10));
        assert!(cpu_seconds(std::process::id()).is_some());
    }

    #[test]
    fn this_process_has_memory() {
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }
}

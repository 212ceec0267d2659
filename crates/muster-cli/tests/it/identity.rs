//! Worker identities that cannot be stolen or copied: a key in the state dir, proven at every
//! connection; a copied state dir caught and suspended; a worker that crashes, restarts or loses
//! its network never taken for a copy.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{STARTUP, Server, find, signal};

/// Copies a directory tree (as `cp -a` would), without the lock file: a copied state dir is
/// what a cloned VM image or a restored backup holds.
fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
}

/// Before: the API key in `identity.json` and the machine id (shown in every listing) were all
/// it took to connect as a worker. Now a connection must prove it holds the key that stayed
/// behind in the original state dir.
#[test]
fn an_api_key_and_machine_id_copied_out_of_a_state_dir_do_not_connect() {
    let server = Server::start_default();
    let (token, _) = server.create_token("victim", "1h");
    let mut worker = server.worker("victim").token(&token).start();
    server.wait_status("victim", "connected", STARTUP);
    worker.terminate(Duration::from_secs(10));

    // Another state dir with the victim's identity and machine id, but not its key.
    let thief = server.path("thief");
    std::fs::create_dir(&thief).unwrap();
    for file in ["identity.json", "machine-id"] {
        std::fs::copy(worker.state_dir.join(file), thief.join(file)).unwrap();
    }
    let mut thief_worker = server.worker("thief").start();
    let code = thief_worker.wait_exit(Duration::from_secs(20));
    assert_eq!(code, 4, "{}", thief_worker.stderr());
    assert!(
        thief_worker
            .error_line()
            .contains("proves itself with another key"),
        "{}",
        thief_worker.stderr()
    );
    // The real worker still connects.
    let mut worker = server.worker("victim").start();
    server.wait_status("victim", "connected", STARTUP);
    worker.terminate(Duration::from_secs(10));
}

/// `cp -a` of a connected worker's state dir, started as a second worker: both copies are cut
/// off with exit 8, the worker shows `suspended`, and the audit log says so with the addresses.
#[test]
fn a_copied_state_dir_is_caught_and_both_copies_exit_8() {
    let server = Server::start_default();
    let (token, _) = server.create_token("golden", "1h");
    let mut original = server.worker("golden").token(&token).start();
    server.wait_status("golden", "connected", STARTUP);
    // Let it confirm its first ticket, as any worker that has run for a moment has.
    std::thread::sleep(Duration::from_millis(500));
    copy_dir(&original.state_dir, &server.path("golden-clone"));
    let mut clone = server.worker("golden-clone").start();
    let started = Instant::now();
    let clone_code = clone.wait_exit(Duration::from_secs(20));
    let original_code = original.wait_exit(Duration::from_secs(20));
    assert_eq!(clone_code, 8, "{}", clone.stderr());
    assert_eq!(original_code, 8, "{}", original.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "both were cut off within seconds, took {:?}",
        started.elapsed()
    );
    for worker in [&clone, &original] {
        assert!(
            worker.error_line().contains("used from two places at once"),
            "{}",
            worker.stderr()
        );
    }
    let listed = server.workers();
    assert_eq!(find(&listed, "golden").unwrap()["status"], "suspended");
    let audit = server.audit();
    let detected: Vec<_> = audit
        .iter()
        .filter(|e| e["action"] == "worker.clone_detected")
        .collect();
    assert_eq!(detected.len(), 1, "{audit:#?}");
    let detail = detected[0]["detail"].as_str().unwrap();
    assert!(
        detail.matches("127.0.0.1").count() >= 2,
        "both addresses are named: {detail}"
    );
    // A suspended identity stays out, and says why.
    let mut again = server.worker("golden").start();
    assert_eq!(
        again.wait_exit(Duration::from_secs(20)),
        8,
        "{}",
        again.stderr()
    );
}

/// A worker killed with -9 and restarted at once, again and again, and a server killed and
/// restarted meanwhile: never taken for a copy, always back. (The long run of this, hundreds of
/// cycles, is `MUSTER_CRASH_CYCLES=300 cargo test … crashes_at_random`; CI runs a few.)
#[test]
fn crashes_at_random_instants_are_never_taken_for_a_copy() {
    let cycles: usize = std::env::var("MUSTER_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let mut server = Server::start_default();
    let (token, _) = server.create_token("phoenix", "24h");
    let mut worker = server.worker("phoenix").token(&token).start();
    server.wait_status("phoenix", "connected", STARTUP);
    let mut rng_state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |bound: u64| {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state % bound
    };
    for cycle in 0..cycles {
        // Somewhere in the connection's life: before the welcome, while the ticket is saved,
        // after the acknowledgement.
        std::thread::sleep(Duration::from_millis(next(400)));
        if next(5) == 0 {
            server.kill9();
            std::thread::sleep(Duration::from_millis(next(200)));
            server.restart();
        } else {
            signal(worker.pid(), "KILL");
            let _ = worker.wait_exit(Duration::from_secs(10));
        }
        if !worker.is_running() {
            worker = server.worker("phoenix").start();
        }
        let back = server.wait_workers("the worker to come back", STARTUP, |list| {
            find(list, "phoenix").is_some_and(|w| w["status"] == "connected")
        });
        assert_eq!(
            find(&back, "phoenix").unwrap()["status"],
            "connected",
            "cycle {cycle}"
        );
        assert!(worker.is_running(), "cycle {cycle}: {}", worker.stderr());
    }
    let verdicts = server
        .audit()
        .into_iter()
        .filter(|e| e["action"] == "worker.clone_detected")
        .count();
    assert_eq!(verdicts, 0, "no crash is ever a copy");
    worker.terminate(Duration::from_secs(10));
}

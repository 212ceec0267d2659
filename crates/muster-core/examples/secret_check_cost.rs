//! Prints what checking the auto-enrollment secret costs: one Argon2id verification (what the
//! server pays for a presentation it has not seen) against one SHA-256 (what a remembered,
//! already-verified presentation costs). `cargo run --release -p muster-core --example
//! secret_check_cost`.

use std::time::Instant;

use muster_core::credentials::{SecretHash, SlowHash, generate_enrollment_secret};
use rand::rngs::OsRng;

/// CPU time of this thread, so the figure does not depend on what else the machine is doing.
#[allow(unsafe_code)]
fn cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the struct we pass.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let secret = generate_enrollment_secret(&mut OsRng);
    let slow = SlowHash::create(&secret, &mut OsRng);
    let runs = 20;
    let (wall, cpu) = (Instant::now(), cpu_time());
    for _ in 0..runs {
        assert!(slow.verify(&secret));
    }
    let argon_cpu = (cpu_time() - cpu) / runs;
    let argon_wall = wall.elapsed() / runs;

    let fast = SecretHash::of(&secret);
    let runs = 100_000;
    let cpu = cpu_time();
    for _ in 0..runs {
        assert!(fast.matches(&secret));
    }
    let sha_cpu = (cpu_time() - cpu) / runs;
    println!("argon2id verify: {argon_cpu:?} CPU ({argon_wall:?} wall) per check");
    println!("remembered presentation (keyed SHA-256): {sha_cpu:?} CPU per check");
    println!(
        "a burst of 1000 enrolling workers: {:.1} s of CPU with Argon2 on every check, {:.3} s when each is remembered after the first",
        argon_cpu.as_secs_f64() * 1000.0,
        argon_cpu.as_secs_f64() + sha_cpu.as_secs_f64() * 999.0
    );
}

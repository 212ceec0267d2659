//! See `muster_fuzz::enroll_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| muster_fuzz::enroll_body::run(data));

//! See `muster_fuzz::follow_reader`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| muster_fuzz::follow_reader::run(data));

//! See `muster_fuzz::control_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| muster_fuzz::control_message::run(data));

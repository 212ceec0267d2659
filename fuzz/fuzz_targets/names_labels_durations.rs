//! See `muster_fuzz::names_labels_durations`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| muster_fuzz::names_labels_durations::run(data));

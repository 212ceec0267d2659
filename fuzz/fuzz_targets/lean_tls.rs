//! See `muster_fuzz::lean_tls`. Counts the heap so the target can check that a connection holds
//! a bounded amount however long its stream.
#![no_main]

use std::alloc::System;

use cap::Cap;

#[global_allocator]
static HEAP: Cap<System> = Cap::new(System, usize::MAX);

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    muster_fuzz::lean_tls::run_with(data, Some(&|| HEAP.allocated()), &mut |_| {});
});

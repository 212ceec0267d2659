//! The bodies of muster's fuzz targets: one module per input muster takes from someone it does
//! not trust. Each exposes `run(data)`, which must return for every input (a panic is a bug).
//!
//! `fuzz/` (cargo fuzz, on nightly) calls these from its targets, and `tests/replay.rs` runs every
//! committed corpus file through them on stable, so the corpora guard against regressions in
//! ordinary `cargo test`. See `fuzz/README.md`.

pub mod control_message;
pub mod enroll_body;
pub mod follow_reader;
pub mod lean_tls;
pub mod names_labels_durations;

/// A target's body: takes any bytes, panics only on a bug.
pub type Body = fn(&[u8]);

/// Every target by name (its directory under `fuzz/corpus/`), with its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("lean_tls", lean_tls::run),
    ("control_message", control_message::run),
    ("enroll_body", enroll_body::run),
    ("names_labels_durations", names_labels_durations::run),
    ("follow_reader", follow_reader::run),
];

//! Replays every committed corpus file (`fuzz/corpus/<target>/*`) through its target's body, so
//! what the fuzzer once found keeps passing in an ordinary `cargo test`, on stable.

use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

#[test]
fn every_committed_corpus_file_passes_its_target() {
    for (target, run) in muster_fuzz::TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        files.sort();
        // A target without a corpus would pass here without testing anything.
        assert!(
            !files.is_empty(),
            "no corpus for {target} in {}",
            dir.display()
        );
        for file in files {
            let data = std::fs::read(&file).expect("a corpus file");
            let result = std::panic::catch_unwind(|| run(&data));
            assert!(result.is_ok(), "{target} fails on {}", file.display());
        }
    }
}

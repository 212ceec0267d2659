//! What ships for installing muster: the systemd units in `dist/systemd/` pass
//! `systemd-analyze verify` (with the built binary in place of `/usr/local/bin/muster`), the
//! server's sandbox and the worker's optional one score as `systemd-analyze security` says they
//! should, and every variable the environment files in `dist/env/` mention is one muster reads.
//!
//! Needs `systemd-analyze` (Debian's `systemd` package; `scripts/test` installs it). Without it
//! these tests fail and say so.

use std::path::{Path, PathBuf};
use std::process::Command;

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist")
}

fn systemd_analyze() -> Command {
    let found = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "`systemd-analyze` is missing: install Debian's `systemd` package (`apt-get install systemd`; scripts/test does it)"
    );
    Command::new("systemd-analyze")
}

/// The units in a temp dir as systemd would find them, pointing at the binary under test, with
/// the worker's hardening drop-in when asked for.
fn units(with_hardening: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["muster-server.service", "muster-worker.service"] {
        let text = std::fs::read_to_string(dist().join("systemd").join(name)).expect(name);
        let text = text.replace("/usr/local/bin/muster", crate::harness::muster_bin());
        std::fs::write(dir.path().join(name), text).expect("write unit");
    }
    if with_hardening {
        let dropins = dir.path().join("muster-worker.service.d");
        std::fs::create_dir(&dropins).expect("drop-in dir");
        std::fs::copy(
            dist().join("systemd/worker-hardening.conf"),
            dropins.join("hardening.conf"),
        )
        .expect("copy the drop-in");
    }
    dir
}

/// `systemd-analyze ARGS` with the units' dir searched first.
fn analyze(units: &Path, args: &[&str]) -> (bool, String, String) {
    let out = systemd_analyze()
        .env("SYSTEMD_UNIT_PATH", format!("{}:", units.display()))
        .args(args)
        .output()
        .expect("run systemd-analyze");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_systemd_units_and_the_hardening_drop_in_verify_cleanly() {
    let dir = units(true);
    let server = dir.path().join("muster-server.service");
    let worker = dir.path().join("muster-worker.service");
    let (ok, stdout, stderr) = analyze(
        dir.path(),
        &[
            "verify",
            "--man=no",
            server.to_str().expect("utf-8"),
            worker.to_str().expect("utf-8"),
        ],
    );
    // An unknown or misspelt directive is only a warning (exit 0): any output fails the test.
    assert!(ok && stderr.trim().is_empty(), "{stdout}\n{stderr}");
}

/// `Overall exposure level for UNIT: 1.4 OK`, as a number.
fn exposure(units: &Path, unit: &str) -> f64 {
    let path = units.join(unit);
    let (_, stdout, stderr) = analyze(
        units,
        &["security", "--offline=true", path.to_str().expect("utf-8")],
    );
    let text = format!("{stdout}{stderr}");
    text.lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split_once(": ")
        })
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level for {unit}:\n{text}"))
}

#[test]
fn the_server_runs_sandboxed_and_the_drop_in_sandboxes_the_worker() {
    let plain = units(false);
    let hardened = units(true);
    let server = exposure(plain.path(), "muster-server.service");
    assert!(server <= 2.0, "the server's exposure is {server}");
    let worker = exposure(plain.path(), "muster-worker.service");
    let worker_hardened = exposure(hardened.path(), "muster-worker.service");
    assert!(
        worker_hardened <= 4.0 && worker_hardened < worker,
        "the drop-in takes the worker's exposure from {worker} to {worker_hardened}"
    );
}

/// Each `MUSTER_*` variable an environment file or unit mentions, with the command whose
/// `--help` must list it.
#[test]
fn every_variable_the_environment_files_mention_is_one_muster_reads() {
    let home = tempfile::tempdir().expect("temp dir");
    for (file, command) in [
        ("env/server.env", "serve"),
        ("systemd/muster-server.service", "serve"),
        ("env/worker.env", "worker"),
        ("systemd/muster-worker.service", "worker"),
    ] {
        let text = std::fs::read_to_string(dist().join(file)).expect(file);
        let help = crate::harness::muster(home.path())
            .args([command, "--help"])
            .output()
            .expect("run muster");
        // Help text is wrapped: compare with its whitespace collapsed.
        let help = String::from_utf8_lossy(&help.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut seen = 0;
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !word.starts_with("MUSTER_") {
                continue;
            }
            seen += 1;
            // MUSTER_LOG is read by `main` for every command, not a flag.
            assert!(
                word == "MUSTER_LOG"
                    || help.contains(&format!("env: {word}="))
                    || help.contains(&format!("env: {word}]")),
                "{file} mentions {word}, which `muster {command}` does not read"
            );
        }
        assert!(seen > 0, "{file} mentions no variable");
    }
}

//! `muster job run` that talks: a job for a worker that can never run it is refused at once,
//! and a job nobody connected can take says so at once instead of waiting in silence.

use crate::harness::{Server, ServerOpts};

#[test]
fn a_job_for_an_unknown_or_revoked_worker_fails_at_once() {
    let server = Server::start(ServerOpts::default());
    let (code, line) = server.cli_err(&["job", "run", "--worker", "ghost", "--", "true"]);
    assert_eq!(code, 1);
    assert!(line.contains("no worker named `ghost`"), "{line}");

    server.cli_ok(&["workers", "create", "gone"]);
    server.cli_ok(&["workers", "revoke", "gone"]);
    let (code, line) = server.cli_err(&["job", "run", "--worker", "gone", "--", "true"]);
    assert_eq!(code, 1);
    assert!(
        line.contains("worker `gone` is revoked: a job for it would never run"),
        "{line}"
    );
    assert!(line.contains("hint:"), "{line}");
}

#[test]
fn a_job_nobody_connected_matches_says_so_at_once() {
    let server = Server::start(ServerOpts::default());
    let out = server.cli(&[
        "job",
        "run",
        "--label",
        "pool=nowhere",
        "--queue-timeout",
        "2s",
        "--",
        "true",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains(
            "no connected worker matches a worker with labels pool=nowhere (0 workers connected)"
        ),
        "the first line says why it waits: {stderr}"
    );
    assert!(first.contains("up to 2s"), "{first}");
}

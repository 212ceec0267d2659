//! Permanent failures end the worker at once, with one `error: …; hint: …` line and the
//! contract's exit code, instead of retrying forever.

use std::time::{Duration, Instant};

use crate::harness::{STARTUP, Server, ServerOpts, Worker, find, snapshot_settings};

/// A permanent failure must not wait for backoff: it ends well within this.
pub const AT_ONCE: Duration = Duration::from_secs(5);

pub fn expect_exit(worker: &mut Worker, code: i32, mention: &str) -> String {
    let line = exits_at_once(worker, code);
    assert!(
        line.to_lowercase().contains(&mention.to_lowercase()),
        "the error should mention `{mention}`: {line}"
    );
    line
}

/// Waits for the worker to exit with `code` well within [`AT_ONCE`]; returns its error line.
pub fn exits_at_once(worker: &mut Worker, code: i32) -> String {
    let started = Instant::now();
    let got = worker.wait_exit(STARTUP);
    assert_eq!(got, code, "{}", worker.logs.dump());
    assert!(
        started.elapsed() < AT_ONCE,
        "exit {code} took {:?}",
        started.elapsed()
    );
    worker.error_line()
}

/// Two workers racing for one identity: waits until exactly one of them has given up, and returns
/// (the one still running, the one that exited).
pub fn one_gives_up<'a>(a: &'a mut Worker, b: &'a mut Worker) -> (&'a mut Worker, &'a mut Worker) {
    let deadline = Instant::now() + STARTUP;
    loop {
        match (a.try_exit(), b.try_exit()) {
            (None, Some(_)) => return (a, b),
            (Some(_), None) => return (b, a),
            (Some(x), Some(y)) => panic!(
                "both exited ({x}, {y})\n{}\n{}",
                a.logs.dump(),
                b.logs.dump()
            ),
            (None, None) => {
                assert!(
                    Instant::now() < deadline,
                    "neither gave up\n{}\n{}",
                    a.logs.dump(),
                    b.logs.dump()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn permanent_refusals_exit_at_once_with_a_hint() {
    let server = Server::start_default();
    let (token, _) = server.create_token("good", "1h");
    let mut lines = Vec::new();

    // No URL: a configuration error, found before any network call or state-dir write.
    let mut w = server.worker("no-url").no_url().token(&token).start();
    lines.push(exits_at_once(&mut w, 2));
    assert!(
        !w.state_dir.exists(),
        "the worker created its state dir before checking its configuration"
    );

    // A malformed label: a configuration error.
    let mut w = server
        .worker("bad-label")
        .token(&token)
        .arg("--label")
        .arg("no-equals-sign")
        .start();
    lines.push(exits_at_once(&mut w, 2));

    // A malformed URL.
    let mut w = server
        .worker("bad-url")
        .url("muster.example:7443")
        .token(&token)
        .start();
    lines.push(exits_at_once(&mut w, 2));

    // http:// for the HTTPS server: the wrong scheme, named as such.
    let http_url = server.url().replacen("https://", "http://", 1);
    let mut w = server.worker("http").url(http_url).token(&token).start();
    lines.push(exits_at_once(&mut w, 2));

    // No trust for the self-signed certificate: a TLS failure with the fix in the hint.
    let mut w = server
        .worker("untrusted")
        .no_fingerprint()
        .token(&token)
        .start();
    lines.push(exits_at_once(&mut w, 7));

    // A pinned fingerprint that is not the server's.
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let mut w = server
        .worker("wrong-pin")
        .no_fingerprint()
        .arg("--ca-fingerprint")
        .arg(&wrong)
        .token(&token)
        .start();
    lines.push(exits_at_once(&mut w, 7));

    // A malformed token.
    let mut w = server.worker("malformed").token("not-a-token").start();
    lines.push(exits_at_once(&mut w, 3));

    // A well-formed token the server does not know (the right name, the wrong secret).
    let forged = format!("good.{}", "A".repeat(43));
    let mut w = server.worker("forged").token(&forged).start();
    lines.push(exits_at_once(&mut w, 3));

    // No credential and no cached identity.
    let mut w = server.worker("nothing").start();
    lines.push(exits_at_once(&mut w, 2));
    snapshot_settings().bind(|| insta::assert_snapshot!(lines.join("\n")));

    // None of these bound or used the token.
    assert_eq!(server.token("good")["state"], "unused");
    assert!(server.workers().is_empty());
}

#[test]
fn a_second_worker_process_on_one_state_dir_is_refused() {
    let server = Server::start_default();
    let (token, _) = server.create_token("shared-dir", "1h");
    let mut first = server.worker("one-dir").token(&token).start();
    server.wait_status("shared-dir", "connected", STARTUP);

    let mut second = server.worker("one-dir").token(&token).start();
    let line = exits_at_once(&mut second, 2);
    // It names the holder: the first process.
    let line = line.replace(&format!("pid {}", first.pid()), "pid [FIRST WORKER]");
    snapshot_settings().bind(|| insta::assert_snapshot!(line));

    first.assert_running();
    server.wait_status("shared-dir", "connected", STARTUP);
    assert_eq!(server.workers().len(), 1);

    // SIGTERM is a graceful stop: exit 0, and the server sees the worker go.
    assert_eq!(first.terminate(STARTUP), 0, "{}", first.logs.dump());
    server.wait_status("shared-dir", "disconnected", STARTUP);
}

#[test]
fn two_machines_racing_for_one_unused_token_exactly_one_wins() {
    let server = Server::start_default();
    let (token, _) = server.create_token("contested", "1h");
    let mut a = server.worker("racer-a").token(&token).start();
    let mut b = server.worker("racer-b").token(&token).start();

    server.wait_status("contested", "connected", STARTUP);
    // The loser gives up with "identity mismatch"; the winner stays.
    let (winner, loser) = one_gives_up(&mut a, &mut b);
    assert_eq!(loser.wait_exit(STARTUP), 4, "{}", loser.logs.dump());
    assert!(
        loser.error_line().contains("bound to another machine"),
        "{}",
        loser.error_line()
    );
    std::thread::sleep(Duration::from_secs(1));
    winner.assert_running();
    let t = server.token("contested");
    assert_eq!(t["state"], "enrolled");
    assert_eq!(t["bound_machine"], winner.machine_id());
    let workers = server.workers();
    assert_eq!(workers.len(), 1, "{workers:#?}");
    let w = find(&workers, "contested").expect("contested");
    assert_eq!(w["machine_id"], winner.machine_id());
    assert_eq!(w["status"], "connected");
}

#[test]
fn an_https_url_for_a_plain_http_server_is_a_configuration_error() {
    let server = Server::start(ServerOpts {
        no_tls: true,
        ..Default::default()
    });
    assert!(
        server.url().starts_with("http://127.0.0.1:"),
        "{}",
        server.url()
    );
    let (token, _) = server.create_token("plain", "1h");

    let https_url = server.url().replacen("http://", "https://", 1);
    let mut w = server
        .worker("plain-https")
        .url(https_url)
        .token(&token)
        .start();
    let line = exits_at_once(&mut w, 2);
    snapshot_settings().bind(|| insta::assert_snapshot!(line));
    assert_eq!(server.token("plain")["state"], "unused");

    // With the right scheme it works.
    let mut w = server.worker("plain-http").token(&token).start();
    server.wait_status("plain", "connected", STARTUP);
    w.assert_running();
}

#[test]
fn a_cached_identity_unknown_to_the_server_exits_4() {
    let server = Server::start_default();
    let (token, _) = server.create_token("forgotten", "1h");
    let mut w = server.worker("forgotten").token(&token).start();
    server.wait_status("forgotten", "connected", STARTUP);
    w.kill9();
    server.wait_status("forgotten", "disconnected", STARTUP);
    server.cli_ok(&["workers", "remove", "forgotten"]);
    assert!(server.workers().is_empty());

    let mut again = server.worker("forgotten").start();
    let line = exits_at_once(&mut again, 4);
    snapshot_settings().bind(|| insta::assert_snapshot!(line));
}

//! `muster worker doctor` against real servers: one test per failure the troubleshooting table
//! names (wrong scheme, unreachable host, untrusted certificate, clock skew, unsafe state dir,
//! identity unknown to the server, auto-enrollment off, Community Edition), each asserting its
//! row and the exit code, and one run where everything is in order.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::enrollment::enable;
use crate::harness::{
    Edition, STARTUP, Server, ServerOpts, array, dead_port, muster, snapshot_settings,
};

const SECRET: &str = "doctor-secret-with-at-least-32-characters";

/// What a doctor run printed and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The row of `check`: its verdict and the whole line.
    fn row(&self, check: &str) -> (String, String) {
        let line = self
            .stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(check))
            .unwrap_or_else(|| panic!("no `{check}` row in:\n{}", self.stdout))
            .to_owned();
        let verdict = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        (verdict, line)
    }

    /// Asserts the row of `check` has `verdict` and mentions each of `words`.
    #[track_caller]
    fn expect(&self, check: &str, verdict: &str, words: &[&str]) -> String {
        let (found, line) = self.row(check);
        assert_eq!(
            found, verdict,
            "{line}\n\nall:\n{}{}",
            self.stdout, self.stderr
        );
        for word in words {
            assert!(line.contains(word), "`{word}` missing from: {line}");
        }
        line
    }

    #[track_caller]
    fn expect_exit(&self, code: i32) {
        assert_eq!(
            self.code, code,
            "doctor exited {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        if code != 0 {
            assert!(
                self.stderr.contains("check failed") || self.stderr.contains("checks failed"),
                "{}",
                self.stderr
            );
        }
    }
}

/// `muster worker doctor ARGS` with a clean environment, home in `home`.
fn doctor_in(home: &Path, args: &[&str]) -> Run {
    let out = muster(home)
        .args(["worker", "doctor"])
        .args(args)
        .output()
        .expect("run muster worker doctor");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The doctor as `server`'s worker with state dir `state` would run: its URL, its pinned
/// certificate, and `extra`.
fn doctor(server: &Server, state: &str, extra: &[&str]) -> Run {
    let state_dir = server.path(state);
    let url = server.url();
    let mut args = vec!["--url", &url, "--state-dir", state_dir.to_str().unwrap()];
    let fingerprint = server.info().fingerprint.clone();
    if let Some(fp) = &fingerprint {
        args.extend(["--ca-fingerprint", fp]);
    }
    args.extend_from_slice(extra);
    doctor_in(&server.path("home"), &args)
}

/// A worker enrolled with a token into state dir `state`, then stopped: a cached identity.
fn enrolled(server: &Server, state: &str, name: &str) {
    let (token, _) = server.create_token(name, "1h");
    let mut worker = server.worker(state).token(&token).start();
    server.wait_status(name, "connected", STARTUP);
    assert_eq!(worker.terminate(STARTUP), 0, "{}", worker.stderr());
}

#[test]
fn everything_in_order_is_ok_and_exits_zero_and_the_worker_still_connects() {
    let server = Server::start(ServerOpts::default());
    enrolled(&server, "machine", "edge-01");
    let run = doctor(&server, "machine", &[]);
    run.expect_exit(0);
    for check in ["url", "reachability", "tls", "clock", "state-dir"] {
        run.expect(check, "ok", &[]);
    }
    run.expect("identity", "ok", &["worker `edge-01`"]);
    run.expect("license", "ok", &["licensed"]);
    run.expect("auto-enrollment", "skip", &["not used"]);
    let mut settings = snapshot_settings();
    settings.add_filter(r"sha256:[0-9a-f]{64}", "sha256:[FINGERPRINT]");
    settings.bind(|| insta::assert_snapshot!(run.stdout));

    // The doctor's connection left the identity as it was: the worker comes back with it.
    let _worker = server.worker("machine").start();
    server.wait_status("edge-01", "connected", STARTUP);

    // `--json`: an array of {check, verdict, detail, fix}, and nothing else on stdout. With
    // the worker running, the doctor does not take its channel to check its identity.
    let running = doctor(&server, "machine", &["--json"]);
    running.expect_exit(0);
    let rows = array(serde_json::from_str::<Value>(&running.stdout).expect("JSON"));
    assert_eq!(rows.len(), 8, "{rows:#?}");
    for row in &rows {
        assert_eq!(
            crate::harness::keys(row),
            ["check", "detail", "fix", "verdict"],
            "{row:#}"
        );
    }
    let identity = rows.iter().find(|r| r["check"] == "identity").unwrap();
    assert_eq!(identity["verdict"], "skip", "{identity:#}");
    assert!(
        identity["detail"].as_str().unwrap().contains("runs on"),
        "{identity:#}"
    );
    server.wait_status("edge-01", "connected", STARTUP);
}

#[test]
fn a_wrong_scheme_fails_the_url_row_with_the_right_url() {
    let server = Server::start(ServerOpts::default());
    let home = server.path("home");
    let https = server.url();
    let http = https.replacen("https://", "http://", 1);
    let run = doctor_in(&home, &["--url", &http, "--state-dir", "/nonexistent/x"]);
    run.expect_exit(1);
    run.expect("url", "FAIL", &["speaks HTTPS", &format!("use `{https}`")]);

    let ws = https.replacen("https://", "wss://", 1);
    let run = doctor_in(&home, &["--url", &ws]);
    run.expect_exit(1);
    run.expect("url", "FAIL", &["WebSocket URL", &format!("use `{https}`")]);

    let plain = Server::start(ServerOpts {
        no_tls: true,
        ..ServerOpts::default()
    });
    let as_https = plain.url().replacen("http://", "https://", 1);
    let run = doctor_in(&home, &["--url", &as_https]);
    run.expect_exit(1);
    run.expect(
        "url",
        "FAIL",
        &["speaks plain HTTP", &format!("use `{}`", plain.url())],
    );
}

#[test]
fn an_unreachable_host_fails_reachability() {
    let home = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{}", dead_port());
    let run = doctor_in(home.path(), &["--url", &url]);
    run.expect_exit(1);
    run.expect("url", "ok", &[]);
    run.expect(
        "reachability",
        "FAIL",
        &["refused the connection", "--listen"],
    );
    run.expect("tls", "skip", &["cannot be reached"]);

    // With `--json`, stdout is the array alone, failures included.
    let run = doctor_in(home.path(), &["--url", &url, "--json"]);
    run.expect_exit(1);
    let rows = array(serde_json::from_str::<Value>(&run.stdout).expect("one JSON document"));
    let reach = rows.iter().find(|r| r["check"] == "reachability").unwrap();
    assert_eq!(reach["verdict"], "fail", "{reach:#}");
    assert!(
        reach["fix"].as_str().unwrap().contains("--listen"),
        "{reach:#}"
    );
}

#[test]
fn an_untrusted_certificate_fails_tls_and_says_which_trust_and_what_it_presents() {
    let server = Server::start(ServerOpts::default());
    let home = server.path("home");
    let url = server.url();
    let presented = format!("it presents `{}`", server.fingerprint());
    let run = doctor_in(&home, &["--url", &url]);
    run.expect_exit(1);
    run.expect(
        "tls",
        "FAIL",
        &["system's root certificates", &presented, "--ca-fingerprint"],
    );
    run.expect("clock", "skip", &[]);

    let other = format!("sha256:{}", "ab".repeat(32));
    let run = doctor_in(&home, &["--url", &url, "--ca-fingerprint", &other]);
    run.expect_exit(1);
    run.expect(
        "tls",
        "FAIL",
        &[
            "pinned fingerprint",
            "another certificate than the pinned one",
            &presented,
        ],
    );
}

#[test]
fn clock_skew_warns_over_a_few_seconds_and_fails_over_a_minute() {
    let server = Server::start(ServerOpts::default());
    let run = doctor(&server, "machine", &["--clock-offset", "10"]);
    run.expect_exit(0);
    run.expect("clock", "warn", &["ahead of the server's", "set-ntp"]);
    let run = doctor(&server, "machine", &["--clock-offset", "-120"]);
    run.expect_exit(1);
    run.expect("clock", "FAIL", &["behind the server's", "more than 60 s"]);
}

#[test]
fn an_unsafe_state_dir_fails_with_the_chmod_that_fixes_it() {
    let server = Server::start(ServerOpts::default());
    enrolled(&server, "machine", "edge-01");
    let state = server.path("machine");
    let identity = state.join("identity.json");
    std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = doctor(&server, "machine", &[]);
    run.expect_exit(1);
    run.expect(
        "state-dir",
        "FAIL",
        &[
            "readable by other users",
            &format!("`chmod 600 {}`", identity.display()),
        ],
    );

    std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = doctor(&server, "machine", &[]);
    run.expect_exit(1);
    run.expect(
        "state-dir",
        "FAIL",
        &[
            "other users can write",
            &format!("`chmod 700 {}`", state.display()),
        ],
    );
    run.expect("identity", "skip", &["cannot use this state dir"]);
}

#[test]
fn an_identity_the_server_does_not_know_fails_and_says_which_file() {
    let server = Server::start(ServerOpts::default());
    enrolled(&server, "machine", "edge-01");
    server.cli_ok(&["workers", "remove", "edge-01"]);
    let run = doctor(&server, "machine", &[]);
    run.expect_exit(1);
    let identity = server.path("machine").join("identity.json");
    run.expect(
        "identity",
        "FAIL",
        &[
            "does not know the identity",
            &identity.display().to_string(),
            "fresh `--state-dir`",
        ],
    );

    // No cached identity at all: a clear skip.
    let run = doctor(&server, "fresh", &[]);
    run.expect("identity", "skip", &["no cached identity"]);
}

#[test]
fn auto_enrollment_off_fails_for_a_worker_with_the_secret_and_on_is_ok() {
    let server = Server::start(ServerOpts::default());
    let with_secret = ["--name", "edge-01", "--enrollment-key", SECRET];
    let run = doctor(&server, "machine", &with_secret);
    run.expect_exit(1);
    run.expect(
        "auto-enrollment",
        "FAIL",
        &["off on the server", "muster enrollment enable"],
    );
    enable(&server, SECRET, &[]);
    let run = doctor(&server, "machine", &with_secret);
    run.expect_exit(0);
    run.expect("auto-enrollment", "ok", &["on"]);
}

#[test]
fn community_edition_fails_the_license_row_with_trial_and_install() {
    let server = Server::start(ServerOpts {
        edition: Edition::Community,
        ..ServerOpts::default()
    });
    let run = doctor(&server, "machine", &[]);
    run.expect_exit(1);
    run.expect(
        "license",
        "FAIL",
        &[
            "Community Edition",
            "muster license trial",
            "muster license install",
        ],
    );
}

#[test]
fn a_job_waiting_for_the_worker_is_not_sent_to_the_doctors_connection() {
    let server = Server::start(ServerOpts::default());
    enrolled(&server, "machine", "edge-01");
    let queued = server.cli_json(&[
        "job", "run", "--detach", "--worker", "edge-01", "--", "true",
    ]);
    let id = queued["id"].as_str().unwrap().to_owned();
    let run = doctor(&server, "machine", &[]);
    run.expect_exit(0);
    run.expect("identity", "ok", &[]);
    let shown = server.cli_json(&["job", "show", &id]);
    assert_eq!(shown["state"], "queued", "{shown:#}");
    let _worker = server.worker("machine").start();
    crate::harness::wait_until("the job to succeed", STARTUP, || {
        let shown = server.cli_json(&["job", "show", &id]);
        (
            (shown["state"] == "succeeded").then_some(()),
            format!("{shown:#}"),
        )
    });
}

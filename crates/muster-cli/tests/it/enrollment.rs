//! Auto-enrollment with the shared secret, with real processes: switching it on and off, the
//! write-only secret, workers that enroll with it and cache their identity, rotation,
//! re-enrollment, the guard rails, and the seed's troubleshooting table.
//!
//! Over 400 lines: 16 tests of one feature, each a whole scenario with real processes, and the
//! helpers only they use (enabling, secrets, the audit records of refusals) at the top. Split, the
//! files would share those helpers through yet another module.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{
    STARTUP, Server, ServerOpts, Worker, assert_has_keys, assert_utc_time, dead_port, error_line,
    find, parse_time, refused_count, snapshot_settings, wait_until,
};
use crate::refusals::{exits_at_once, expect_exit, one_gives_up};

/// Secrets used by these tests: distinctive, so a leak is easy to find.
pub const SECRET: &str = "it-shared-secret-0f3c9a7e5d1b4c8a9e2f7d6c5b4a3928";
const SECRET_2: &str = "it-rotated-secret-77aa13c4e9d2b8f6a1c3e5d7f9b2a4c6";
const WRONG: &str = "it-wrong-secret-5e8d2c1b9a7f6e4d3c2b1a0f9e8d7c6b";

static NEXT_FILE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// Writes `secret` (with a trailing newline, as an editor leaves it) to a file in the test's
/// temp dir, readable by its owner only.
pub fn secret_file(server: &Server, secret: &str) -> PathBuf {
    let n = NEXT_FILE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = server.path(&format!("secret-{n}"));
    std::fs::write(&path, format!("{secret}\n")).expect("write the secret file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// `muster enrollment enable --secret-file F [EXTRA]... --json`.
pub fn enable(server: &Server, secret: &str, extra: &[&str]) -> Value {
    let file = secret_file(server, secret);
    let file = file.to_str().expect("utf-8 path");
    let mut args = vec!["enrollment", "enable", "--secret-file", file];
    args.extend_from_slice(extra);
    let answer = server.cli_json(&args);
    assert_eq!(answer["status"]["enabled"], true, "{answer:#}");
    assert!(
        answer["generated_secret"].is_null(),
        "a chosen secret is not echoed back: {answer:#}"
    );
    answer
}

pub fn status(server: &Server) -> Value {
    server.cli_json(&["enrollment", "status"])
}

/// Audit records of refused enrollment attempts whose detail mentions `reason`.
fn refusals(server: &Server, reason: &str) -> Vec<Value> {
    server
        .audit()
        .into_iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .unwrap_or_default()
                .starts_with("enroll")
                && e["outcome"] == "refused"
                && e["detail"].as_str().unwrap_or_default().contains(reason)
        })
        .collect()
}

#[track_caller]
fn assert_refusal_audited(server: &Server, target: &str, reason: &str) {
    let found = refusals(server, reason);
    assert!(
        found
            .iter()
            .any(|e| e["target"] == target && e["remote_addr"] == "127.0.0.1"),
        "no refused enrollment of `{target}` with `{reason}` in the audit log: {:#?}",
        server.audit()
    );
}

fn count_actions(server: &Server, action: &str, outcome: &str) -> usize {
    server
        .audit()
        .iter()
        .filter(|e| e["action"] == action && e["outcome"] == outcome)
        .count()
}

/// The secret `enable --generate` printed in its human output: on a line of its own and in the
/// ready-to-paste worker command line.
fn printed_secret(out: &str) -> String {
    let from_command = out
        .split("MUSTER_AUTO_ENROLLMENT_KEY=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .map(|word| word.trim_matches('\''))
        .unwrap_or_else(|| panic!("no worker command line with the secret in:\n{out}"))
        .to_owned();
    assert!(
        out.lines().any(|l| l.trim() == from_command),
        "the secret is not on a line of its own:\n{out}"
    );
    from_command
}

#[test]
fn auto_enrollment_is_off_by_default_and_a_short_secret_is_refused() {
    let server = Server::start_default();
    let initial = status(&server);
    assert_has_keys(&initial, &["enabled", "secret_set_at", "enrolled_count"]);
    assert_eq!(initial["enabled"], false, "{initial:#}");
    assert!(initial["secret_set_at"].is_null(), "{initial:#}");
    assert_eq!(initial["enrolled_count"], 0, "{initial:#}");
    let table = server.cli_ok(&["enrollment", "status"]);
    assert!(table.contains("disabled"), "{table}");
    assert!(table.contains("never"), "no secret was ever set:\n{table}");

    // A worker presenting a secret is refused: it is off.
    let mut w = server.worker("off").secret("off", SECRET).start();
    expect_exit(&mut w, 3, "disabled");
    assert!(server.workers().is_empty());

    let audit_before = server.audit();
    let short = "s".repeat(31);
    // From a file...
    let file = secret_file(&server, &short);
    let (code, line) = server.cli_err(&[
        "enrollment",
        "enable",
        "--secret-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{line}");
    snapshot_settings().bind(|| insta::assert_snapshot!(line));
    let from_file = line;
    // ... from standard input ...
    let out = server.cli_stdin(
        &["enrollment", "enable", "--secret-file", "-"],
        format!("{short}\n").as_bytes(),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let line = error_line(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(line, from_file);
    // ... and straight at the API, which checks it too.
    let (status_code, body) = crate::harness::block_on(async {
        let response = server
            .http()
            .post(format!("{}/api/v1/enrollment/enable", server.url()))
            .bearer_auth(server.admin_token())
            .json(&serde_json::json!({ "secret": short }))
            .send()
            .await
            .expect("POST enable");
        let code = response.status().as_u16();
        (
            code,
            response.json::<Value>().await.expect("JSON error body"),
        )
    });
    assert_eq!(status_code, 400, "{body:#}");
    assert_eq!(body["error"]["code"], "invalid_secret", "{body:#}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("at least 32"),
        "{body:#}"
    );
    assert!(!body.to_string().contains(&short), "the secret is echoed");
    // Enabling with no secret at all, when none was ever set, is refused too.
    let (code, line) = server.cli_err(&["enrollment", "enable"]);
    assert_ne!(code, 0);
    assert!(line.contains("no secret"), "{line}");

    // Nothing changed.
    assert_eq!(status(&server), initial);
    assert_eq!(
        server.audit(),
        audit_before,
        "a refused change left records"
    );

    // Nor does a short secret change a secret that is set: not by enable, not by rotate.
    enable(&server, SECRET, &[]);
    let set = status(&server);
    for verb in ["enable", "rotate"] {
        let (code, line) =
            server.cli_err(&["enrollment", verb, "--secret-file", file.to_str().unwrap()]);
        assert_eq!(code, 2, "{line}");
        assert!(line.contains("at least 32"), "{line}");
    }
    assert_eq!(status(&server), set);
    let mut w = server.worker("still").secret("still", SECRET).start();
    server.wait_status("still", "connected", STARTUP);
    w.assert_running();
}

#[test]
fn generate_prints_a_random_secret_once_and_never_again() {
    let server = Server::start_default();
    let out = server.cli_ok(&["enrollment", "enable", "--generate"]);
    let first = printed_secret(&out);
    assert!(first.len() >= 32, "`{first}` is too short");
    assert!(
        first
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "`{first}` is not base64url or hex"
    );
    assert!(out.contains("only this once"), "{out}");

    // A second --generate makes a different one (and replaces the first).
    let answer = server.cli_json(&["enrollment", "enable", "--generate"]);
    let second = answer["generated_secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no generated_secret in {answer:#}"))
        .to_owned();
    assert_ne!(second, first, "two generated secrets are the same");
    assert_eq!(second.len(), first.len());
    assert_eq!(answer["status"]["enabled"], true);
    let set_at = assert_utc_time(&answer["status"], "secret_set_at");

    // Never shown again: not by status, in either form.
    let st = status(&server);
    assert_eq!(st["enabled"], true);
    assert_eq!(parse_time(st["secret_set_at"].as_str().unwrap()), set_at);
    for text in [
        st.to_string(),
        server.cli_ok(&["enrollment", "status"]),
        server.cli_ok(&["audit", "--json", "--limit", "1000"]),
    ] {
        assert!(
            !text.contains(&first),
            "the first secret shows again:\n{text}"
        );
        assert!(!text.contains(&second), "the secret shows again:\n{text}");
    }

    // It works, and the first one no longer does.
    let mut w = server.worker("gen-ok").secret("gen-ok", &second).start();
    let rec = server.wait_status("gen-ok", "connected", STARTUP);
    assert_eq!(rec["enrolled_via"], "secret");
    let mut old = server.worker("gen-old").secret("gen-old", &first).start();
    expect_exit(&mut old, 3, "does not match");
    w.assert_running();
}

#[test]
fn a_secret_file_or_standard_input_sets_the_secret() {
    let server = Server::start_default();
    // The human output confirms, and does not echo the secret.
    let file = secret_file(&server, SECRET);
    let out = server.cli_ok(&[
        "enrollment",
        "enable",
        "--secret-file",
        file.to_str().unwrap(),
    ]);
    assert!(out.contains("enabled"), "{out}");
    assert!(!out.contains(SECRET), "the secret is echoed:\n{out}");
    let answer = status(&server);
    let set_at = assert_utc_time(&answer, "secret_set_at");
    assert_eq!(answer["enrolled_count"], 0);

    let mut a = server.worker("file-a").secret("file-a", SECRET).start();
    server.wait_status("file-a", "connected", STARTUP);

    // Standard input (`-`) replaces it.
    let out = server.cli_stdin(
        &["enrollment", "enable", "--secret-file", "-", "--json"],
        format!("{SECRET_2}\n").as_bytes(),
    );
    assert!(out.status.success(), "{out:?}");
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(answer["generated_secret"].is_null(), "{answer:#}");
    let replaced_at = assert_utc_time(&answer["status"], "secret_set_at");
    assert!(replaced_at > set_at, "secret_set_at did not move");

    let mut b = server.worker("stdin-b").secret("stdin-b", SECRET_2).start();
    server.wait_status("stdin-b", "connected", STARTUP);
    let mut c = server.worker("file-c").secret("file-c", SECRET).start();
    expect_exit(&mut c, 3, "does not match");

    assert_eq!(status(&server)["enrolled_count"], 2);
    a.assert_running();
    b.assert_running();
}

#[test]
fn a_worker_configured_only_by_environment_enrolls_caches_and_restarts_without_the_secret() {
    let server = Server::start_default();
    enable(&server, SECRET, &[]);
    let name = "ingest-us-east-01";

    // MUSTER_URL, MUSTER_WORKER_NAME, MUSTER_AUTO_ENROLLMENT_KEY, MUSTER_STATE_DIR and
    // MUSTER_CA_FINGERPRINT: no flags at all.
    let mut worker = server
        .worker("ingest-state")
        .via_env()
        .secret(name, SECRET)
        .start();
    let first = server.wait_status(name, "connected", STARTUP);
    assert_eq!(first["enrolled_via"], "secret", "{first:#}");
    assert_eq!(first["machine_id"], worker.machine_id(), "{first:#}");
    assert!(first["expires_at"].is_null(), "{first:#}");

    // The identity is cached in the state dir, owner-only, without the secret.
    let identity_path = worker.state_dir.join("identity.json");
    let identity = worker.identity();
    assert_eq!(identity["worker_id"], first["id"], "{identity:#}");
    assert_eq!(identity["name"], name);
    assert_eq!(identity["enrolled_via"], "secret");
    let mode = std::fs::metadata(&identity_path)
        .expect("identity.json")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "identity.json must be owner-only");
    let cached = std::fs::read_to_string(&identity_path).unwrap();
    assert!(!cached.contains(SECRET), "the secret is cached:\n{cached}");

    assert_eq!(status(&server)["enrolled_count"], 1);
    let enrolls = count_actions(&server, "enroll.secret", "ok");
    assert_eq!(enrolls, 1);

    // Restart with the secret removed from the configuration: the cached identity is used, even
    // with auto-enrollment switched off in the meantime.
    worker.kill9();
    server.wait_status(name, "disconnected", STARTUP);
    server.cli_ok(&["enrollment", "disable"]);
    let mut again = server
        .worker("ingest-state")
        .via_env()
        .env("MUSTER_WORKER_NAME", name)
        .start();
    let resumed = server.wait_status(name, "connected", STARTUP);
    again.assert_running();
    assert_eq!(
        resumed["id"], first["id"],
        "a restart must keep the identity"
    );
    assert_eq!(again.machine_id(), worker.machine_id());
    assert_eq!(server.workers().len(), 1);
    assert_eq!(
        count_actions(&server, "enroll.secret", "ok"),
        enrolls,
        "the restart enrolled again instead of using its cached identity"
    );
}

#[test]
fn disable_blocks_new_enrollments_at_once_and_enrolled_workers_keep_working() {
    let server = Server::start_default();
    enable(&server, SECRET, &[]);
    let mut first = server.worker("kept").secret("kept", SECRET).start();
    let rec = server.wait_status("kept", "connected", STARTUP);

    let disabled = server.cli_json(&["enrollment", "disable"]);
    assert_eq!(disabled["enabled"], false, "{disabled:#}");
    assert!(
        disabled["secret_set_at"].is_string(),
        "disabling keeps the secret: {disabled:#}"
    );
    assert_eq!(disabled["enrolled_count"], 1);
    assert_eq!(status(&server)["enabled"], false);
    assert!(
        server
            .cli_ok(&["enrollment", "status"])
            .contains("disabled")
    );

    // At once: the very next enrollment is refused, with exit 3 and the reason.
    let mut late = server.worker("late").secret("late", SECRET).start();
    let line = exits_at_once(&mut late, 3);
    snapshot_settings().bind(|| insta::assert_snapshot!(line));
    assert_refusal_audited(&server, "late", "disabled");
    assert!(find(&server.workers(), "late").is_none());

    // The enrolled worker was not touched, and still connects after a restart.
    first.assert_running();
    assert_eq!(
        server.wait_status("kept", "connected", STARTUP)["id"],
        rec["id"]
    );
    first.kill9();
    server.wait_status("kept", "disconnected", STARTUP);
    let mut restarted = server.worker("kept").start();
    server.wait_status("kept", "connected", STARTUP);
    restarted.assert_running();

    let audit = server.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "enrollment.disable" && e["actor"] == "admin"),
        "{audit:#?}"
    );

    // Enabling again without a new secret keeps the old one.
    let answer = server.cli_json(&["enrollment", "enable"]);
    assert_eq!(answer["status"]["enabled"], true, "{answer:#}");
    assert_eq!(answer["status"]["secret_set_at"], disabled["secret_set_at"]);
    let mut later = server.worker("later").secret("later", SECRET).start();
    server.wait_status("later", "connected", STARTUP);
    later.assert_running();
}

#[test]
fn rotate_keeps_enrolled_workers_and_new_ones_need_the_new_secret() {
    let server = Server::start_default();
    let answer = enable(&server, SECRET, &[]);
    let set_at = assert_utc_time(&answer["status"], "secret_set_at");
    let mut first = server.worker("before").secret("before", SECRET).start();
    let rec = server.wait_status("before", "connected", STARTUP);

    // Rotation needs a new secret.
    let (code, line) = server.cli_err(&["enrollment", "rotate"]);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("new secret"), "{line}");

    let file = secret_file(&server, SECRET_2);
    let rotated = server.cli_json(&[
        "enrollment",
        "rotate",
        "--secret-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(rotated["status"]["enabled"], true, "{rotated:#}");
    assert!(rotated["generated_secret"].is_null(), "{rotated:#}");
    let rotated_at = assert_utc_time(&rotated["status"], "secret_set_at");
    assert!(rotated_at > set_at, "secret_set_at did not move");

    // The enrolled worker keeps working, also across a restart.
    first.assert_running();
    first.kill9();
    server.wait_status("before", "disconnected", STARTUP);
    let mut restarted = server.worker("before").secret("before", SECRET).start();
    assert_eq!(
        server.wait_status("before", "connected", STARTUP)["id"],
        rec["id"]
    );
    restarted.assert_running();

    // The old secret no longer enrolls anyone; the new one does.
    let mut old = server
        .worker("old-secret")
        .secret("old-secret", SECRET)
        .start();
    let line = exits_at_once(&mut old, 3);
    snapshot_settings().bind(|| insta::assert_snapshot!(line));
    assert_refusal_audited(&server, "old-secret", "does not match");
    let mut new = server
        .worker("new-secret")
        .secret("new-secret", SECRET_2)
        .start();
    server.wait_status("new-secret", "connected", STARTUP);

    // A generated rotation: printed once, and the previous secret stops working.
    let generated = server.cli_json(&["enrollment", "rotate", "--generate"]);
    let third = generated["generated_secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{generated:#}"))
        .to_owned();
    let mut stale = server.worker("stale").secret("stale", SECRET_2).start();
    expect_exit(&mut stale, 3, "does not match");
    let mut fresh = server.worker("fresh").secret("fresh", &third).start();
    server.wait_status("fresh", "connected", STARTUP);

    assert_eq!(count_actions(&server, "enrollment.rotate", "ok"), 2);
    assert_eq!(status(&server)["enrolled_count"], 3);
    restarted.assert_running();
    new.assert_running();
    fresh.assert_running();
}

#[test]
fn re_enrollment_supersedes_a_disconnected_worker_but_not_a_connected_one() {
    let server = Server::start_default();
    enable(&server, SECRET, &[]);
    let mut first = server.worker("edge-first").secret("edge", SECRET).start();
    let original = server.wait_status("edge", "connected", STARTUP);

    // While it is connected, another machine cannot take the name.
    let mut second = server.worker("edge-second").secret("edge", SECRET).start();
    expect_exit(&mut second, 3, "already in use by a connected worker");
    assert_refusal_audited(&server, "edge", "already in use by a connected worker");
    first.assert_running();
    assert_eq!(
        server.wait_status("edge", "connected", STARTUP)["id"],
        original["id"]
    );

    // Once it is gone, a fresh state dir with the current secret takes over the name.
    first.kill9();
    server.wait_status("edge", "disconnected", STARTUP);
    let mut third = server.worker("edge-third").secret("edge", SECRET).start();
    let list = server.wait_workers("the new edge to connect", STARTUP, |list| {
        find(list, "edge")
            .is_some_and(|w| w["status"] == "connected" && w["machine_id"] == third.machine_id())
    });
    assert_eq!(list.len(), 1, "one worker per name: {list:#?}");
    let replacement = find(&list, "edge").unwrap();
    assert_ne!(replacement["id"], original["id"], "a new identity");
    assert_eq!(third.identity()["worker_id"], replacement["id"]);

    let audit = server.audit();
    let old_id = original["id"].as_str().unwrap();
    assert!(
        audit.iter().any(|e| e["action"] == "worker.superseded"
            && e["target"] == "edge"
            && e["detail"].as_str().unwrap_or_default().contains(old_id)),
        "no worker.superseded record naming {old_id}: {audit:#?}"
    );

    // The old identity's key is useless now.
    let mut old = server.worker("edge-first").start();
    let line = exits_at_once(&mut old, 4);
    snapshot_settings().bind(|| insta::assert_snapshot!(line));
    third.assert_running();
    assert_eq!(
        server.wait_status("edge", "connected", STARTUP)["id"],
        replacement["id"]
    );
}

#[test]
fn two_machines_enrolling_one_name_at_the_same_moment_end_with_one_identity() {
    let server = Server::start_default();
    enable(&server, SECRET, &[]);
    let mut a = server.worker("twin-a").secret("twin", SECRET).start();
    let mut b = server.worker("twin-b").secret("twin", SECRET).start();

    let (winner, loser) = one_gives_up(&mut a, &mut b);
    assert_eq!(loser.wait_exit(STARTUP), 3, "{}", loser.logs.dump());
    let line = loser.error_line();
    assert!(
        line.contains("just enrolled by another machine")
            || line.contains("already in use by a connected worker"),
        "{line}"
    );
    assert!(
        !loser.state_dir.join("identity.json").exists(),
        "the loser cached an identity"
    );

    let rec = server.wait_status("twin", "connected", STARTUP);
    std::thread::sleep(Duration::from_millis(500));
    winner.assert_running();
    let list = server.workers();
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(rec["machine_id"], winner.machine_id());
    assert_eq!(rec["id"], winner.identity()["worker_id"]);
    assert_eq!(count_actions(&server, "enroll.secret", "ok"), 1);
    assert_eq!(count_actions(&server, "enroll.secret", "refused"), 1);
    assert_eq!(status(&server)["enrolled_count"], 1);
}

#[test]
fn an_enrollment_window_closes_by_itself() {
    let server = Server::start_default();
    let before = time::OffsetDateTime::now_utc() - time::Duration::milliseconds(100);
    let answer = enable(&server, SECRET, &["--for", "2s"]);
    let after = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(100);
    let closes = assert_utc_time(&answer["status"], "window_closes_at");
    let two = time::Duration::seconds(2);
    assert!(
        closes >= before + two && closes <= after + two,
        "the window closes at {closes}, not 2 s after the command ({before} .. {after})"
    );

    let mut inside = server.worker("inside").secret("inside", SECRET).start();
    server.wait_status("inside", "connected", STARTUP);

    // Nobody switches it off; it closes at its deadline.
    let wait = closes - time::OffsetDateTime::now_utc() + time::Duration::milliseconds(300);
    if wait.is_positive() {
        std::thread::sleep(wait.unsigned_abs());
    }
    let st = status(&server);
    assert_eq!(st["enabled"], false, "the window is still open: {st:#}");
    assert!(
        server
            .cli_ok(&["enrollment", "status"])
            .contains("disabled")
    );
    let mut outside = server.worker("outside").secret("outside", SECRET).start();
    expect_exit(&mut outside, 3, "window closed");
    assert_refusal_audited(&server, "outside", "window closed");
    inside.assert_running();
    server.wait_status("inside", "connected", STARTUP);
}

#[test]
fn max_enrollments_closes_the_window_after_that_many() {
    let server = Server::start_default();
    let answer = enable(&server, SECRET, &["--max-enrollments", "2"]);
    assert_eq!(answer["status"]["max_enrollments"], 2, "{answer:#}");
    assert_eq!(answer["status"]["enrollments_in_window"], 0, "{answer:#}");

    let mut one = server.worker("one").secret("one", SECRET).start();
    let mut two = server.worker("two").secret("two", SECRET).start();
    server.wait_workers("two enrolled", STARTUP, |list| {
        list.len() == 2 && list.iter().all(|w| w["status"] == "connected")
    });
    let st = status(&server);
    assert_eq!(st["enrollments_in_window"], 2, "{st:#}");
    assert_eq!(st["enabled"], false, "the limit is used up: {st:#}");

    let mut three = server.worker("three").secret("three", SECRET).start();
    expect_exit(&mut three, 3, "have all been used");
    assert_refusal_audited(&server, "three", "have all been used");
    assert_eq!(server.workers().len(), 2);
    one.assert_running();
    two.assert_running();
}

#[test]
fn a_name_pattern_refuses_other_names() {
    let server = Server::start_default();
    let answer = enable(&server, SECRET, &["--name-pattern", "ingest-*"]);
    assert_eq!(answer["status"]["name_pattern"], "ingest-*", "{answer:#}");

    let mut ok = server
        .worker("ingest-01")
        .secret("ingest-01", SECRET)
        .start();
    server.wait_status("ingest-01", "connected", STARTUP);
    let mut lines = Vec::new();
    for name in ["db-01", "ingest"] {
        let mut refused = server.worker(name).secret(name, SECRET).start();
        lines.push(exits_at_once(&mut refused, 3));
    }
    // The first refusal of its kind from this address is recorded at once, with its name; the
    // second is counted into the summary its window ends with.
    assert_refusal_audited(&server, "db-01", "does not match the allowed pattern");
    snapshot_settings().bind(|| insta::assert_snapshot!(lines.join("\n")));
    assert_eq!(server.workers().len(), 1);
    ok.assert_running();
}

#[test]
fn repeated_wrong_secrets_from_one_address_are_rate_limited() {
    let server = Server::start_default();
    enable(&server, SECRET, &[]);

    // Ten wrong guesses are each refused as such...
    let mut guesses: Vec<Worker> = (0..10)
        .map(|i| {
            let name = format!("guess-{i}");
            server.worker(&name).secret(&name, WRONG).start()
        })
        .collect();
    for w in &mut guesses {
        assert_eq!(w.wait_exit(STARTUP), 3, "{}", w.logs.dump());
        assert!(
            w.error_line().contains("does not match"),
            "{}",
            w.error_line()
        );
    }
    // The first is recorded at once; the other nine are counted for the window's summary.
    assert_eq!(refusals(&server, "does not match").len(), 1);

    // ... and then the address is blocked, even for the right secret: the worker is told to
    // wait (a transient refusal: it keeps trying, and says so).
    let mut blocked = server.worker("patient").secret("patient", SECRET).start();
    wait_until("the worker to be rate-limited", STARTUP, || {
        let log = blocked.stderr();
        (
            log.contains("too many failed enrollment attempts")
                .then_some(()),
            log,
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    blocked.assert_running();
    assert!(
        blocked.stderr().contains("retrying in"),
        "{}",
        blocked.stderr()
    );
    assert!(server.workers().is_empty());
    assert_eq!(status(&server)["enrolled_count"], 0);
    let limited = refusals(&server, "too many failed enrollment attempts");
    assert!(
        limited
            .iter()
            .any(|e| e["target"] == "patient" && e["remote_addr"] == "127.0.0.1"),
        "the rate-limited attempt is audited: {limited:#?}"
    );
}

#[test]
fn troubleshooting_table_worker_exits_immediately_or_shows_enrollment_errors() {
    let server = Server::start_default();
    // Nothing listens here: a worker that went to the network would retry forever instead of
    // exiting, so an exit proves the configuration was checked first.
    let nowhere = format!("https://127.0.0.1:{}", dead_port());

    // Secret missing (a name, no secret, nothing cached).
    let mut w = server
        .worker("no-secret")
        .url(&nowhere)
        .via_env()
        .env("MUSTER_WORKER_NAME", "no-secret")
        .start();
    let mut lines = vec![exits_at_once(&mut w, 2)];
    // Worker name unset (the secret, no name).
    let mut w = server
        .worker("no-name")
        .url(&nowhere)
        .via_env()
        .env("MUSTER_AUTO_ENROLLMENT_KEY", SECRET)
        .start();
    lines.push(exits_at_once(&mut w, 2));

    // Auto-enrollment disabled.
    let mut w = server
        .worker("while-off")
        .secret("while-off", SECRET)
        .start();
    lines.push(exits_at_once(&mut w, 3));
    assert_refusal_audited(&server, "while-off", "disabled");

    enable(&server, SECRET, &[]);
    // Secret mismatch.
    let mut w = server.worker("mismatch").secret("mismatch", WRONG).start();
    lines.push(exits_at_once(&mut w, 3));
    assert_refusal_audited(&server, "mismatch", "does not match");

    // Wrong URL scheme: http:// for the HTTPS server.
    let http_url = server.url().replacen("https://", "http://", 1);
    let mut w = server
        .worker("plain")
        .url(http_url)
        .secret("plain", SECRET)
        .start();
    lines.push(exits_at_once(&mut w, 2));

    // TLS trust: the self-signed certificate is not pinned.
    let mut w = server
        .worker("untrusted")
        .no_fingerprint()
        .secret("untrusted", SECRET)
        .start();
    lines.push(exits_at_once(&mut w, 7));

    // None of these enrolled anyone.
    assert!(server.workers().is_empty(), "{:#?}", server.workers());

    // Cached ID/API key mismatch: the server no longer knows the cached identity.
    let mut w = server
        .worker("forgotten")
        .secret("forgotten", SECRET)
        .start();
    server.wait_status("forgotten", "connected", STARTUP);
    w.kill9();
    server.wait_status("forgotten", "disconnected", STARTUP);
    server.cli_ok(&["workers", "remove", "forgotten"]);
    let mut w = server
        .worker("forgotten")
        .secret("forgotten", SECRET)
        .start();
    lines.push(exits_at_once(&mut w, 4));
    snapshot_settings().bind(|| insta::assert_snapshot!(lines.join("\n")));
}

#[test]
fn a_worker_with_the_secret_keeps_trying_while_the_server_is_down_then_enrolls() {
    let mut server = Server::start_default();
    enable(&server, SECRET, &[]);
    server.kill9();

    let mut worker = server.worker("far").secret("far", SECRET).start();
    std::thread::sleep(Duration::from_secs(3));
    // Unreachable is transient: it keeps trying, and its log says so.
    worker.assert_running();
    let log = worker.stderr();
    assert!(log.contains("cannot enroll yet"), "{log}");
    assert!(log.contains("retrying in"), "{log}");
    assert!(!worker.state_dir.join("identity.json").exists());

    server.restart();
    let rec = server.wait_status("far", "connected", Duration::from_secs(40));
    assert_eq!(rec["enrolled_via"], "secret");
    assert_eq!(rec["machine_id"], worker.machine_id());
    worker.assert_running();
}

#[test]
fn the_secret_never_shows_in_logs_api_responses_or_the_audit() {
    let server = Server::start(ServerOpts {
        env: vec![("MUSTER_LOG".into(), "debug".into())],
        ..Default::default()
    });
    enable(&server, SECRET, &[]);
    let debug = |name: &str, secret: &str| {
        server
            .worker(name)
            .secret(name, secret)
            .env("MUSTER_LOG", "debug")
            .start()
    };
    let mut a = debug("leak-a", SECRET);
    server.wait_status("leak-a", "connected", STARTUP);
    let mut wrong = debug("leak-wrong", WRONG);
    assert_eq!(wrong.wait_exit(STARTUP), 3, "{}", wrong.logs.dump());
    let generated = server.cli_json(&["enrollment", "rotate", "--generate"]);
    let new_secret = generated["generated_secret"]
        .as_str()
        .expect("generated_secret")
        .to_owned();
    let mut b = debug("leak-b", &new_secret);
    server.wait_status("leak-b", "connected", STARTUP);
    let mut stale = debug("leak-stale", SECRET);
    assert_eq!(stale.wait_exit(STARTUP), 3, "{}", stale.logs.dump());
    let keys: Vec<String> = [&a, &b]
        .iter()
        .map(|w| {
            w.identity()["api_key"]
                .as_str()
                .expect("api_key")
                .to_owned()
        })
        .collect();

    let responses = [
        (
            "enrollment status --json",
            server.cli_ok(&["enrollment", "status", "--json"]),
        ),
        (
            "enrollment status",
            server.cli_ok(&["enrollment", "status"]),
        ),
        (
            "workers list --json",
            server.cli_ok(&["workers", "list", "--json"]),
        ),
        ("workers list", server.cli_ok(&["workers", "list"])),
        (
            "workers show",
            server.cli_ok(&["workers", "show", "leak-a", "--json"]),
        ),
        (
            "audit --json",
            server.cli_ok(&["audit", "--json", "--limit", "1000"]),
        ),
        ("audit", server.cli_ok(&["audit", "--limit", "1000"])),
        ("the server's log", server.all_output()),
    ];
    let logs = &responses[7].1;
    assert!(
        logs.contains("enrolled with the auto-enrollment secret"),
        "the server logged nothing about the enrollment; is the log captured?\n{logs}"
    );
    let workers = [
        ("leak-a", &a),
        ("leak-wrong", &wrong),
        ("leak-b", &b),
        ("leak-stale", &stale),
    ];
    let worker_logs: Vec<(String, String)> = workers
        .iter()
        .map(|(n, w)| {
            (
                format!("the log of worker {n}"),
                format!("{}{}", w.logs.stdout(), w.stderr()),
            )
        })
        .collect();
    for (what, text) in responses
        .iter()
        .map(|(w, t)| ((*w).to_owned(), t.clone()))
        .chain(worker_logs)
    {
        for secret in [SECRET, WRONG, new_secret.as_str()] {
            assert!(
                !text.contains(secret),
                "a secret appears in {what}:\n{text}"
            );
        }
        for key in &keys {
            assert!(!text.contains(key), "an API key appears in {what}:\n{text}");
        }
    }
    a.assert_running();
    b.assert_running();
}

/// POSTs `/api/v1/enroll` `count` times at once, each a new machine and name with `secret`;
/// returns each (status, body).
fn enroll_burst(server: &Server, prefix: &str, count: usize, secret: &str) -> Vec<(u16, Value)> {
    let client = server.http();
    let url = format!("{}/api/v1/enroll", server.url());
    let base = server.url();
    crate::harness::block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..count {
            let (client, url) = (client.clone(), url.clone());
            let body = serde_json::json!({
                "machine_id": format!("{prefix}-machine-{i:03}"),
                "name": format!("{prefix}-{i}"),
                "enrollment_key": secret,
            });
            let base = base.clone();
            set.spawn(async move {
                let body = crate::harness::signed_enrollment(&client, &base, body).await;
                let response = client.post(&url).json(&body).send().await.expect("POST");
                let code = response.status().as_u16();
                (code, response.json::<Value>().await.expect("JSON"))
            });
        }
        let mut answers = Vec::new();
        while let Some(answer) = set.join_next().await {
            answers.push(answer.expect("task"));
        }
        answers
    })
}

#[test]
fn a_burst_of_right_secrets_all_enroll_and_a_burst_of_wrong_ones_gets_ten_tries() {
    let mut server = Server::start_default();
    enable(&server, SECRET, &[]);

    // A fleet bootstrapping from behind one address: all at once, all enrolled.
    let fleet = enroll_burst(&server, "fleet", 20, SECRET);
    let enrolled = fleet
        .iter()
        .filter(|(c, b)| *c == 200 && b["api_key"].is_string())
        .count();
    assert_eq!(enrolled, 20, "{fleet:#?}");

    // Guesses from one address, all at once: no more than ten are checked.
    let answers = enroll_burst(&server, "burst", 30, WRONG);
    let mismatched = answers
        .iter()
        .filter(|(_, b)| b["error"]["code"] == "secret_mismatch")
        .count();
    let limited = answers
        .iter()
        .filter(|(c, b)| *c == 429 && b["error"]["code"] == "rate_limited")
        .count();
    assert_eq!(mismatched + limited, 30, "{answers:#?}");
    assert!(
        mismatched <= 10,
        "{mismatched} wrong secrets were checked from one address in a burst; the limit is 10 a minute"
    );
    // Every refusal is accounted for: the first of each kind at once, the rest in the summary
    // written when the window closes (here: at a graceful stop).
    server.restart_gracefully();
    let records = server.audit();
    assert_eq!(
        refused_count(&records, "enroll", "does not match", "secret_mismatch"),
        mismatched as u64,
        "{records:#?}"
    );
    assert_eq!(
        refused_count(
            &records,
            "enroll",
            "too many failed enrollment attempts",
            "rate_limited"
        ),
        limited as u64,
        "{records:#?}"
    );
    assert_eq!(status(&server)["enrolled_count"], 20);
}

//! Editions and licenses with real processes: Community Edition refuses every external join
//! (exit 3, one line, logged and audited) while the built-in worker runs jobs; a trial or an
//! installed license lifts that with the server running; seats run out; a bad license changes
//! nothing; and a license past its grace refuses new workers while the ones that joined stay
//! connected and keep reconnecting.
//! (Over 400 lines: each test tells one operator's story end to end, with the exact lines a
//! user reads.)

use std::time::Duration;

use serde_json::Value;

use crate::harness::license::{self, terms};
use crate::harness::{Edition, STARTUP, Server, ServerOpts, refused_count};
use crate::refusals::exits_at_once;

/// What a worker prints when Community Edition refuses it.
const COMMUNITY_REFUSAL: &str = "error: this server runs muster Community Edition, where only the built-in worker runs jobs: external workers cannot join; hint: an admin starts a 30-day trial with `muster license trial` or installs a license with `muster license install FILE`";

/// What an admin command that prepares a worker prints on stderr in Community Edition.
const COMMUNITY_WARNING: &str = "warning: this server runs Community Edition: no external worker can join until a license is installed; start a 30-day trial with `muster license trial` or install a license with `muster license install FILE`";

fn community() -> Server {
    Server::start(ServerOpts {
        edition: Edition::Community,
        ..ServerOpts::default()
    })
}

/// Runs an admin command that must succeed; returns (stdout, stderr).
fn run(server: &Server, args: &[&str]) -> (String, String) {
    let out = server.cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "`muster {}` failed: {stderr}",
        args.join(" ")
    );
    (String::from_utf8(out.stdout).expect("utf-8"), stderr)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect()
}

#[test]
fn community_edition_refuses_every_external_join_while_the_builtin_worker_runs_jobs() {
    let server = Server::start(ServerOpts {
        edition: Edition::Community,
        builtin_worker: true,
        ..ServerOpts::default()
    });
    let shown = server.cli_json(&["license", "show"]);
    assert_eq!(shown["edition"], "community");
    assert_eq!(shown["state"], "valid");
    assert_eq!(shown["max_workers"], 0);
    assert_eq!(shown["can_join"], false);
    let human = server.cli_ok(&["license", "show"]);
    assert!(human.contains("muster license trial"), "{human}");
    // The built-in worker runs jobs.
    let out = server.cli_ok(&["job", "run", "--", "echo", "from the built-in worker"]);
    assert!(out.contains("from the built-in worker"), "{out}");

    // A token: made, with a warning on stderr (and JSON alone on stdout); its worker refused.
    let (stdout, stderr) = run(
        &server,
        &["token", "create", "edge-1", "--duration", "1h", "--json"],
    );
    assert_eq!(warnings(&stderr), [COMMUNITY_WARNING]);
    let token = json(&stdout)["token"].as_str().expect("token").to_owned();
    let mut w = server.worker("edge-1").token(&token).start();
    assert_eq!(exits_at_once(&mut w, 3), COMMUNITY_REFUSAL);

    // The shared secret: switched on with a warning; its worker refused.
    let (stdout, stderr) = run(&server, &["enrollment", "enable", "--generate", "--json"]);
    assert_eq!(warnings(&stderr), [COMMUNITY_WARNING]);
    let secret = json(&stdout)["generated_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let mut w = server.worker("auto-1").secret("auto-1", &secret).start();
    assert_eq!(exits_at_once(&mut w, 3), COMMUNITY_REFUSAL);

    // A pre-created worker: made with a warning; its first connection refused.
    let (stdout, stderr) = run(&server, &["workers", "create", "pre-1", "--json"]);
    assert_eq!(warnings(&stderr), [COMMUNITY_WARNING]);
    let created = json(&stdout);
    let mut w = server
        .worker("pre-1")
        .env("MUSTER_WORKER_ID", created["id"].as_str().expect("id"))
        .env(
            "MUSTER_WORKER_API_KEY",
            created["api_key"].as_str().expect("key"),
        )
        .start();
    assert_eq!(exits_at_once(&mut w, 3), COMMUNITY_REFUSAL);

    // Nothing joined: the token is unused, the pre-created worker unbound.
    assert_eq!(server.token("edge-1")["state"], "unused");
    let workers = server.workers();
    let names: Vec<_> = workers
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"builtin") && names.contains(&"pre-1"));
    // Logged at WARN, and audited (aggregated, as every refused attempt).
    let log = server.logs().stderr();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains(
                "an external worker was refused: this server runs muster Community Edition"
            )),
        "{log}"
    );
    let audit = server.audit();
    for action in ["enroll.token", "enroll.secret", "connect"] {
        assert_eq!(
            refused_count(&audit, action, "Community Edition", "license_required"),
            1,
            "{action}: {audit:#?}"
        );
    }
    // Commands that prepare nothing warn about nothing.
    let (_, stderr) = run(&server, &["workers", "list"]);
    assert_eq!(warnings(&stderr), Vec::<&str>::new());
}

#[test]
fn a_trial_lifts_the_limit_with_the_server_running_and_runs_once_per_fleet() {
    let server = community();
    let (token, _) = server.create_token("edge-1", "1h");
    let mut refused = server.worker("edge-1").token(&token).start();
    assert_eq!(exits_at_once(&mut refused, 3), COMMUNITY_REFUSAL);

    let (stdout, stderr) = run(&server, &["license", "trial"]);
    assert!(
        stdout.starts_with(
            "Started the 30-day trial: external workers can join, without a limit, until "
        ),
        "{stdout}"
    );
    assert_eq!(
        warnings(&stderr),
        Vec::<&str>::new(),
        "shown on stdout, not twice"
    );
    // The same token now joins, with no restart.
    let mut worker = server.worker("edge-1").token(&token).start();
    server.wait_status("edge-1", "connected", STARTUP);
    let shown = server.cli_json(&["license", "show"]);
    assert_eq!(shown["edition"], "trial");
    assert_eq!(
        shown["state"], "expiring",
        "a 30-day trial is always near its end"
    );
    assert_eq!(shown["max_workers"], Value::Null);
    assert_eq!(shown["workers_used"], 1);
    assert!(shown["trial_started_at"].is_string());
    // Admin commands say when it ends.
    let (_, stderr) = run(&server, &["workers", "list"]);
    let said = warnings(&stderr);
    assert_eq!(said.len(), 1, "{stderr}");
    assert!(
        said[0].starts_with("warning: the trial expires on ") && said[0].contains("(in 29 days)"),
        "{stderr}"
    );

    // Once per fleet: a second attempt says when the first ran.
    let (code, line) = server.cli_err(&["license", "trial"]);
    assert_eq!(code, 1);
    let started = shown["trial_started_at"].as_str().unwrap();
    let ends = shown["trial_ends_at"].as_str().unwrap();
    assert_eq!(
        line,
        format!(
            "error: this fleet's trial already ran, from {} to {}; a trial runs once per fleet; hint: install a license with `muster license install FILE`",
            &started[..10],
            &ends[..10]
        )
    );

    // Removing it closes joining, and only that: the worker stays.
    let (stdout, _) = run(&server, &["license", "remove"]);
    assert!(
        stdout.starts_with("This server runs Community Edition now"),
        "{stdout}"
    );
    let (next, _) = server.create_token("edge-2", "1h");
    let mut late = server.worker("edge-2").token(&next).start();
    assert_eq!(exits_at_once(&mut late, 3), COMMUNITY_REFUSAL);
    std::thread::sleep(Duration::from_secs(4));
    worker.assert_running();
    assert_eq!(
        server.wait_status("edge-1", "connected", STARTUP)["name"],
        "edge-1"
    );
}

#[test]
fn an_installed_license_lifts_the_limit_until_its_seats_run_out() {
    let server = community();
    let file = server.path("license.txt");
    std::fs::write(&file, license::sign(Some(2), -1, 365)).expect("write the license");
    let (stdout, _) = run(&server, &["license", "install", file.to_str().unwrap()]);
    assert!(
        stdout.starts_with("Installed license `lic-test-"),
        "{stdout}"
    );
    assert!(stdout.contains("for `ACME Test`"), "{stdout}");
    assert!(stdout.contains("0 of 2 used"), "{stdout}");
    let mut workers = Vec::new();
    for name in ["edge-1", "edge-2"] {
        let (token, _) = server.create_token(name, "1h");
        workers.push(server.worker(name).token(&token).start());
        server.wait_status(name, "connected", STARTUP);
    }
    // The next token is made, with a warning that its worker cannot join.
    let (stdout, stderr) = run(
        &server,
        &["token", "create", "edge-3", "--duration", "1h", "--json"],
    );
    assert_eq!(
        warnings(&stderr),
        [
            "warning: all 2 worker seats of the license are taken (2 of 2 used): no new worker can join until a seat is freed (`muster workers remove NAME`) or a license with more seats is installed"
        ]
    );
    let token = json(&stdout)["token"].as_str().unwrap().to_owned();
    let mut third = server.worker("edge-3").token(&token).start();
    assert_eq!(
        exits_at_once(&mut third, 3),
        "error: all 2 worker seats of the license are taken (2 of 2 used); hint: an admin frees a seat with `muster workers remove NAME`, or installs a license with more workers with `muster license install FILE`"
    );
    let shown = server.cli_json(&["license", "show"]);
    assert_eq!(shown["workers_used"], 2);
    assert_eq!(shown["max_workers"], 2);
    assert_eq!(shown["can_join"], false);
    // A revoked worker frees its seat at once.
    server.cli_ok(&["workers", "revoke", "edge-1"]);
    let mut third = server.worker("edge-3").token(&token).start();
    server.wait_status("edge-3", "connected", STARTUP);
    third.assert_running();
    workers[1].assert_running();
}

#[test]
fn a_bad_license_is_refused_with_its_reason_and_changes_nothing() {
    let server = Server::start_default();
    let before = server.cli_json(&["license", "show"]);
    assert_eq!(before["edition"], "licensed");
    let stranger = muster_license::IssuerSecret::generate().unwrap();
    let good = license::sign(None, -1, 100);
    let tampered = {
        let mut bytes = good.into_bytes();
        let i = "v4.public.".len() + 20;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let newer = muster_license::sign_document(
        license::issuer(),
        &muster_license::Document {
            format_version: 2,
            ..muster_license::Document::of(&terms(None, -1, 100))
        },
    )
    .unwrap();
    let expired_terms = terms(None, -30, -2);
    let expired_on = &expired_terms.expires_at.to_rfc3339()[..10];
    let cases = [
        (
            "hello".to_owned(),
            "error: the license is malformed: a muster license is one line starting with `v4.public.`; hint: install the license exactly as you received it: one line starting with `v4.public.`".to_owned(),
        ),
        (
            muster_license::sign(&stranger, &terms(None, -1, 100)).unwrap(),
            format!(
                "error: the license is signed by issuer `{}`, which this server does not trust; hint: licenses from muster are signed by muster's own key; to trust another issuer, start the server with `--license-issuer-key FILE`",
                stranger.public().id()
            ),
        ),
        (
            tampered,
            "error: the license's signature does not verify: it was changed after it was signed, or damaged; hint: install the license exactly as you received it: one line starting with `v4.public.`".to_owned(),
        ),
        (
            muster_license::sign(license::issuer(), &expired_terms).unwrap(),
            format!(
                "error: the license expired on {expired_on}; hint: ask the issuer for a renewed license"
            ),
        ),
        (
            license::sign(None, 2, 100),
            "error: the license is not valid yet: it is issued for ".to_owned(),
        ),
        (
            newer,
            "error: the license is in format version 2; this server reads format version 1; hint: upgrade muster, or ask the issuer for a license this version reads".to_owned(),
        ),
    ];
    let file = server.path("bad-license.txt");
    for (text, expected) in &cases {
        std::fs::write(&file, text).unwrap();
        let (code, line) = server.cli_err(&["license", "install", file.to_str().unwrap()]);
        assert_eq!(code, 1, "{line}");
        assert!(
            line.starts_with(expected.as_str()),
            "{line}\n  expected {expected}"
        );
    }
    assert_eq!(
        server.cli_json(&["license", "show"]),
        before,
        "nothing changed"
    );
    let audit = server.audit();
    let refused: Vec<_> = audit
        .iter()
        .filter(|r| r["action"] == "license.changed" && r["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), cases.len(), "each refusal is audited");
    // A file that cannot be read is the admin's typo: nothing is sent.
    let (code, line) = server.cli_err(&["license", "install", "/nonexistent/license"]);
    assert_eq!(code, 2, "{line}");
}

#[test]
fn past_its_grace_a_license_refuses_new_workers_while_those_that_joined_stay_and_reconnect() {
    let mut server = Server::start_default();
    let database = server.data_dir().join("muster.db");
    let database = database.to_str().unwrap();
    let (token, _) = server.create_token("edge-1", "7d");
    let mut by_token = server.worker("edge-1").token(&token).start();
    let created = server.cli_json(&["workers", "create", "pre-1"]);
    let mut precreated = server
        .worker("pre-1")
        .env("MUSTER_WORKER_ID", created["id"].as_str().unwrap())
        .env(
            "MUSTER_WORKER_API_KEY",
            created["api_key"].as_str().unwrap(),
        )
        .start();
    server.wait_status("edge-1", "connected", STARTUP);
    server.wait_status("pre-1", "connected", STARTUP);

    // Expired two days ago, as the store holds it: in grace, joining stays open.
    license::write_into_store(database, &terms(None, -60, -2));
    let shown = server.cli_json(&["license", "show"]);
    assert_eq!(shown["state"], "grace");
    assert_eq!(shown["can_join"], true);
    let (late, _) = server.create_token("edge-2", "7d");
    let mut in_grace = server.worker("edge-2").token(&late).start();
    server.wait_status("edge-2", "connected", STARTUP);

    // Expired fifteen days ago: past the fourteen days of grace, new workers are refused.
    let past = terms(None, -60, -15);
    license::write_into_store(database, &past);
    let shown = server.cli_json(&["license", "show"]);
    assert_eq!(shown["state"], "expired");
    assert_eq!(shown["can_join"], false);
    let (token3, _) = server.create_token("edge-3", "7d");
    let mut refused = server.worker("edge-3").token(&token3).start();
    let expires = &past.expires_at.to_rfc3339()[..10];
    let grace_ends = &past
        .expires_at
        .saturating_add(muster_core::license::GRACE)
        .to_rfc3339()[..10];
    assert_eq!(
        exits_at_once(&mut refused, 3),
        format!(
            "error: the license for `ACME Test` expired on {expires} and its grace period ended on {grace_ends}: external workers cannot join; hint: an admin installs a renewed license with `muster license install FILE`"
        )
    );
    // Admin commands say so.
    let (_, stderr) = run(&server, &["workers", "list"]);
    assert!(
        warnings(&stderr)
            .first()
            .is_some_and(|w| w.starts_with("warning: the license for `ACME Test` expired on ")),
        "{stderr}"
    );
    // The workers that joined stay connected (past the idle timeout) ...
    std::thread::sleep(Duration::from_secs(4));
    for (name, worker) in [
        ("edge-1", &mut by_token),
        ("pre-1", &mut precreated),
        ("edge-2", &mut in_grace),
    ] {
        worker.assert_running();
        server.wait_status(name, "connected", STARTUP);
    }
    // ... and come back after a server restart.
    server.restart_gracefully();
    for name in ["edge-1", "pre-1", "edge-2"] {
        server.wait_status(name, "connected", STARTUP * 2);
    }
    by_token.assert_running();
    precreated.assert_running();
    in_grace.assert_running();
    // The restarted server warns in its log (and then once a day).
    let log = server.logs().stderr();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("the license for `ACME Test` expired on")
            && l.contains("grace period ended")),
        "{log}"
    );
    // And a new worker is still refused.
    let mut again = server.worker("edge-3").token(&token3).start();
    let line = exits_at_once(&mut again, 3);
    assert!(line.contains("external workers cannot join"), "{line}");
}

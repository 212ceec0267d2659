//! Running muster as a service: the diagnostics listener (metrics that move, readiness that
//! follows the database), logs as JSON without library noise, `--version`, completions and man
//! pages, and a database from a newer muster refused at start.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{Proxy, STARTUP, Server, ServerOpts, muster, wait_until};

/// The value of `name{labels}` in a scrape, parsed as Prometheus text format.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics is Prometheus text format");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn scrape(server: &Server) -> String {
    let (status, body) = server.diag("/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until `name{labels}` reads `value` (metrics are read as things happen, not at once).
fn wait_metric(server: &Server, name: &str, labels: &[(&str, &str)], value: f64) -> String {
    wait_until(
        &format!("{name}{labels:?} = {value}"),
        Duration::from_secs(10),
        || {
            let text = scrape(server);
            let found = metric(&text, name, labels);
            (
                (found == Some(value)).then(|| text.clone()),
                format!("{found:?}\n{text}"),
            )
        },
    )
}

#[test]
fn metrics_move_as_a_worker_enrolls_connects_and_is_revoked() {
    let server = Server::start_default();
    assert_eq!(server.diag("/livez"), (200, "ok\n".to_owned()));
    let (status, body) = server.diag("/readyz");
    assert_eq!((status, body.as_str()), (200, "store: ok\nlistener: ok\n"));
    let before = scrape(&server);
    assert_eq!(metric(&before, "muster_workers_connected", &[]), Some(0.0));

    let (token, _) = server.create_token("edge-1", "1h");
    let mut worker = server.worker("edge-1").token(&token).start();
    server.wait_status("edge-1", "connected", STARTUP);
    let connected = wait_metric(&server, "muster_workers_connected", &[], 1.0);
    let enrolled = [("method", "token"), ("outcome", "enrolled")];
    assert_eq!(
        metric(&connected, "muster_enrollments_total", &enrolled),
        Some(1.0),
        "{connected}"
    );
    assert!(
        metric(&connected, "muster_store_commit_seconds_count", &[]).unwrap_or(0.0) > 0.0,
        "commits are timed: {connected}"
    );
    // Admin requests are counted by route template, never by path.
    assert!(
        connected.contains("muster_http_requests_total{route=\"/api/v1/tokens\",status=\"201\"} 1"),
        "{connected}"
    );
    assert!(
        !connected.contains("edge-1"),
        "no worker or token name in metrics: {connected}"
    );

    server.cli_ok(&["token", "revoke", "edge-1"]);
    assert_eq!(worker.wait_exit(Duration::from_secs(10)), 5);
    let revoked = wait_metric(
        &server,
        "muster_cutoffs_total",
        &[("reason", "revoked")],
        1.0,
    );
    assert_eq!(
        metric(&revoked, "muster_cutoff_seconds_count", &[]),
        Some(1.0),
        "{revoked}"
    );
    wait_metric(&server, "muster_workers_connected", &[], 0.0);

    // A refused enrollment is counted as one.
    let mut refused = server
        .worker("edge-2")
        .token("edge-2.not-a-real-secret-at-all")
        .start();
    assert_eq!(refused.wait_exit(STARTUP), 3);
    wait_metric(
        &server,
        "muster_enrollments_total",
        &[("method", "token"), ("outcome", "refused")],
        1.0,
    );
}

#[test]
fn jobs_are_counted_by_the_state_they_reach() {
    let server = Server::start(ServerOpts {
        builtin_worker: true,
        ..ServerOpts::default()
    });
    server.wait_status("builtin", "connected", STARTUP);
    assert_eq!(server.cli_ok(&["job", "run", "--", "true"]), "");
    let out = server.cli(&["job", "run", "--", "false"]);
    assert_eq!(out.status.code(), Some(1), "the command's own exit code");
    let text = wait_metric(&server, "muster_jobs_total", &[("state", "failed")], 1.0);
    assert_eq!(
        metric(&text, "muster_jobs_total", &[("state", "succeeded")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "muster_jobs_total", &[("state", "running")]),
        Some(2.0)
    );
    assert_eq!(metric(&text, "muster_jobs_queued", &[]), Some(0.0));
}

/// PostgreSQL on 127.0.0.1:5432 through a proxy the test cuts: the replica stops being ready
/// while its database is gone, and is ready again once it is back.
#[test]
fn a_replica_that_lost_its_database_is_not_ready() {
    let Some(db) = crate::replicas::Database::create() else {
        return;
    };
    let proxy = Proxy::start("127.0.0.1:5432".parse().expect("address"));
    let port = proxy.url().rsplit(':').next().expect("port").to_owned();
    let url = format!(
        "postgres://postgres@127.0.0.1:{port}/{}?connect_timeout=2",
        db.name()
    );
    let server = Server::start(ServerOpts {
        env: vec![("MUSTER_DATABASE_URL".into(), url)],
        ..ServerOpts::default()
    });
    assert_eq!(server.diag("/readyz").0, 200);

    proxy.stop_accepting();
    proxy.cut();
    let body = wait_until("/readyz to say 503", Duration::from_secs(20), || {
        let (status, body) = server.diag("/readyz");
        ((status == 503).then(|| body.clone()), body)
    });
    assert!(body.starts_with("store: "), "{body}");
    assert!(body.contains("listener: ok"), "{body}");
    assert_eq!(server.diag("/livez").0, 200, "still alive");

    proxy.start_accepting();
    wait_until("/readyz to say 200 again", Duration::from_secs(20), || {
        let (status, body) = server.diag("/readyz");
        ((status == 200).then_some(()), body)
    });
}

#[test]
fn the_default_diagnostics_address_taken_is_a_warning_and_an_explicit_one_an_error() {
    // Held here, or by something else already: either way taken.
    let _held = std::net::TcpListener::bind("127.0.0.1:7444");
    let server = Server::start(ServerOpts {
        diag_listen: None,
        ..ServerOpts::default()
    });
    assert!(server.info().diag_url.is_none(), "{:#}", server.info().raw);
    let stderr = server.logs().stderr();
    assert!(
        stderr.contains("default diagnostics address is taken"),
        "{stderr}"
    );

    // Asked for by name, the same address is a start error with a hint.
    let home = tempfile::tempdir().expect("temp dir");
    let out = muster(home.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--no-builtin-worker"])
        .args(["--diag-listen", "127.0.0.1:7444"])
        .arg("--data-dir")
        .arg(home.path().join("data"))
        .output()
        .expect("run muster serve");
    assert_eq!(out.status.code(), Some(1));
    let line = crate::harness::error_line(&String::from_utf8_lossy(&out.stderr));
    assert!(
        line.contains("cannot listen for diagnostics on `127.0.0.1:7444`"),
        "{line}"
    );
    assert!(line.contains("--diag-listen off"), "{line}");
}

/// Every line is one JSON object; at the default level only muster's own lines and libraries'
/// warnings appear; an admin action has its request line with method, route, status, actor and
/// duration.
#[test]
fn json_logs_carry_the_request_line_and_no_library_noise() {
    let server = Server::start(ServerOpts {
        env: vec![("MUSTER_LOG_FORMAT".into(), "json".into())],
        ..ServerOpts::default()
    });
    let (token, _) = server.create_token("edge-1", "1h");
    let mut worker = server.worker("edge-1").token(&token).start();
    server.wait_status("edge-1", "connected", STARTUP);
    worker.terminate(Duration::from_secs(10));

    let stderr = server.logs().stderr();
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let target = line["target"].as_str().unwrap_or_default();
        let level = line["level"].as_str().unwrap_or_default();
        assert!(
            target.starts_with("muster") || matches!(level, "WARN" | "ERROR"),
            "library noise at the default level: {line}"
        );
    }
    let created = lines
        .iter()
        .find(|l| l["message"] == "admin request" && l["span"]["route"] == "/api/v1/tokens")
        .unwrap_or_else(|| panic!("no request line for `token create`:\n{stderr}"));
    assert_eq!(created["level"], "INFO");
    assert_eq!(created["span"]["method"], "POST");
    assert_eq!(created["status"], 201);
    assert_eq!(created["actor"], "admin");
    assert!(created["duration_ms"].is_u64(), "{created}");
    // The worker's session lines carry its name and id.
    let connected = lines
        .iter()
        .find(|l| l["message"] == "worker connected")
        .unwrap_or_else(|| panic!("no `worker connected` line:\n{stderr}"));
    assert_eq!(connected["span"]["worker"], "edge-1", "{connected}");
    assert!(connected["span"]["worker_id"].is_string(), "{connected}");
    assert!(
        !stderr.contains("Some("),
        "an Option is shown with Debug in a log line:\n{stderr}"
    );
}

#[test]
fn version_names_the_commit_and_completions_and_man_pages_are_generated() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = muster(home.path()).arg("--version").output().expect("run");
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        );
    assert_eq!(
        version,
        format!("muster {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );

    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef muster"),
        ("fish", "complete -c muster"),
    ] {
        let out = muster(home.path())
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("backup"), "{shell} completes subcommands");
    }

    let pages = home.path().join("man");
    let out = muster(home.path())
        .args(["man", "--dir"])
        .arg(&pages)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let serve = std::fs::read_to_string(pages.join("muster-serve.1")).expect("muster-serve.1");
    assert!(serve.contains("diag\\-listen"), "{serve}");
    assert!(pages.join("muster.1").is_file());
    assert!(pages.join("muster-token-create.1").is_file());
}

/// A database another muster migrated past what this build knows is refused at start, with a
/// hint, and left as it was. (The test writes the future version with SQL of its own: no muster
/// command makes one, which is the point.)
#[test]
fn a_database_from_a_newer_muster_is_refused_at_start() {
    let mut server = Server::start_default();
    server.kill9();
    let db = server.data_dir().join("muster.db");
    let conn = rusqlite::Connection::open(&db).expect("open the database");
    let newest: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .expect("version");
    conn.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
        [newest + 1],
    )
    .expect("a future version");
    drop(conn);

    let home = tempfile::tempdir().expect("temp dir");
    let out = muster(home.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--diag-listen", "off"])
        .arg("--data-dir")
        .arg(server.data_dir())
        .output()
        .expect("run muster serve");
    assert_eq!(out.status.code(), Some(1));
    let line = crate::harness::error_line(&String::from_utf8_lossy(&out.stderr));
    assert!(
        line.contains(&format!(
            "written by a newer muster (schema version {}; this build knows versions up to {newest})",
            newest + 1
        )),
        "{line}"
    );
    let conn = rusqlite::Connection::open(&db).expect("open the database");
    let after: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .expect("version");
    assert_eq!(after, newest + 1, "the database is left as it was");
}

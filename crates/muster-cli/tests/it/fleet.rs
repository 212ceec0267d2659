//! The fleet as `muster workers list` shows it, outages of the server, and the audit trail of
//! enrollments.

use std::time::Duration;

use crate::harness::{Proxy, STARTUP, Server, assert_has_keys, assert_utc_time, find};

const WORKER_FIELDS: &[&str] = &[
    "id",
    "name",
    "status",
    "enrolled_via",
    "machine_id",
    "labels",
    "last_seen_at",
];

#[test]
fn workers_list_json_shape_and_every_status() {
    let server = Server::start_default();
    let (live, _) = server.create_token("live", "1h");
    let (gone, _) = server.create_token("gone", "1h");
    let (cut, _) = server.create_token("cut", "1h");
    let (brief, brief_created) = server.create_token("brief", "6s");
    let labelled = server.cli_json(&[
        "token",
        "create",
        "labelled",
        "--duration",
        "1h",
        "--label",
        "team=data",
    ]);
    let labelled_token = labelled["token"].as_str().expect("token").to_owned();

    let mut w_live = server.worker("live").token(&live).start();
    let mut w_gone = server.worker("gone").token(&gone).start();
    let mut w_cut = server.worker("cut").token(&cut).start();
    let mut w_brief = server.worker("brief").token(&brief).start();
    let mut w_labelled = server
        .worker("labelled")
        .token(&labelled_token)
        .arg("--label")
        .arg("zone=eu-1")
        .arg("--label")
        .arg("team=worker-says")
        .start();
    server.wait_workers("all five connected", STARTUP, |list| {
        list.len() == 5 && list.iter().all(|w| w["status"] == "connected")
    });

    let list = server.workers();
    for w in &list {
        assert_has_keys(w, WORKER_FIELDS);
        assert_eq!(w["enrolled_via"], "token", "{w:#}");
        assert_eq!(w["id"].as_str().map(str::len), Some(32), "{w:#}");
        assert!(w["labels"].is_object(), "labels is an object: {w:#}");
        assert_utc_time(w, "last_seen_at");
    }
    let live_rec = find(&list, "live").expect("live");
    assert_eq!(live_rec["machine_id"], w_live.machine_id());
    // Labels: the worker's own, with the token's winning where both set one.
    let labels = &find(&list, "labelled").expect("labelled")["labels"];
    assert_eq!(labels["zone"], "eu-1", "{labels:#}");
    assert_eq!(labels["team"], "data", "{labels:#}");
    assert!(w_labelled.is_running());

    // disconnected: the process is gone.
    w_gone.kill9();
    // revoked: its token was revoked.
    server.cli_ok(&["token", "revoke", "cut"]);
    assert_eq!(w_cut.wait_exit(STARTUP), 5);
    // expired: its token ran out.
    assert_eq!(w_brief.wait_exit(Duration::from_secs(15)), 6);

    let list = server.wait_workers("each status", STARTUP, |list| {
        let status = |n| find(list, n).map(|w| w["status"].clone());
        status("live") == Some("connected".into())
            && status("gone") == Some("disconnected".into())
            && status("cut") == Some("revoked".into())
            && status("brief") == Some("expired".into())
    });
    let brief_rec = find(&list, "brief").expect("brief");
    assert_eq!(brief_rec["expires_at"], brief_created["expires_at"]);
    // A disconnected worker still shows when it was last seen.
    assert_utc_time(find(&list, "gone").expect("gone"), "last_seen_at");

    // The human table has the documented columns and the same statuses.
    let table = server.cli_ok(&["workers", "list"]);
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "NAME",
        "STATUS",
        "ENROLLED VIA",
        "MACHINE",
        "LABELS",
        "LAST SEEN",
    ] {
        assert!(header.contains(column), "no {column} column in:\n{table}");
    }
    for status in ["connected", "disconnected", "revoked", "expired"] {
        assert!(table.contains(status), "no `{status}` in:\n{table}");
    }
    w_live.assert_running();
}

#[test]
fn after_a_server_restart_every_worker_is_disconnected_until_it_reconnects() {
    let mut server = Server::start_default();
    let proxy = Proxy::start(server.addr());
    let (t1, _) = server.create_token("first", "1h");
    let (t2, _) = server.create_token("second", "1h");
    let mut w1 = server.worker("first").url(proxy.url()).token(&t1).start();
    let mut w2 = server.worker("second").url(proxy.url()).token(&t2).start();
    let before = server.wait_workers("both connected", STARTUP, |list| {
        list.len() == 2 && list.iter().all(|w| w["status"] == "connected")
    });

    // The server records each connection as it opens (not awaited by the session): give
    // those writes a moment, far shorter than the periodic last-seen flush.
    std::thread::sleep(Duration::from_millis(500));

    // The workers cannot reach the server while it restarts.
    proxy.stop_accepting();
    server.kill9();
    server.restart();
    let during = server.workers();
    assert_eq!(during.len(), 2);
    for w in &during {
        assert_eq!(
            w["status"], "disconnected",
            "nobody is connected after a restart: {w:#}"
        );
        // They were connected a moment ago, and the listing should say when.
        assert_utc_time(w, "last_seen_at");
    }
    w1.assert_running();
    w2.assert_running();

    // Once they can, they come back by themselves, as the same workers.
    proxy.start_accepting();
    let after = server.wait_workers("both reconnected", Duration::from_secs(40), |list| {
        list.len() == 2 && list.iter().all(|w| w["status"] == "connected")
    });
    for name in ["first", "second"] {
        assert_eq!(
            find(&after, name).expect("listed")["id"],
            find(&before, name).expect("listed")["id"]
        );
    }
}

#[test]
fn a_worker_survives_the_server_being_down_for_a_while() {
    let mut server = Server::start_default();
    let (token, _) = server.create_token("patient", "1h");
    let mut worker = server.worker("patient").token(&token).start();
    let first = server.wait_status("patient", "connected", STARTUP);

    server.kill9();
    std::thread::sleep(Duration::from_secs(10));
    worker.assert_running();
    server.restart();

    // Backoff is capped and jittered: within the cap plus a margin, it is back.
    let back = server.wait_status("patient", "connected", Duration::from_secs(40));
    assert_eq!(back["id"], first["id"]);
    worker.assert_running();
    let log = worker.stderr();
    assert!(
        log.contains("reconnecting in"),
        "the worker does not say it is retrying:\n{log}"
    );

    // SIGTERM while it waits out a backoff delay is still a prompt, graceful stop.
    server.kill9();
    std::thread::sleep(Duration::from_secs(3));
    let asked = std::time::Instant::now();
    assert_eq!(worker.terminate(STARTUP), 0, "{}", worker.logs.dump());
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "the worker took {:?} to stop",
        asked.elapsed()
    );
}

#[test]
fn every_enrollment_attempt_is_audited_with_reason_and_address() {
    let server = Server::start_default();
    let (token, _) = server.create_token("watched", "1h");

    let mut first = server.worker("watched-a").token(&token).start();
    server.wait_status("watched", "connected", STARTUP);
    let machine_a = first.machine_id();
    let mut second = server.worker("watched-b").token(&token).start();
    assert_eq!(second.wait_exit(STARTUP), 4);
    let machine_b = second.machine_id();
    let mut malformed = server.worker("watched-c").token("watched-no-dot").start();
    assert_eq!(malformed.wait_exit(STARTUP), 3);
    let mut unknown = server
        .worker("watched-d")
        .token(&format!("ghost.{}", "B".repeat(43)))
        .start();
    assert_eq!(unknown.wait_exit(STARTUP), 3);
    first.assert_running();

    let enrolls: Vec<serde_json::Value> = server
        .audit()
        .into_iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .unwrap_or_default()
                .starts_with("enroll")
        })
        .collect();
    assert_eq!(enrolls.len(), 4, "one record per attempt: {enrolls:#?}");
    for e in &enrolls {
        assert_eq!(e["remote_addr"], "127.0.0.1", "{e:#}");
        assert_utc_time(e, "at");
        assert!(
            !e["detail"].as_str().unwrap_or_default().is_empty(),
            "{e:#}"
        );
    }
    let has = |outcome: &str, actor_machine: &str, target: &str, reason: &str| {
        enrolls.iter().any(|e| {
            e["outcome"] == outcome
                && e["actor"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(actor_machine)
                && e["target"] == target
                && e["detail"].as_str().unwrap_or_default().contains(reason)
        })
    };
    assert!(has("ok", &machine_a, "watched", "bound"), "{enrolls:#?}");
    assert!(
        has("refused", &machine_b, "watched", "bound to another machine"),
        "{enrolls:#?}"
    );
    assert!(has("refused", "", "-", "malformed"), "{enrolls:#?}");
    assert!(has("refused", "", "ghost", "not known"), "{enrolls:#?}");
}

#[test]
fn a_frozen_worker_is_dropped_after_the_idle_timeout_and_comes_back_when_thawed() {
    let server = Server::start_default();
    let (token, _) = server.create_token("frozen", "1h");
    let mut worker = server.worker("frozen").token(&token).start();
    let first = server.wait_status("frozen", "connected", STARTUP);

    // Its socket stays open, but nothing answers the server's pings.
    worker.freeze();
    let frozen_at = std::time::Instant::now();
    server.wait_status("frozen", "disconnected", Duration::from_secs(10));
    let took = frozen_at.elapsed();
    // --heartbeat 1s --idle-timeout 3s: gone after about 3 s of silence, not at the first
    // missed ping.
    assert!(
        took >= Duration::from_millis(1500),
        "dropped after {took:?}, before the idle timeout"
    );

    worker.thaw();
    let back = server.wait_status("frozen", "connected", STARTUP);
    assert_eq!(back["id"], first["id"]);
    worker.assert_running();
}

#[test]
fn a_worker_started_while_the_server_is_unreachable_enrolls_once_it_is() {
    let server = Server::start_default();
    let proxy = Proxy::start(server.addr());
    let (token, _) = server.create_token("early", "1h");
    proxy.stop_accepting();

    let mut worker = server
        .worker("early")
        .url(proxy.url())
        .token(&token)
        .start();
    std::thread::sleep(Duration::from_secs(3));
    // Unreachable is transient: it keeps trying, and nothing is bound yet.
    worker.assert_running();
    assert_eq!(server.token("early")["state"], "unused");
    let log = worker.stderr();
    assert!(log.contains("cannot enroll yet"), "{log}");

    proxy.start_accepting();
    server.wait_status("early", "connected", Duration::from_secs(40));
    assert_eq!(server.token("early")["bound_machine"], worker.machine_id());
    worker.assert_running();
}

//! Pre-created workers (`muster workers create`), and cutting workers off or deleting them
//! (`muster workers revoke|remove`) whichever way they enrolled.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::enrollment::{SECRET, enable};
use crate::harness::{STARTUP, Server, Worker, find, refused_count, snapshot_settings};
use crate::refusals::expect_exit;

/// `KEY=value` from the human output of `workers create`.
fn printed(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no `{key}=` line in:\n{out}"))
        .to_owned()
}

/// A worker started with a pre-created worker's credentials, in the environment.
fn start_precreated(server: &Server, state: &str, id: &str, key: &str) -> Worker {
    server
        .worker(state)
        .env("MUSTER_WORKER_ID", id)
        .env("MUSTER_WORKER_API_KEY", key)
        .start()
}

fn audited(server: &Server, action: &str, target: &str) -> bool {
    server
        .audit()
        .iter()
        .any(|e| e["action"] == action && e["target"] == target && e["actor"] == "admin")
}

#[test]
fn a_precreated_worker_gets_its_id_and_key_once_and_connects_with_them() {
    let server = Server::start_default();
    let out = server.cli_ok(&["workers", "create", "edge-02", "--label", "zone=b"]);
    let id = printed(&out, "MUSTER_WORKER_ID");
    let key = printed(&out, "MUSTER_WORKER_API_KEY");
    assert_eq!(id.len(), 32, "{out}");
    assert!(key.len() >= 32, "{out}");
    assert!(out.contains("only this once"), "{out}");

    let listed = server.wait_status("edge-02", "disconnected", STARTUP);
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["enrolled_via"], "precreated");
    assert!(listed["machine_id"].is_null(), "not bound yet: {listed:#}");
    assert_eq!(listed["labels"]["zone"], "b");
    assert!(audited(&server, "worker.create", "edge-02"));

    // The JSON form.
    let created = server.cli_json(&["workers", "create", "edge-03"]);
    let id3 = created["id"].as_str().expect("id").to_owned();
    let key3 = created["api_key"].as_str().expect("api_key").to_owned();
    assert_eq!(created["name"], "edge-03");
    assert_ne!(key3, key);

    // The name is taken now.
    let (code, line) = server.cli_err(&["workers", "create", "edge-02"]);
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("already exists"), "{line}");

    // Never shown again.
    for text in [
        server.cli_ok(&["workers", "list", "--json"]),
        server.cli_ok(&["workers", "list"]),
        server.cli_ok(&["workers", "show", "edge-02", "--json"]),
        server.cli_ok(&["workers", "show", "edge-02"]),
        server.cli_ok(&["audit", "--json", "--limit", "1000"]),
        server.all_output(),
    ] {
        assert!(!text.contains(&key), "the API key shows again:\n{text}");
        assert!(!text.contains(&key3), "the API key shows again:\n{text}");
    }

    // A worker with the id and key (no token, no secret) connects as that worker, and the
    // identity binds to its machine.
    let mut worker = server
        .worker("edge-02")
        .env("MUSTER_WORKER_ID", &id)
        .env("MUSTER_WORKER_API_KEY", &key)
        .env("MUSTER_LOG", "debug")
        .start();
    let rec = server.wait_status("edge-02", "connected", STARTUP);
    assert_eq!(rec["id"], id.as_str());
    assert_eq!(rec["enrolled_via"], "precreated");
    assert_eq!(rec["machine_id"], worker.machine_id());
    worker.assert_running();

    // Another machine with the same credentials is refused; so is a wrong key.
    let mut copy = start_precreated(&server, "edge-02-copy", &id, &key);
    expect_exit(&mut copy, 4, "another machine");
    let mut wrong = start_precreated(&server, "edge-03", &id3, &key);
    expect_exit(&mut wrong, 4, "not known");
    worker.assert_running();
    // Not even at debug level does the worker log its key.
    let log = format!("{}{}", worker.logs.stdout(), worker.stderr());
    assert!(log.contains("control channel open"), "{log}");
    assert!(!log.contains(&key), "the worker logged its API key:\n{log}");
    // The right key for edge-03 works.
    let mut three = start_precreated(&server, "edge-03-ok", &id3, &key3);
    server.wait_status("edge-03", "connected", STARTUP);
    three.assert_running();
}

/// Revokes `name` and checks its worker process ends with exit 5 at once.
fn revoke_and_expect_cut_off(server: &Server, worker: &mut Worker, name: &str) {
    let revoked = server.cli_json(&["workers", "revoke", name]);
    let returned = Instant::now();
    assert_eq!(revoked["status"], "revoked", "{revoked:#}");
    assert!(revoked["revoked_at"].is_string(), "{revoked:#}");
    let code = worker.wait_exit(Duration::from_secs(5));
    let took = returned.elapsed();
    assert_eq!(code, 5, "{}", worker.logs.dump());
    assert!(
        took < Duration::from_millis(1500),
        "`{name}` exited {took:?} after the revoke returned"
    );
    assert!(
        worker.error_line().contains("revoked"),
        "{}",
        worker.error_line()
    );
}

#[test]
fn revoking_a_worker_cuts_it_off_at_once_however_it_enrolled_and_keeps_it_out() {
    let mut server = Server::start_default();
    let (token, _) = server.create_token("by-token", "1h");
    enable(&server, SECRET, &[]);
    let created = server.cli_json(&["workers", "create", "by-hand"]);
    let (id, key) = (
        created["id"].as_str().unwrap().to_owned(),
        created["api_key"].as_str().unwrap().to_owned(),
    );

    let mut by_token = server.worker("by-token").token(&token).start();
    let mut by_secret = server
        .worker("by-secret")
        .secret("by-secret", SECRET)
        .start();
    let mut by_hand = start_precreated(&server, "by-hand", &id, &key);
    let list = server.wait_workers("three connected", STARTUP, |list| {
        list.len() == 3 && list.iter().all(|w| w["status"] == "connected")
    });
    let via = |n: &str| find(&list, n).unwrap()["enrolled_via"].clone();
    assert_eq!(via("by-token"), "token");
    assert_eq!(via("by-secret"), "secret");
    assert_eq!(via("by-hand"), "precreated");

    revoke_and_expect_cut_off(&server, &mut by_token, "by-token");
    revoke_and_expect_cut_off(&server, &mut by_secret, "by-secret");
    revoke_and_expect_cut_off(&server, &mut by_hand, "by-hand");
    let list = server.workers();
    for name in ["by-token", "by-secret", "by-hand"] {
        assert_eq!(find(&list, name).unwrap()["status"], "revoked", "{list:#?}");
        assert!(audited(&server, "worker.revoke", name), "{name}");
    }
    // The token went with its worker.
    assert_eq!(server.token("by-token")["state"], "revoked");

    // They stay out on restart: cached identities, the pre-created credentials, and the token
    // or the secret presented again from a fresh state dir.
    let mut again = server.worker("by-token").start();
    expect_exit(&mut again, 5, "revoked");
    let mut again = server
        .worker("by-secret")
        .secret("by-secret", SECRET)
        .start();
    expect_exit(&mut again, 5, "revoked");
    let mut again = start_precreated(&server, "by-hand", &id, &key);
    expect_exit(&mut again, 5, "revoked");
    let mut fresh = server.worker("by-token-fresh").token(&token).start();
    expect_exit(&mut fresh, 5, "revoked");
    let mut fresh = server
        .worker("by-secret-fresh")
        .secret("by-secret", SECRET)
        .start();
    expect_exit(&mut fresh, 5, "revoked");

    assert!(
        server.workers().iter().all(|w| w["status"] == "revoked"),
        "{:#?}",
        server.workers()
    );
    // The refused connections are one kind from one address: the first is recorded at once,
    // the others counted into the summary written when the window ends (here: a graceful stop).
    server.restart_gracefully();
    let records = server.audit();
    let refused_connects = refused_count(&records, "connect", "revoked", "worker_revoked");
    assert!(refused_connects >= 3, "{records:#?}");
}

#[test]
fn remove_deletes_a_disconnected_worker_and_is_refused_for_a_connected_one() {
    let server = Server::start_default();
    enable(&server, SECRET, &[]);
    let mut worker = server.worker("doomed").secret("doomed", SECRET).start();
    let rec = server.wait_status("doomed", "connected", STARTUP);

    let (code, line) = server.cli_err(&["workers", "remove", "doomed"]);
    assert_eq!(code, 1, "{line}");
    snapshot_settings().bind(|| insta::assert_snapshot!(line));
    worker.assert_running();
    let still: Value = server.wait_status("doomed", "connected", STARTUP);
    assert_eq!(still["id"], rec["id"]);
    assert!(!audited(&server, "worker.remove", "doomed"));

    worker.kill9();
    server.wait_status("doomed", "disconnected", STARTUP);
    let out = server.cli_json(&["workers", "remove", "doomed"]);
    assert_eq!(out["removed"], "doomed", "{out:#}");
    assert!(server.workers().is_empty(), "{:#?}", server.workers());
    assert!(audited(&server, "worker.remove", "doomed"));
    let (code, line) = server.cli_err(&["workers", "remove", "doomed"]);
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("no worker named"), "{line}");

    // Its cached identity is gone with it.
    let mut again = server.worker("doomed").start();
    expect_exit(&mut again, 4, "does not know the identity");

    // A revoked worker can be removed, which frees the name for a new enrollment.
    let mut next = server.worker("doomed-2").secret("doomed", SECRET).start();
    let second = server.wait_status("doomed", "connected", STARTUP);
    server.cli_ok(&["workers", "revoke", "doomed"]);
    assert_eq!(next.wait_exit(STARTUP), 5);
    server.cli_ok(&["workers", "remove", "doomed"]);
    let mut third = server.worker("doomed-3").secret("doomed", SECRET).start();
    let rec3 = server.wait_status("doomed", "connected", STARTUP);
    assert_ne!(rec3["id"], second["id"]);
    third.assert_running();
}

//! The seed's "Restart and reboot scenarios" table, one test per row, with real processes:
//!
//! | Scenario                      | Token state | What happens                                   |
//! |-------------------------------|-------------|------------------------------------------------|
//! | Socket blip                   | enrolled    | reconnects by itself; same machine id matches  |
//! | Process restart               | enrolled    | resumes from the state dir                     |
//! | Machine reboot (same disk)    | enrolled    | same as a process restart                      |
//! | Token expired                 | expired     | rejected; mint a new token                     |
//! | Token revoked                 | revoked     | rejected immediately                           |
//! | Second machine (different id) | enrolled    | rejected: bound to the first machine           |

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::harness::{Proxy, STARTUP, Server, find, parse_time};

/// Asserts the token is `enrolled` and bound to `machine`.
fn assert_bound(server: &Server, token: &str, machine: &str) {
    let t = server.token(token);
    assert_eq!(t["state"], "enrolled", "{t:#}");
    assert_eq!(t["bound_machine"], machine, "{t:#}");
}

#[test]
fn socket_blip_worker_reconnects_by_itself_with_the_same_identity() {
    let server = Server::start_default();
    let proxy = Proxy::start(server.addr());
    let (token, _) = server.create_token("blip", "1h");
    let mut worker = server.worker("blip").url(proxy.url()).token(&token).start();
    let first = server.wait_status("blip", "connected", STARTUP);
    let machine = worker.machine_id();
    assert_bound(&server, "blip", &machine);
    let enrollments = count_actions(&server, "enroll.token");

    for round in 1..=2 {
        let accepted = proxy.accepted();
        proxy.cut();
        // The worker comes back through a new connection, without anyone's help. (It may be
        // back before a poll could see it disconnected: the first retry waits at most 500 ms.)
        let again = server.wait_workers(
            &format!("a reconnection after blip {round}"),
            STARTUP,
            |list| {
                proxy.accepted() > accepted
                    && proxy.open() == 1
                    && find(list, "blip").is_some_and(|w| w["status"] == "connected")
            },
        );
        // The server saw the old channel go (and did not keep it as a ghost session).
        crate::harness::wait_until("the server to log the dropped channel", STARTUP, || {
            let log = server.logs().stderr();
            let n = log.matches("worker disconnected").count();
            (
                (n >= round).then_some(()),
                format!("{n} disconnections logged"),
            )
        });
        let again = find(&again, "blip").expect("blip");
        assert_eq!(again["id"], first["id"], "the worker id changed");
        assert_eq!(again["machine_id"], machine);
        worker.assert_running();
    }
    assert_bound(&server, "blip", &machine);
    assert_eq!(server.workers().len(), 1, "the blip created another worker");
    assert_eq!(
        count_actions(&server, "enroll.token"),
        enrollments,
        "a reconnection must use the cached identity, not enroll again"
    );
}

#[test]
fn a_reconnection_that_hangs_in_the_handshake_is_abandoned_and_retried() {
    let server = Server::start_default();
    let proxy = Proxy::start(server.addr());
    let (token, _) = server.create_token("hung", "1h");
    let mut worker = server.worker("hung").url(proxy.url()).token(&token).start();
    let first = server.wait_status("hung", "connected", STARTUP);

    // The path to the server breaks in the worst way: connections are accepted and then
    // nothing ever comes back (a TCP load balancer whose backend is gone).
    proxy.blackhole(true);
    proxy.cut();
    crate::harness::wait_until("the worker to try again", STARTUP, || {
        let n = proxy.accepted();
        ((n >= 2).then_some(()), format!("{n} connections accepted"))
    });
    std::thread::sleep(Duration::from_secs(1));
    // The path heals. Only a worker that gives up on the hung attempt gets through.
    proxy.blackhole(false);
    let back = server.wait_status("hung", "connected", Duration::from_secs(40));
    assert_eq!(back["id"], first["id"]);
    worker.assert_running();
}

#[test]
fn process_restart_resumes_from_the_cached_identity_without_the_token() {
    let server = Server::start_default();
    let (token, _) = server.create_token("restart", "1h");
    // This worker trusts the server through its CA file rather than the fingerprint.
    let ca_file = server.data_dir().join("tls/cert.pem");
    let ca = ca_file.to_str().expect("utf-8 path");
    let mut worker = server
        .worker("restart")
        .no_fingerprint()
        .arg("--ca-file")
        .arg(ca)
        .token(&token)
        .start();
    let first = server.wait_status("restart", "connected", STARTUP);
    let machine = worker.machine_id();
    assert_bound(&server, "restart", &machine);
    // The cached identity is owner-only.
    let identity_path = worker.state_dir.join("identity.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&identity_path)
            .expect("identity.json")
            .permissions(),
    ) & 0o777;
    assert_eq!(mode, 0o600, "identity.json must be owner-only");

    worker.kill9();
    server.wait_status("restart", "disconnected", STARTUP);

    // Same state dir, no token configured any more.
    let mut again = server
        .worker("restart")
        .no_fingerprint()
        .arg("--ca-file")
        .arg(ca)
        .start();
    let resumed = server.wait_status("restart", "connected", STARTUP);
    again.assert_running();
    assert_eq!(
        resumed["id"], first["id"],
        "a restart must keep the worker id"
    );
    assert_eq!(
        again.machine_id(),
        machine,
        "the machine id is kept in the state dir"
    );
    assert_bound(&server, "restart", &machine);
    assert_eq!(server.workers().len(), 1);

    // A cached identity wins over a token that is still configured: no second enrollment.
    let enrollments = count_actions(&server, "enroll.token");
    again.kill9();
    server.wait_status("restart", "disconnected", STARTUP);
    let mut third = server.worker("restart").token(&token).start();
    let resumed = server.wait_status("restart", "connected", STARTUP);
    third.assert_running();
    assert_eq!(resumed["id"], first["id"]);
    assert_eq!(count_actions(&server, "enroll.token"), enrollments);

    // The identity file lost but the machine id kept: the same machine presents the token
    // again and resumes as the same worker.
    third.kill9();
    server.wait_status("restart", "disconnected", STARTUP);
    std::fs::remove_file(third.state_dir.join("identity.json")).expect("remove identity");
    let mut fourth = server.worker("restart").token(&token).start();
    let resumed = server.wait_status("restart", "connected", STARTUP);
    fourth.assert_running();
    assert_eq!(
        resumed["id"], first["id"],
        "a re-enrollment must resume the same worker"
    );
    assert_bound(&server, "restart", &machine);
    assert_eq!(count_actions(&server, "enroll.token"), enrollments + 1);
    let audit = server.audit();
    let last = audit
        .iter()
        .find(|e| e["action"] == "enroll.token")
        .expect("an enrollment record");
    assert_eq!(last["outcome"], "ok", "{last:#}");
    assert!(
        last["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("resumed"),
        "{last:#}"
    );
    assert_eq!(server.workers().len(), 1);
}

#[test]
fn machine_reboot_server_and_worker_both_come_back() {
    let mut server = Server::start_default();
    let (token, _) = server.create_token("reboot", "1h");
    let mut worker = server.worker("reboot").token(&token).start();
    let first = server.wait_status("reboot", "connected", STARTUP);
    let machine = worker.machine_id();

    // Power cut: nothing shuts down cleanly.
    worker.kill9();
    server.kill9();
    server.restart();
    let listed = server.workers();
    assert_eq!(
        find(&listed, "reboot").expect("the worker survives in the database")["status"],
        "disconnected"
    );

    // The fingerprint as `openssl x509 -fingerprint -sha256` prints it: upper case, colons.
    let hex_part = server.fingerprint()["sha256:".len()..].to_ascii_uppercase();
    let pairs: Vec<&str> = (0..hex_part.len())
        .step_by(2)
        .map(|i| &hex_part[i..i + 2])
        .collect();
    let openssl_style = format!("sha256:{}", pairs.join(":"));
    let mut again = server
        .worker("reboot")
        .no_fingerprint()
        .arg("--ca-fingerprint")
        .arg(&openssl_style)
        .start();
    let resumed = server.wait_status("reboot", "connected", STARTUP);
    again.assert_running();
    assert_eq!(resumed["id"], first["id"]);
    assert_eq!(resumed["machine_id"], machine);
    assert_bound(&server, "reboot", &machine);
}

#[test]
fn token_expiry_cuts_off_the_connected_worker_at_the_deadline_and_keeps_it_out() {
    let server = Server::start_default();
    let (token, created) = server.create_token("fleeting", "5s");
    let expires = parse_time(created["expires_at"].as_str().expect("expires_at"));
    let mut worker = server.worker("fleeting").token(&token).start();
    let connected = server.wait_status("fleeting", "connected", Duration::from_secs(4));
    assert_eq!(
        connected["expires_at"], created["expires_at"],
        "{connected:#}"
    );

    // Cut off at the deadline, with the "expired" exit code.
    let code = worker.wait_exit(Duration::from_secs(15));
    let ended = OffsetDateTime::now_utc();
    assert_eq!(code, 6, "{}", worker.logs.dump());
    assert!(
        ended >= expires - time::Duration::milliseconds(100),
        "the worker was cut off at {ended}, before the deadline {expires}"
    );
    assert!(
        ended <= expires + time::Duration::seconds(2),
        "the worker was cut off at {ended}, long after the deadline {expires}"
    );
    let line = worker.error_line();
    assert!(line.contains("expired"), "{line}");

    assert_eq!(server.token("fleeting")["state"], "expired");
    let w = server.wait_status("fleeting", "expired", STARTUP);
    assert_eq!(w["name"], "fleeting");

    // Restarting it (cached identity) is refused with the same code.
    let mut again = server.worker("fleeting").start();
    assert_eq!(again.wait_exit(STARTUP), 6, "{}", again.logs.dump());
    assert!(again.error_line().contains("expired"));
    // And so is presenting the token from a fresh state dir.
    let mut fresh = server.worker("fleeting-fresh").token(&token).start();
    assert_eq!(fresh.wait_exit(STARTUP), 6, "{}", fresh.logs.dump());
}

#[test]
fn token_revocation_cuts_off_the_worker_within_a_second_and_keeps_it_out() {
    let server = Server::start_default();
    let (token, _) = server.create_token("doomed", "1h");
    let mut worker = server.worker("doomed").token(&token).start();
    server.wait_status("doomed", "connected", STARTUP);

    let revoked = server.cli_json(&["token", "revoke", "doomed"]);
    let returned = Instant::now();
    assert_eq!(revoked["state"], "revoked");
    let code = worker.wait_exit(Duration::from_secs(5));
    let took = returned.elapsed();
    assert_eq!(code, 5, "{}", worker.logs.dump());
    assert!(
        took < Duration::from_millis(1500),
        "the worker exited {took:?} after the revoke returned"
    );
    assert!(worker.error_line().contains("revoked"));
    assert_eq!(
        server.wait_status("doomed", "revoked", STARTUP)["name"],
        "doomed"
    );

    // Restarting it is refused at once, with the same code.
    let mut again = server.worker("doomed").start();
    assert_eq!(again.wait_exit(STARTUP), 5, "{}", again.logs.dump());
    assert!(again.error_line().contains("revoked"));
    // Presenting the revoked token from the same machine is refused too.
    std::fs::remove_file(again.state_dir.join("identity.json")).expect("remove identity");
    let mut with_token = server.worker("doomed").token(&token).start();
    assert_eq!(
        with_token.wait_exit(STARTUP),
        5,
        "{}",
        with_token.logs.dump()
    );

    // The refused connection is audited, with its reason.
    let audit = server.audit();
    assert!(
        audit.iter().any(|e| e["action"] == "connect"
            && e["outcome"] == "refused"
            && e["detail"].as_str().unwrap_or_default().contains("revoked")
            && e["remote_addr"] == "127.0.0.1"),
        "no refused connection in the audit log: {audit:#?}"
    );
}

#[test]
fn a_second_machine_presenting_the_token_is_refused() {
    let server = Server::start_default();
    let (token, _) = server.create_token("single", "1h");
    let mut first = server.worker("machine-a").token(&token).start();
    server.wait_status("single", "connected", STARTUP);
    let machine = first.machine_id();

    let mut second = server.worker("machine-b").token(&token).start();
    let code = second.wait_exit(STARTUP);
    assert_eq!(code, 4, "{}", second.logs.dump());
    let line = second.error_line();
    assert!(line.contains("bound to another machine"), "{line}");
    assert_ne!(second.machine_id(), machine);

    // The first machine keeps its worker and its binding.
    first.assert_running();
    server.wait_status("single", "connected", STARTUP);
    assert_bound(&server, "single", &machine);
    assert_eq!(server.workers().len(), 1);

    // Copying the first machine's identity file to another machine does not work either: the
    // identity is bound to the machine id.
    let third_dir = server.path("machine-c");
    std::fs::create_dir_all(&third_dir).unwrap();
    std::fs::copy(
        first.state_dir.join("identity.json"),
        third_dir.join("identity.json"),
    )
    .unwrap();
    let mut third = server.worker("machine-c").start();
    assert_eq!(third.wait_exit(STARTUP), 4, "{}", third.logs.dump());
    assert!(
        third.error_line().contains("another machine"),
        "{}",
        third.error_line()
    );
    first.assert_running();
    server.wait_status("single", "connected", STARTUP);
}

pub fn count_actions(server: &Server, action: &str) -> usize {
    server
        .audit()
        .iter()
        .filter(|e| e["action"] == action)
        .count()
}

//! A worker's cached identity against the credentials it is started with: a credential for
//! another worker stops it with the state dir and the choice; a freshly given credential for the
//! same worker takes over once the server refuses the cached identity for good; and a refused
//! identity with nothing fresh configured exits naming the state dir and the fix.

use crate::enrollment::enable;
use crate::harness::{STARTUP, Server, ServerOpts, error_line};

const SECRET_1: &str = "first-secret-with-at-least-32-characters";
const SECRET_2: &str = "second-secret-with-at-least-32-characters";

#[test]
fn a_token_for_another_worker_than_the_cached_one_stops_with_the_choice() {
    let server = Server::start(ServerOpts::default());
    let (first, _) = server.create_token("first", "1h");
    let mut worker = server.worker("machine").token(&first).start();
    server.wait_status("first", "connected", STARTUP);
    worker.terminate(STARTUP);

    let (second, _) = server.create_token("second", "1h");
    let mut again = server.worker("machine").token(&second).start();
    let code = again.wait_exit(STARTUP);
    assert_eq!(code, 2, "{}", again.stderr());
    let line = error_line(&again.stderr());
    let state_dir = server.path("machine");
    assert!(
        line.contains(&format!("`{}` holds worker `first`", state_dir.display())),
        "{line}"
    );
    assert!(line.contains("is for `second`"), "{line}");
    assert!(line.contains("--state-dir"), "{line}");
    assert_eq!(
        server.token("second")["state"],
        "unused",
        "the other token was not used"
    );
}

#[test]
fn a_fresh_secret_takes_over_a_refused_identity_and_the_old_one_does_not() {
    let server = Server::start(ServerOpts::default());
    enable(&server, SECRET_1, &[]);
    let mut worker = server.worker("machine").secret("edge-01", SECRET_1).start();
    server.wait_status("edge-01", "connected", STARTUP);

    // Revoked while the first secret is still configured: it stays out, and says where the
    // refused identity lives and how to go on.
    server.cli_ok(&["workers", "revoke", "edge-01"]);
    let code = worker.wait_exit(STARTUP);
    assert_eq!(code, 5, "{}", worker.stderr());
    let line = error_line(&worker.stderr());
    let identity = server.path("machine").join("identity.json");
    assert!(
        line.contains(&format!("`{}`", identity.display())),
        "{line}"
    );
    assert!(line.contains("fresh `--state-dir`"), "{line}");
    let mut again = server.worker("machine").secret("edge-01", SECRET_1).start();
    assert_eq!(again.wait_exit(STARTUP), 5, "{}", again.stderr());

    // The admin removes the worker and rotates the secret; the new secret, freshly given, is
    // used once the server refuses the cached identity: the worker enrolls with it and
    // replaces the cached identity.
    server.cli_ok(&["workers", "remove", "edge-01"]);
    let file = crate::enrollment::secret_file(&server, SECRET_2);
    server.cli_ok(&[
        "enrollment",
        "rotate",
        "--secret-file",
        file.to_str().unwrap(),
    ]);
    let _fresh = server.worker("machine").secret("edge-01", SECRET_2).start();
    let w = server.wait_status("edge-01", "connected", STARTUP);
    assert_eq!(w["enrolled_via"], "secret");
    let cached = std::fs::read_to_string(&identity).expect("identity.json");
    assert!(
        cached.contains(w["id"].as_str().unwrap()),
        "the new identity replaced the old"
    );
}

//! `muster serve`: what a first start leaves in the data dir, surviving `kill -9`, and stopping
//! on SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::harness::{STARTUP, Server, assert_utc_time, find};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn first_start_makes_database_certificate_admin_credential_and_server_file() {
    let server = Server::start_default();
    let data = server.data_dir();

    assert!(
        data.join("muster.db").is_file(),
        "no database in the data dir"
    );
    assert_eq!(mode(data), 0o700, "the data dir is owner-only");

    let admin_token = data.join("admin-token");
    assert_eq!(mode(&admin_token), 0o600, "admin-token must be owner-only");
    assert!(
        server.admin_token().len() >= 32,
        "the admin credential is too short to be a secret"
    );

    // server.json names this process, the real port, and the certificate.
    let info = server.info();
    assert!(
        info.url.starts_with("https://127.0.0.1:"),
        "url: {}",
        info.url
    );
    assert_ne!(
        info.port, 0,
        "server.json must record the port actually bound"
    );
    assert_eq!(info.raw["listen"], format!("127.0.0.1:{}", info.port));
    assert_utc_time(&info.raw, "started_at");

    // The printed fingerprint is the SHA-256 of the certificate's DER encoding, the same one
    // server.json records.
    let stdout = server.logs().stdout();
    let printed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TLS fingerprint: "))
        .unwrap_or_else(|| panic!("no `TLS fingerprint:` line on stdout:\n{stdout}"))
        .trim()
        .to_owned();
    assert_eq!(Some(&printed), info.fingerprint.as_ref());
    let hex_part = printed.strip_prefix("sha256:").expect("sha256: prefix");
    assert_eq!(hex_part.len(), 64, "{printed}");
    assert!(hex_part.bytes().all(|b| b.is_ascii_hexdigit()), "{printed}");

    let pem = std::fs::read(data.join("tls/cert.pem")).expect("tls/cert.pem");
    let der = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .expect("a certificate in cert.pem")
        .expect("valid PEM");
    let digest = hex::encode(sha2::Sha256::digest(der.as_ref()));
    assert_eq!(hex_part.to_ascii_lowercase(), digest);
    assert_eq!(
        mode(&data.join("tls/key.pem")),
        0o600,
        "the TLS key is owner-only"
    );

    // The admin credential's path is printed, the credential itself is not.
    assert!(
        stdout.contains(&admin_token.display().to_string()),
        "the admin credential's path is not printed:\n{stdout}"
    );
    assert!(
        !server.all_output().contains(&server.admin_token()),
        "the admin credential itself appears in the server's output"
    );

    // Admin commands find the server through the data dir alone.
    assert_eq!(server.tokens().len(), 0);
}

#[test]
fn tokens_and_certificate_survive_kill_9_and_a_restart() {
    let mut server = Server::start_default();
    let (_, created) = server.create_token("keep-unused", "1h");
    server.create_token("keep-revoked", "1h");
    server.cli_ok(&["token", "revoke", "keep-revoked"]);
    let before = server.tokens();
    let fingerprint = server.fingerprint();
    let admin = server.admin_token();
    let old_pid = server.pid();
    // Acknowledged means on disk: a token created just before the crash is there after it.
    server.create_token("last-second", "1h");

    server.kill9();
    // While it is down, admin commands say so in one line.
    let (code, line) = server.cli_err(&["token", "list"]);
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("cannot reach"), "{line}");
    server.restart();

    assert_ne!(server.pid(), old_pid, "server.json names the new process");
    assert_eq!(server.fingerprint(), fingerprint, "the certificate is kept");
    assert_eq!(server.admin_token(), admin, "the admin credential is kept");
    let mut after = server.tokens();
    let last = after
        .iter()
        .position(|t| t["name"] == "last-second")
        .expect("the token created right before kill -9 survives");
    assert_eq!(after.remove(last)["state"], "unused");
    assert_eq!(after, before, "tokens changed across kill -9 and restart");
    let unused = find(&after, "keep-unused").expect("keep-unused survives");
    assert_eq!(unused["state"], "unused");
    assert_eq!(unused["expires_at"], created["expires_at"]);
    assert_eq!(
        find(&after, "keep-revoked").expect("keep-revoked")["state"],
        "revoked"
    );
    let starts = server.all_output().matches("listening on").count();
    assert_eq!(starts, 2, "two runs of the server");
    // The second start reuses the certificate rather than making a new one.
    assert!(
        !server.logs().stdout().contains("self-signed, new"),
        "the restart generated a new certificate:\n{}",
        server.logs().stdout()
    );
}

#[test]
fn sigterm_stops_the_server_with_exit_0_and_a_worker_waits_for_it() {
    let mut server = Server::start_default();
    let (token, _) = server.create_token("stays", "1h");
    let mut worker = server.worker("stays").token(&token).start();
    server.wait_status("stays", "connected", STARTUP);

    let started = Instant::now();
    let code = server.terminate(Duration::from_secs(15));
    assert_eq!(code, 0, "SIGTERM is a graceful stop\n{}", server.dump());
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "the shutdown took {:?}",
        started.elapsed()
    );
    // The worker was told to come back later: it keeps trying instead of giving up.
    std::thread::sleep(Duration::from_secs(2));
    worker.assert_running();
    let log = worker.stderr();
    assert!(
        log.contains("asked this worker to come back later"),
        "the worker was not told to reconnect later:\n{log}"
    );

    // And comes back by itself once the server does.
    server.restart();
    server.wait_status("stays", "connected", Duration::from_secs(40));
    worker.assert_running();
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let server = Server::start_default();
    let server_json = std::fs::read_to_string(server.data_dir().join("server.json")).unwrap();

    let out = crate::harness::muster(&server.path("second"))
        .arg("serve")
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(["--listen", "127.0.0.1:0", "--no-builtin-worker"])
        .output()
        .expect("run a second muster serve");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    assert!(
        line.contains("in use") || line.contains("is using data dir"),
        "{line}"
    );
    assert!(
        line.contains(&server.pid().to_string()),
        "names the holder: {line}"
    );

    // The running server is untouched and still answers.
    assert_eq!(
        std::fs::read_to_string(server.data_dir().join("server.json")).unwrap(),
        server_json
    );
    server.create_token("still-here", "1h");
}

#[test]
fn admin_commands_reach_a_server_by_url_admin_token_and_fingerprint() {
    let server = Server::start_default();
    server.create_token("remote-view", "1h");
    // Another machine: no data dir to discover the server from.
    let elsewhere = server.path("elsewhere");
    let remote = |fingerprint: Option<&str>| {
        let mut cmd = crate::harness::muster(&elsewhere);
        cmd.args(["token", "list", "--json"])
            .arg("--data-dir")
            .arg(&elsewhere)
            .env("MUSTER_URL", server.url())
            .env("MUSTER_ADMIN_TOKEN", server.admin_token());
        if let Some(fp) = fingerprint {
            cmd.env("MUSTER_CA_FINGERPRINT", fp);
        }
        cmd.output().expect("run muster")
    };

    let out = remote(Some(&server.fingerprint()));
    assert!(out.status.success(), "{out:?}");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(list[0]["name"], "remote-view");

    // Without the fingerprint the self-signed certificate is not trusted, and the hint says how.
    let out = remote(None);
    assert_ne!(out.status.code(), Some(0));
    let line = crate::harness::error_line(&String::from_utf8_lossy(&out.stderr));
    assert!(line.contains("certificate"), "{line}");
    assert!(line.contains("--ca-fingerprint"), "{line}");
    // Under --json the failure is also one JSON object on stdout, for scripts.
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON error");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("certificate"), "{error}");
    assert!(error["error"]["hint"].is_string(), "{error}");
}

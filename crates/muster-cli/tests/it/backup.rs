//! `muster backup` while the server runs and enrollments pour in, and `muster restore` into a
//! new data dir that `muster serve` starts on, where the workers come back with their cached
//! identities.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use crate::enrollment::enable;
use crate::harness::{STARTUP, Server, block_on, find, muster, signed_enrollment};

const SECRET: &str = "backup-test-shared-secret-0123456789abcdef";

/// Enrolls `burst-N` machines one after another (four at a time) until `stop`, recording each
/// name the server acknowledged with the instant its answer arrived.
fn enroll_until(
    server: &Server,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, Instant)>>>,
) -> std::thread::JoinHandle<()> {
    let (client, base) = (server.http(), server.url());
    std::thread::spawn(move || {
        block_on(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for lane in 0..4 {
                let (client, base, stop, acked) =
                    (client.clone(), base.clone(), stop.clone(), acked.clone());
                tasks.spawn(async move {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let name = format!("burst-{lane}-{i}");
                        i += 1;
                        let body = serde_json::json!({
                            "machine_id": format!("{name}-machine"),
                            "name": name,
                            "enrollment_key": SECRET,
                        });
                        let body = signed_enrollment(&client, &base, body).await;
                        let Ok(response) = client
                            .post(format!("{base}/api/v1/enroll"))
                            .json(&body)
                            .send()
                            .await
                        else {
                            continue;
                        };
                        if response.status() == 200 {
                            acked.lock().unwrap().push((name, Instant::now()));
                        }
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        });
    })
}

fn worker_names(server: &Server) -> BTreeSet<String> {
    server
        .workers()
        .iter()
        .filter_map(|w| w["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_backup_taken_during_enrollments_restores_and_workers_come_back() {
    let mut server = Server::start_default();
    enable(&server, SECRET, &[]);
    let (token_a, _) = server.create_token("edge-a", "24h");
    let (token_b, _) = server.create_token("edge-b", "24h");
    let mut a = server.worker("edge-a").token(&token_a).start();
    let mut b = server.worker("edge-b").token(&token_b).start();
    server.wait_status("edge-a", "connected", STARTUP);
    server.wait_status("edge-b", "connected", STARTUP);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let burst = enroll_until(&server, Arc::clone(&stop), Arc::clone(&acked));
    crate::harness::wait_until("enrollments under way", STARTUP, || {
        let n = acked.lock().unwrap().len();
        ((n >= 10).then_some(()), format!("{n} acknowledged"))
    });

    let archive = server.path("muster-backup.tar");
    let started = Instant::now();
    let out = server.cli(&[
        "backup",
        "--output",
        archive.to_str().expect("utf-8"),
        "--json",
    ]);
    let finished = Instant::now();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Enrollments went on after the snapshot was taken, so the test covers what it says.
    crate::harness::wait_until("enrollments after the backup", STARTUP, || {
        let after = acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| *at > finished)
            .count();
        (
            (after >= 3).then_some(()),
            format!("{after} after the backup"),
        )
    });
    stop.store(true, Ordering::Relaxed);
    burst.join().expect("the burst");

    let manifest: Value = serde_json::from_slice(&out.stdout).expect("the manifest as JSON");
    assert_eq!(manifest["database"]["kind"], "sqlite", "{manifest:#}");
    let mode = std::fs::metadata(&archive)
        .expect("archive")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        mode, 0o600,
        "the archive holds the admin credential and keys"
    );

    // The workers reconnect after the backup (a restart): their tickets move past the backup's.
    server.restart_gracefully();
    server.wait_status("edge-a", "connected", STARTUP);
    server.wait_status("edge-b", "connected", STARTUP);

    // The machine is lost; the backup is restored into a new data dir on the same address.
    server.kill9();
    let restored = server.path("restored");
    let out = muster(&server.path("home"))
        .args(["restore"])
        .arg(&archive)
        .arg("--data-dir")
        .arg(&restored)
        .output()
        .expect("run muster restore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&restored)
        .expect("dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    server.restart_on(restored);

    // Every enrollment acknowledged before the backup started is in it.
    let names = worker_names(&server);
    let before: Vec<String> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at < started)
        .map(|(name, _)| name.clone())
        .collect();
    assert!(!before.is_empty());
    let missing: Vec<&String> = before.iter().filter(|n| !names.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup and not in it: {missing:?}"
    );

    // The workers come back with their cached identities, newer tickets and all: not taken for
    // copies of themselves.
    server.wait_status("edge-a", "connected", STARTUP);
    server.wait_status("edge-b", "connected", STARTUP);
    a.assert_running();
    b.assert_running();
    let edge_a = find(&server.workers(), "edge-a").cloned().expect("edge-a");
    assert_ne!(edge_a["status"], "suspended", "{edge_a:#}");
    // The same certificate: the workers pinned its fingerprint.
    assert!(server.fingerprint().starts_with("sha256:"));
}

#[test]
fn restore_refuses_a_directory_that_is_not_empty() {
    let server = Server::start_default();
    let archive = server.path("muster-backup.tar");
    server.cli_ok(&["backup", "--output", archive.to_str().expect("utf-8")]);
    let out = muster(&server.path("home"))
        .arg("restore")
        .arg(&archive)
        .arg("--data-dir")
        .arg(server.data_dir())
        .output()
        .expect("run muster restore");
    assert_eq!(out.status.code(), Some(1));
    let line = crate::harness::error_line(&String::from_utf8_lossy(&out.stderr));
    assert!(line.contains("is not empty"), "{line}");
}

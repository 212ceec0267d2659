//! Two server replicas sharing one PostgreSQL database: a revocation made through one cuts off a
//! worker connected to the other, and a job queued through one runs on a worker connected to
//! the other.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (trust auth), as on CI machines; each test gets a fresh
//! database, dropped afterwards. `MUSTER_SKIP_POSTGRES=1` skips with a message.

use std::time::Duration;

use crate::harness::{Server, ServerOpts};

const ADMIN_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";

/// A database of its own, dropped when the test ends (pass or fail).
struct Database {
    name: String,
}

impl Database {
    fn create() -> Option<Self> {
        if std::env::var_os("MUSTER_SKIP_POSTGRES").is_some() {
            eprintln!("skipped: MUSTER_SKIP_POSTGRES is set");
            return None;
        }
        let mut admin = postgres::Client::connect(ADMIN_URL, postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at 127.0.0.1:5432 ({e}); start it with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
                 or set MUSTER_SKIP_POSTGRES=1 to skip"
            )
        });
        let name = format!("muster_it_{}", hex::encode(rand::random::<[u8; 6]>()));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        Some(Self { name })
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(ADMIN_URL, postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn replica(db: &Database) -> Server {
    Server::start(ServerOpts {
        env: vec![("MUSTER_DATABASE_URL".into(), db.url())],
        ..ServerOpts::default()
    })
}

#[test]
fn a_revocation_through_one_replica_cuts_off_a_worker_connected_to_the_other() {
    let Some(db) = Database::create() else { return };
    let a = replica(&db);
    let b = replica(&db);
    let (token, _) = a.create_token("edge-1", "1h");
    // The worker enrolls with, and connects to, replica B.
    let mut worker = b.worker("edge-1").token(&token).start();
    b.wait_status("edge-1", "connected", Duration::from_secs(15));
    assert_eq!(
        crate::harness::find(&a.workers(), "edge-1").expect("shared record")["status"],
        "disconnected",
        "replica A does not hold the channel"
    );

    // A job queued through A runs on the worker connected to B.
    let out = a.cli_ok(&[
        "job",
        "run",
        "--worker",
        "edge-1",
        "--queue-timeout",
        "20s",
        "--",
        "echo",
        "from-b",
    ]);
    assert_eq!(out, "from-b\n");

    a.cli_ok(&["token", "revoke", "edge-1"]);
    let code = worker.wait_exit(Duration::from_secs(5));
    assert_eq!(
        code,
        5,
        "cut off by the revocation made on the other replica\n{}",
        worker.logs.dump()
    );
    assert_eq!(
        crate::harness::find(&b.workers(), "edge-1").expect("record")["status"],
        "revoked"
    );
}

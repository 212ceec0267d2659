//! The conformance suite against SQLite (one test per case, `conformance::*`), plus what only
//! SQLite's backend promises: durability across a reopen and group commit.

use std::time::Instant;

use muster_store::Store;
use muster_store::testing::transactions;
use muster_store::upgrades;

/// A fresh database in a temporary directory, which lives as long as the case.
async fn fresh_store() -> Option<(Store, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(&dir.path().join("muster.db")).expect("open");
    Some((store, dir))
}

muster_store::conformance_tests!(fresh_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_state_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("muster.db");
    transactions::committed_state_survives_reopen(|| Store::open_sqlite(&path).expect("open"))
        .await;
}

/// Many concurrent writers must not each pay a whole fsync: prints the figure and checks that
/// concurrent writes were batched (fewer commits than writes), which is structural, not timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(&dir.path().join("muster.db")).expect("open");
    let n = 400;
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(move |tx| tx.put_setting(&format!("k{i}"), "v"))
                    .await
                    .expect("write")
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let elapsed = started.elapsed();
    let stats = store.stats();
    eprintln!(
        "{n} concurrent durable writes in {elapsed:?}: {} commits, {:.1} writes per commit",
        stats.commits,
        stats.writes as f64 / stats.commits as f64
    );
    assert_eq!(stats.writes, n);
    assert!(
        stats.commits < n,
        "writes queued during a commit must share the next one"
    );
    for i in [0, n - 1] {
        let v = store
            .read(move |tx| tx.get_setting(&format!("k{i}")))
            .await
            .expect("read");
        assert_eq!(v.as_deref(), Some("v"));
    }
}

/// A database file outside the data dir is created readable by its owner only (it holds every
/// key hash and the audit log), and so are the files SQLite adds beside it.
#[tokio::test]
async fn a_new_database_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = dir.path().join("elsewhere.db");
    let store = muster_store::Store::open_sqlite(&path).expect("open");
    store
        .write(|tx| tx.put_setting("k", "v"))
        .await
        .expect("write");
    for file in ["elsewhere.db", "elsewhere.db-wal", "elsewhere.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    store.close();
}

/// A database an older build left (migrations 1–4, with ended jobs) gains the jobs' ending kinds,
/// derived from their words, when a newer build opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_ended_before_ending_kinds_get_theirs_at_upgrade() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("muster.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .expect("schema_migrations");
        let before = [
            include_str!("../src/sqlite/migrations/0001_initial.sql"),
            include_str!("../src/sqlite/migrations/0002_jobs.sql"),
            include_str!("../src/sqlite/migrations/0003_indexes.sql"),
            include_str!("../src/sqlite/migrations/0004_job_dispatcher.sql"),
        ];
        for (version, sql) in (1..).zip(before) {
            conn.execute_batch(sql).expect("migrate");
            conn.execute("INSERT INTO schema_migrations VALUES (?1, 0)", [version])
                .expect("version");
        }
        conn.execute_batch(&upgrades::jobs_before_ending_kinds())
            .expect("old jobs");
    }
    let store = Store::open_sqlite(&path).expect("upgrade");
    upgrades::assert_ending_kinds_derived(&store).await;
}

//! The disk's ceiling for durable writes done one after another: single-row SQLite transactions
//! in WAL mode with `synchronous=FULL` (muster's settings), each waiting for its own fsync.
//! muster's group commit is meant to beat this number; enrollments per second below it would
//! mean every enrollment pays for its own fsync.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

/// Commits per second over `duration` (at least 20 commits), in a fresh database in `dir`.
pub fn ceiling(dir: &Path, duration: Duration) -> anyhow::Result<f64> {
    let path = dir.join("fsync-ceiling.sqlite3");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let conn = rusqlite::Connection::open(&path)
        .with_context(|| format!("cannot open `{}`", path.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")?;
    let payload = vec![7u8; 200];
    let start = Instant::now();
    let mut commits = 0u64;
    while start.elapsed() < duration || commits < 20 {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        conn.execute("INSERT INTO t (v) VALUES (?1)", [&payload])?;
        conn.execute_batch("COMMIT")?;
        commits += 1;
    }
    let rate = commits as f64 / start.elapsed().as_secs_f64();
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(rate)
}

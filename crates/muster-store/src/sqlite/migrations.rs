//! Schema migrations for SQLite, applied in order at open, each in its own transaction.
//! Append new steps; never edit one that has shipped.

use rusqlite::Connection;

use crate::error::StoreResult;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_jobs.sql")),
    (3, include_str!("migrations/0003_indexes.sql")),
    (4, include_str!("migrations/0004_job_dispatcher.sql")),
    (5, include_str!("migrations/0005_job_ending.sql")),
    (6, include_str!("migrations/0006_worker_identity.sql")),
    (7, include_str!("migrations/0007_retention.sql")),
];

pub fn apply(conn: &mut Connection) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            applied_at INTEGER NOT NULL
        )",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, strftime('%s','now') * 1000)",
            [version],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}

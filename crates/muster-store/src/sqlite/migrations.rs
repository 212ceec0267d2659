//! Schema migrations for SQLite, applied in order at open, each in its own transaction.
//! Append new steps; never edit one that has shipped. A database whose schema is newer than the
//! last step here (written by a newer muster) is refused, untouched.

use rusqlite::Connection;

use crate::error::{StoreError, StoreResult};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_jobs.sql")),
    (3, include_str!("migrations/0003_indexes.sql")),
    (4, include_str!("migrations/0004_job_dispatcher.sql")),
    (5, include_str!("migrations/0005_job_ending.sql")),
    (6, include_str!("migrations/0006_worker_identity.sql")),
    (7, include_str!("migrations/0007_retention.sql")),
    (8, include_str!("migrations/0008_replicas.sql")),
    (9, include_str!("migrations/0009_list_indexes.sql")),
    (10, include_str!("migrations/0010_webhooks.sql")),
    (11, include_str!("migrations/0011_overview.sql")),
    (12, include_str!("migrations/0012_output_times.sql")),
    (13, include_str!("migrations/0013_worker_orders.sql")),
    (14, include_str!("migrations/0014_tls_ticket_keys.sql")),
];

/// The schema version this build writes: the last step above.
pub const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

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
    if current > LATEST {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: LATEST,
        });
    }
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

/// The schema version of the database behind `conn` (0 for a database muster never migrated).
pub fn version(conn: &Connection) -> StoreResult<i64> {
    let has_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
        [],
        |row| row.get(0),
    )?;
    if !has_table {
        return Ok(0);
    }
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migrated() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        conn
    }

    #[test]
    fn a_database_from_a_newer_muster_is_refused_untouched() {
        let mut conn = migrated();
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
            [LATEST + 1],
        )
        .unwrap();
        match apply(&mut conn) {
            Err(StoreError::SchemaTooNew { found, known }) => {
                assert_eq!((found, known), (LATEST + 1, LATEST));
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
        assert_eq!(
            version(&conn).unwrap(),
            LATEST + 1,
            "nothing was rolled back"
        );
    }

    #[test]
    fn an_older_database_is_migrated_to_the_latest_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(version(&conn).unwrap(), 0);
        apply(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST);
        // Opening again finds nothing to do.
        apply(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST);
    }
}

//! Schema migrations for PostgreSQL, applied at open. Append new steps; never edit one that has
//! shipped.
//!
//! Several replicas may start at once against one database. All pending steps run in one
//! transaction that first takes a transaction-scoped advisory lock. The first replica migrates.
//! The others wait for its commit, then read the new version and find nothing left to do. DDL is
//! transactional in PostgreSQL, so a failed step leaves no half-built schema behind. A database
//! whose schema is newer than the last step here is refused, untouched.

use postgres::Client;

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

/// The advisory lock that serializes migrations: "muster" in ASCII. Advisory locks are per
/// database, so replicas using separate databases never wait for each other. Replicas (or tests)
/// using separate schemas of one database do, briefly, only while they migrate.
const MIGRATION_LOCK: i64 = 0x6d75_7374_6572;

/// Brings the schema up to date. `schema` (quoted) is created first when the store lives in its
/// own schema; the connection's `search_path` already points at it.
pub(super) fn apply(client: &mut Client, schema: Option<&str>) -> StoreResult<()> {
    let mut tx = client.transaction()?;
    // `IF NOT EXISTS` raises a NOTICE on every start after the first; it is not news.
    tx.batch_execute("SET LOCAL client_min_messages = warning")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    if let Some(schema) = schema {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    BIGINT PRIMARY KEY,
            applied_at BIGINT NOT NULL
        )",
    )?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?
        .try_get(0)
        .map_err(|e| StoreError::Corrupt(format!("schema_migrations: {e}")))?;
    let latest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if current > latest {
        // A newer muster migrated this database, and this build cannot know what its steps
        // changed: refuse rather than read or write data it may misunderstand. In a rolling
        // upgrade, replicas of the previous version keep running; only one that restarts after
        // the first new replica migrated is refused (start it with the new version).
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: latest,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at)
             VALUES ($1, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT)",
            &[version],
        )?;
        tracing::info!(version, "applied database migration");
    }
    tx.commit()?;
    Ok(())
}

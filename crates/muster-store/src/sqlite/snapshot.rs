//! A consistent copy of a SQLite database that a running server may be writing to, for
//! `muster backup`.
//!
//! The copy is SQLite's `VACUUM INTO`, run on a connection of its own: it reads the whole
//! database inside one read transaction, so it holds exactly the transactions committed before
//! it began (with WAL, the server's writer carries on meanwhile, and readers never block it).
//! Every change the server acknowledged before the snapshot started is in it, because the
//! server acknowledges only after COMMIT.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::error::{StoreError, StoreResult};

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// The schema version of the copied database.
    pub schema_version: i64,
}

/// Copies the database at `source` into `dest`, which must not exist yet (it is created
/// owner-only) or be an empty file.
/// The source is only read: no migration runs, so an older or newer schema is copied as it is.
pub fn snapshot(source: &Path, dest: &Path) -> StoreResult<Snapshot> {
    if !source.is_file() {
        return Err(StoreError::Backend(format!(
            "no database at `{}`",
            source.display()
        )));
    }
    // Read-write without create: a read-only connection cannot use the -shm file of a WAL
    // database that its writer owns, and nothing here writes to the source.
    let conn = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let dest_text = dest.to_str().ok_or_else(|| {
        StoreError::Backend(format!(
            "the snapshot path `{}` is not valid UTF-8",
            dest.display()
        ))
    })?;
    // The copy holds every key hash and the audit log: owner-only, like the database.
    super::create_private(dest)?;
    conn.execute("VACUUM INTO ?1", [dest_text])?;
    let copy = Connection::open_with_flags(dest, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let schema_version = super::migrations::version(&copy)?;
    Ok(Snapshot { schema_version })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    #[tokio::test]
    async fn a_snapshot_taken_while_the_store_is_open_holds_every_committed_write() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("muster.db");
        let store = Store::open_sqlite(&db).unwrap();
        for i in 0..20 {
            store
                .write(move |tx| tx.put_setting(&format!("k{i}"), "v"))
                .await
                .unwrap();
        }
        let copy = dir.path().join("copy.db");
        let taken = snapshot(&db, &copy).unwrap();
        assert_eq!(taken.schema_version, super::super::migrations::LATEST);
        // Written after the snapshot: not in it.
        store.write(|tx| tx.put_setting("late", "v")).await.unwrap();
        store.close();

        let reopened = Store::open_sqlite(&copy).unwrap();
        let (early, late) = reopened
            .read(|tx| Ok((tx.get_setting("k19")?, tx.get_setting("late")?)))
            .await
            .unwrap();
        assert_eq!(early.as_deref(), Some("v"));
        assert_eq!(late, None);
    }

    #[test]
    fn a_missing_database_is_an_error_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nothing.db");
        assert!(snapshot(&missing, &dir.path().join("copy.db")).is_err());
        assert!(!missing.exists());
    }
}

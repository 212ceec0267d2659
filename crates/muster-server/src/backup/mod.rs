//! `muster backup` and `muster restore`: a server's data dir and database in one tar archive,
//! and back into a new data dir.
//!
//! The archive holds `manifest.json` (what it holds, and from which muster), a consistent
//! snapshot of the SQLite database taken while the server may be running
//! (`muster_store::sqlite::snapshot`), and the data dir's secrets and identity: the admin
//! credential, the web UI password, the self-signed certificate and its key, and the server's
//! id. A PostgreSQL database is not in it: it is backed up with `pg_dump`, the archive holds the
//! data dir's files only, and the manifest says so.
//!
//! A restored database may hold older worker tickets than the workers do (they reconnected after
//! the backup), so `restore` forgets every ticket: each worker's next connection is judged by its
//! key, and its ticket becomes its own (see `muster_core::tickets`). Without that, every worker
//! that connected after the backup would be suspended as a copy of itself.

mod archive;

use std::path::{Path, PathBuf};

use muster_proto::local::{self, DatabaseLocation, ServerFile};
use muster_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

pub use archive::ENTRIES;

/// The embedded database's name, in a data dir and in the archive.
pub const DATABASE_FILE: &str = "muster.db";
/// The manifest's name in the archive.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The archive format this build writes and reads.
const FORMAT: u32 = 1;

/// What an archive says about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: u32,
    /// The muster version that wrote it.
    pub muster_version: String,
    /// When, as RFC 3339.
    pub created_at: String,
    pub database: ArchivedDatabase,
    /// The data dir's files in the archive, relative to the data dir.
    pub files: Vec<String>,
    /// Files the server uses that are not in the archive (a certificate given with
    /// `--tls-cert`, which lives outside the data dir).
    #[serde(default)]
    pub not_archived: Vec<String>,
}

/// The database in an archive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ArchivedDatabase {
    /// A snapshot of the embedded database, at this schema version.
    Sqlite { schema_version: i64 },
    /// Not in the archive: back it up with `pg_dump`.
    Postgres,
}

/// What `restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub manifest: Manifest,
    /// Workers whose tickets were forgotten (see the module doc), when a database was restored.
    pub tickets_forgotten: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot snapshot the database `{}`: {source}", path.display())]
    Snapshot { path: PathBuf, source: StoreError },
    #[error("`{}` is not empty", .0.display())]
    NotEmpty(PathBuf),
    #[error("`{}` is not a muster backup: {reason}", path.display())]
    NotABackup { path: PathBuf, reason: String },
    #[error("cannot open the restored database: {0}")]
    Database(StoreError),
    #[error("cannot open the PostgreSQL database given by `--database`: {0}")]
    Postgres(StoreError),
}

impl BackupError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| BackupError::Io { what, source }
    }

    pub fn hint(&self) -> Option<&'static str> {
        match self {
            BackupError::Io { .. } => Some("check the paths and their permissions"),
            BackupError::Snapshot { .. } => Some(
                "run the backup as the user the server runs as, on the server's machine, with its `--data-dir`",
            ),
            BackupError::NotEmpty(_) => Some(
                "restore into a new directory; `muster serve --data-dir DIR` then starts on it",
            ),
            BackupError::NotABackup { .. } => Some("give the file `muster backup --output` wrote"),
            BackupError::Database(StoreError::SchemaTooNew { .. }) => {
                Some("the backup was made by a newer muster; restore it with that version")
            }
            BackupError::Database(_) => None,
            BackupError::Postgres(_) => Some(
                "restore the database with `pg_restore` first, then give its URL with `--database`",
            ),
        }
    }
}

/// Where the server of `data_dir` keeps its database: as its server file says, or the embedded
/// database in the data dir (a server that never ran, or one from before the file said).
fn database_of(data_dir: &Path) -> Result<DatabaseLocation, BackupError> {
    let path = data_dir.join(local::SERVER_FILE);
    let recorded = muster_fs::read_optional(&path)
        .map_err(|e| BackupError::Io {
            what: format!("read `{}`", path.display()),
            source: std::io::Error::other(e.to_string()),
        })?
        .and_then(|text| serde_json::from_str::<ServerFile>(&text).ok())
        .and_then(|file| file.database);
    Ok(recorded.unwrap_or_else(|| DatabaseLocation::Sqlite {
        path: data_dir.join(DATABASE_FILE).display().to_string(),
    }))
}

/// The certificate files the server file names outside the data dir (given with `--tls-cert`).
fn certificate_outside(data_dir: &Path) -> Vec<String> {
    let Ok(Some(text)) = muster_fs::read_optional(&data_dir.join(local::SERVER_FILE)) else {
        return Vec::new();
    };
    let Ok(file) = serde_json::from_str::<ServerFile>(&text) else {
        return Vec::new();
    };
    file.cert_file
        .filter(|cert| !Path::new(cert).starts_with(data_dir))
        .into_iter()
        .collect()
}

/// Writes a backup of the server whose data dir is `data_dir` to `output` (replaced atomically
/// if it exists; readable by its owner only). Blocking: run it off the async runtime.
pub fn create(
    data_dir: &Path,
    output: &Path,
    now_rfc3339: String,
) -> Result<Manifest, BackupError> {
    if !data_dir.is_dir() {
        return Err(BackupError::Io {
            what: format!("read the data dir `{}`", data_dir.display()),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let target_dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let snapshot = match database_of(data_dir)? {
        DatabaseLocation::Postgres => None,
        DatabaseLocation::Sqlite { path } => {
            // Next to the archive, owner-only, and removed when done.
            let copy = tempfile::Builder::new()
                .prefix(".muster-backup-db-")
                .tempfile_in(target_dir)
                .map_err(BackupError::io(format!(
                    "create a temporary file in `{}`",
                    target_dir.display()
                )))?;
            let taken = muster_store::sqlite::snapshot(Path::new(&path), copy.path()).map_err(
                |source| BackupError::Snapshot {
                    path: PathBuf::from(&path),
                    source,
                },
            )?;
            Some((copy, taken.schema_version))
        }
    };
    let files: Vec<String> = ENTRIES
        .iter()
        .filter(|name| data_dir.join(name).is_file())
        .map(|name| (*name).to_owned())
        .collect();
    let manifest = Manifest {
        format: FORMAT,
        muster_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: now_rfc3339,
        database: match &snapshot {
            Some((_, schema_version)) => ArchivedDatabase::Sqlite {
                schema_version: *schema_version,
            },
            None => ArchivedDatabase::Postgres,
        },
        files,
        not_archived: certificate_outside(data_dir),
    };
    archive::write(
        output,
        target_dir,
        &manifest,
        data_dir,
        snapshot.as_ref().map(|(copy, _)| copy.path()),
    )?;
    Ok(manifest)
}

/// Unpacks the archive at `archive` into `data_dir`, which must not exist or be empty, and
/// forgets the restored database's worker tickets. `database`: a PostgreSQL URL whose tickets to
/// forget, for an archive without a database (the operator restored it with `pg_restore`).
pub async fn restore(
    archive_path: &Path,
    data_dir: &Path,
    database: Option<&str>,
) -> Result<Restored, BackupError> {
    let (archive_path, dir) = (archive_path.to_path_buf(), data_dir.to_path_buf());
    let manifest = tokio::task::spawn_blocking(move || archive::unpack(&archive_path, &dir))
        .await
        .map_err(|e| BackupError::Io {
            what: "unpack the archive".into(),
            source: std::io::Error::other(e.to_string()),
        })??;
    match forget_tickets(&manifest, data_dir, database).await {
        Ok(tickets_forgotten) => Ok(Restored {
            manifest,
            tickets_forgotten,
        }),
        Err(e) => {
            // Leave nothing a server could start on by mistake.
            archive::remove_contents(data_dir);
            Err(e)
        }
    }
}

/// Forgets the tickets of the database just restored: the archive's, or the PostgreSQL one at
/// `database`. `None` when there is none to forget in.
async fn forget_tickets(
    manifest: &Manifest,
    data_dir: &Path,
    database: Option<&str>,
) -> Result<Option<usize>, BackupError> {
    let store = match (&manifest.database, database) {
        (ArchivedDatabase::Sqlite { .. }, _) => {
            Store::open_sqlite(&data_dir.join(DATABASE_FILE)).map_err(BackupError::Database)?
        }
        (ArchivedDatabase::Postgres, Some(url)) => {
            Store::open_postgres(url).map_err(BackupError::Postgres)?
        }
        (ArchivedDatabase::Postgres, None) => return Ok(None),
    };
    let forgotten = store
        .write(muster_store::flows::identity::forget_tickets)
        .await
        .map_err(BackupError::Database);
    store.close();
    forgotten.map(Some)
}

#[cfg(test)]
mod tests;

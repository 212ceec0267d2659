//! The archive itself: a tar file (the `tar` crate) written owner-only and atomically, and read
//! back entry by entry into a new data dir, taking only the names a backup holds.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use muster_proto::local;

use super::{BackupError, DATABASE_FILE, FORMAT, MANIFEST_FILE, Manifest};

/// The data dir's files a backup holds, relative to the data dir: the admin credential, the web
/// UI password, the self-signed certificate and its key, and the server's id among replicas.
/// (`server.json` is not: it names a running process and is rewritten at every start.)
pub const ENTRIES: &[&str] = &[
    local::ADMIN_TOKEN_FILE,
    local::ADMIN_PASSWORD_FILE,
    local::SELF_SIGNED_CERT_FILE,
    local::SELF_SIGNED_KEY_FILE,
    "server-id",
];

/// The largest manifest read back: it is a few hundred bytes.
const MAX_MANIFEST: u64 = 64 * 1024;

/// Writes the archive to a temporary file beside `output` (owner-only), then renames it over
/// `output`: a crash never leaves half an archive under the name a backup job checks.
pub(super) fn write(
    output: &Path,
    target_dir: &Path,
    manifest: &Manifest,
    data_dir: &Path,
    database: Option<&Path>,
) -> Result<(), BackupError> {
    let partial = tempfile::Builder::new()
        .prefix(".muster-backup-")
        .tempfile_in(target_dir)
        .map_err(BackupError::io(format!(
            "create a file in `{}`",
            target_dir.display()
        )))?;
    let mut tar = tar::Builder::new(partial.as_file());
    let manifest_json = serde_json::to_vec_pretty(manifest).unwrap_or_default();
    append_bytes(&mut tar, MANIFEST_FILE, &manifest_json)?;
    if let Some(database) = database {
        append_file(&mut tar, DATABASE_FILE, database)?;
    }
    for name in &manifest.files {
        append_file(&mut tar, name, &data_dir.join(name))?;
    }
    tar.into_inner()
        .and_then(|file| file.sync_all())
        .map_err(BackupError::io("write the archive"))?;
    partial.persist(output).map_err(|e| BackupError::Io {
        what: format!("write `{}`", output.display()),
        source: e.error,
    })?;
    if let Ok(dir) = File::open(target_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// A header for an owner-only regular file of `size` bytes.
fn header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    header
}

fn append_bytes(
    tar: &mut tar::Builder<&File>,
    name: &str,
    bytes: &[u8],
) -> Result<(), BackupError> {
    let mut header = header(bytes.len() as u64);
    tar.append_data(&mut header, name, bytes)
        .map_err(BackupError::io(format!("archive `{name}`")))
}

fn append_file(tar: &mut tar::Builder<&File>, name: &str, path: &Path) -> Result<(), BackupError> {
    let file = File::open(path).map_err(BackupError::io(format!("read `{}`", path.display())))?;
    let size = file
        .metadata()
        .map_err(BackupError::io(format!("read `{}`", path.display())))?
        .len();
    let mut header = header(size);
    tar.append_data(&mut header, name, file)
        .map_err(BackupError::io(format!("archive `{name}`")))
}

/// Unpacks `archive` into `data_dir` (created owner-only; it must be empty). Every file is
/// written owner-only. An entry that is not a file a backup holds refuses the whole archive, and
/// what was unpacked so far is removed again.
pub(super) fn unpack(archive: &Path, data_dir: &Path) -> Result<Manifest, BackupError> {
    let not_a_backup = |reason: String| BackupError::NotABackup {
        path: archive.to_path_buf(),
        reason,
    };
    let file =
        File::open(archive).map_err(BackupError::io(format!("read `{}`", archive.display())))?;
    if let Ok(mut entries) = std::fs::read_dir(data_dir)
        && entries.next().is_some()
    {
        return Err(BackupError::NotEmpty(data_dir.to_path_buf()));
    }
    muster_fs::ensure_private_dir(data_dir).map_err(|e| BackupError::Io {
        what: format!("create `{}`", data_dir.display()),
        source: std::io::Error::other(e.to_string()),
    })?;
    let unpacked = unpack_entries(file, data_dir, &not_a_backup);
    if unpacked.is_err() {
        remove_contents(data_dir);
    }
    unpacked
}

fn unpack_entries(
    file: File,
    data_dir: &Path,
    not_a_backup: &dyn Fn(String) -> BackupError,
) -> Result<Manifest, BackupError> {
    let mut tar = tar::Archive::new(file);
    let entries = tar
        .entries()
        .map_err(|e| not_a_backup(format!("not a tar archive ({e})")))?;
    let mut manifest: Option<Manifest> = None;
    let mut database = false;
    for entry in entries {
        let mut entry = entry.map_err(|e| not_a_backup(format!("a damaged entry ({e})")))?;
        let name = entry
            .path()
            .map_err(|e| not_a_backup(format!("an entry with a bad name ({e})")))?
            .to_string_lossy()
            .into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(not_a_backup(format!("`{name}` is not a regular file")));
        }
        if name == MANIFEST_FILE {
            let mut text = String::new();
            entry
                .by_ref()
                .take(MAX_MANIFEST)
                .read_to_string(&mut text)
                .map_err(|e| not_a_backup(format!("an unreadable manifest ({e})")))?;
            let read: Manifest = serde_json::from_str(&text)
                .map_err(|e| not_a_backup(format!("an unreadable manifest ({e})")))?;
            if read.format != FORMAT {
                return Err(not_a_backup(format!(
                    "archive format {} (this muster reads format {FORMAT})",
                    read.format
                )));
            }
            manifest = Some(read);
            continue;
        }
        if name != DATABASE_FILE && !ENTRIES.contains(&name.as_str()) {
            return Err(not_a_backup(format!("an unexpected entry `{name}`")));
        }
        database |= name == DATABASE_FILE;
        write_private(&mut entry, &data_dir.join(&name))?;
    }
    let manifest = manifest.ok_or_else(|| not_a_backup("no manifest".into()))?;
    let expects_database = matches!(manifest.database, super::ArchivedDatabase::Sqlite { .. });
    if expects_database != database {
        return Err(not_a_backup(
            "the manifest and the database in the archive disagree".into(),
        ));
    }
    Ok(manifest)
}

/// Copies `from` into a new owner-only file at `path` (its directory owner-only too), synced.
fn write_private(from: &mut impl Read, path: &Path) -> Result<(), BackupError> {
    if let Some(parent) = path.parent() {
        muster_fs::ensure_private_dir(parent).map_err(|e| BackupError::Io {
            what: format!("create `{}`", parent.display()),
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    let what = || format!("write `{}`", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(BackupError::io(what()))?;
    std::io::copy(from, &mut file).map_err(BackupError::io(what()))?;
    file.flush()
        .and_then(|()| file.sync_all())
        .map_err(BackupError::io(what()))
}

/// Empties a directory this restore filled (never one it did not find empty).
pub(super) fn remove_contents(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

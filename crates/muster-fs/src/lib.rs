//! Local files that hold secrets or identity, for the server's data dir and the worker's state
//! dir: created readable by the owner only, written atomically (temp file, fsync, rename, fsync
//! of the directory) so a crash never leaves a half-written file, and a lock that keeps a second
//! process off a directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("cannot create directory `{path}`: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot write `{path}`: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read `{path}`: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("`{path}` is in use by another process (pid {holder})")]
    Locked { path: PathBuf, holder: String },
    #[error("cannot lock `{path}`: {source}")]
    Lock { path: PathBuf, source: io::Error },
}

/// Creates `dir` (and parents) if missing, and makes it owner-only (0700).
pub fn ensure_private_dir(dir: &Path) -> Result<(), FsError> {
    fs::create_dir_all(dir).map_err(|source| FsError::CreateDir {
        path: dir.into(),
        source,
    })?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
        FsError::CreateDir {
            path: dir.into(),
            source,
        }
    })
}

/// Writes `contents` to `path` atomically with mode `mode`: a reader (or a crash) sees either the
/// old file or the whole new one, never a part.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FsError> {
    let err = |source| FsError::Write {
        path: path.into(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode given to open() is filtered by the umask; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Writes a file only its owner can read (0600), atomically.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), FsError> {
    write_atomic(path, contents, 0o600)
}

/// Reads a file to a string; `Ok(None)` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, FsError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FsError::Read {
            path: path.into(),
            source,
        }),
    }
}

/// An exclusive lock on a directory, held for as long as this value lives. The lock file records
/// the holder's pid so the refusal can name it.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    pub fn acquire(dir: &Path, lock_name: &str) -> Result<Self, FsError> {
        let path = dir.join(lock_name);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| FsError::Lock {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path)
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                let holder = if holder.is_empty() {
                    "unknown".to_owned()
                } else {
                    holder
                };
                return Err(FsError::Locked {
                    path: dir.into(),
                    holder,
                });
            }
            Err(fs::TryLockError::Error(source)) => return Err(FsError::Lock { path, source }),
        }
        let pid = std::process::id().to_string();
        let _ = file
            .set_len(0)
            .and_then(|()| file.write_all(pid.as_bytes()));
        Ok(Self { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_owner_only_and_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file is left behind");
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _held = DirLock::acquire(dir.path(), "lock").unwrap();
        match DirLock::acquire(dir.path(), "lock") {
            Err(FsError::Locked { holder, .. }) => {
                assert_eq!(holder, std::process::id().to_string())
            }
            other => panic!("expected Locked, got {other:?}"),
        }
    }

    #[test]
    fn private_dir_mode() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        ensure_private_dir(&sub).unwrap();
        assert_eq!(
            fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(read_optional(&sub.join("none")).unwrap(), None);
    }
}

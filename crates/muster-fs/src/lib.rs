//! Local files that hold secrets or identity, for the server's data dir and the worker's state
//! dir: created readable by the owner only, written atomically (temp file, fsync, rename, fsync
//! of the directory) so a crash never leaves a half-written file, and a lock that keeps a second
//! process off a directory.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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
    #[error("`{path}` is not a safe place for secrets: {problem}")]
    UnsafeDir { path: PathBuf, problem: UnsafeDir },
}

/// Why an existing directory cannot hold secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeDir {
    #[error("it is not a directory")]
    NotADirectory,
    #[error("it belongs to user {owner}, not to user {me} who runs muster")]
    OtherOwner { owner: u32, me: u32 },
    #[error("other users can write to it (mode {mode:04o})")]
    WritableByOthers { mode: u32 },
}

impl FsError {
    /// What to do about it, for the one line a person reads.
    pub fn hint(&self) -> Option<String> {
        match self {
            FsError::UnsafeDir {
                path,
                problem: UnsafeDir::WritableByOthers { .. },
            } => Some(format!(
                "point muster at a directory of its own that it may create, or make this one private with `chmod 700 {}`",
                path.display()
            )),
            FsError::UnsafeDir { .. } => {
                Some("point muster at a directory of its own that it may create".into())
            }
            _ => None,
        }
    }
}

/// Makes sure `dir` is a private directory: creates it owner-only (0700), with any missing
/// parents, or checks that an existing one belongs to this user and that no one else can write
/// to it (someone who can could swap the files muster keeps there; files muster writes are
/// owner-only themselves, so an existing directory others can merely list is accepted).
/// The mode of a directory muster did not create is never changed: chmod-ing `/tmp` or a shared
/// directory behind its owner's back would break it for everyone, so an unsafe one is refused.
pub fn ensure_private_dir(dir: &Path) -> Result<(), FsError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|source| FsError::CreateDir {
            path: parent.into(),
            source,
        })?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            // The mode given to mkdir is filtered by the umask; a new directory is ours to set.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
                FsError::CreateDir {
                    path: dir.into(),
                    source,
                }
            })
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => check_private_dir(dir),
        Err(source) => Err(FsError::CreateDir {
            path: dir.into(),
            source,
        }),
    }
}

/// Checks an existing directory without changing it.
pub fn check_private_dir(dir: &Path) -> Result<(), FsError> {
    let unsafe_dir = |problem| FsError::UnsafeDir {
        path: dir.into(),
        problem,
    };
    let meta = fs::metadata(dir).map_err(|source| FsError::Read {
        path: dir.into(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(unsafe_dir(UnsafeDir::NotADirectory));
    }
    if let Some(me) = current_uid()
        && meta.uid() != me
    {
        return Err(unsafe_dir(UnsafeDir::OtherOwner {
            owner: meta.uid(),
            me,
        }));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(unsafe_dir(UnsafeDir::WritableByOthers { mode }));
    }
    Ok(())
}

/// The effective user id of this process: `/proc/self` belongs to it. (The workspace allows no
/// `unsafe`, so no `geteuid` call here.)
fn current_uid() -> Option<u32> {
    fs::metadata("/proc/self").ok().map(|m| m.uid())
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

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn an_existing_shared_directory_is_refused_and_its_mode_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("tmp-like");
        fs::create_dir(&shared).unwrap();
        // Like /tmp: world-writable with the sticky bit.
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        let err = ensure_private_dir(&shared).unwrap_err();
        assert!(
            matches!(
                &err,
                FsError::UnsafeDir {
                    problem: UnsafeDir::WritableByOthers { mode: 0o1777 },
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            mode(&shared),
            0o1777,
            "the sticky bit and mode are untouched"
        );
        assert!(err.hint().unwrap().contains("chmod 700"));
    }

    #[test]
    fn an_existing_directory_only_its_owner_can_write_is_accepted_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        for kept in [0o700, 0o755] {
            let own = dir.path().join(format!("own-{kept:o}"));
            fs::create_dir(&own).unwrap();
            fs::set_permissions(&own, fs::Permissions::from_mode(kept)).unwrap();
            ensure_private_dir(&own).unwrap();
            assert_eq!(mode(&own), kept);
        }
        let group_writable = dir.path().join("group");
        fs::create_dir(&group_writable).unwrap();
        fs::set_permissions(&group_writable, fs::Permissions::from_mode(0o770)).unwrap();
        assert!(ensure_private_dir(&group_writable).is_err());
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(
            ensure_private_dir(&file),
            Err(FsError::UnsafeDir {
                problem: UnsafeDir::NotADirectory,
                ..
            })
        ));
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        // Only root can make a directory belong to someone else.
        if current_uid() != Some(0) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        fs::set_permissions(&theirs, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
        assert!(matches!(
            ensure_private_dir(&theirs),
            Err(FsError::UnsafeDir {
                problem: UnsafeDir::OtherOwner { owner: 65534, .. },
                ..
            })
        ));
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

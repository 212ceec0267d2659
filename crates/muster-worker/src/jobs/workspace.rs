//! Job directories: `<state-dir>/jobs/ID`, made (owner-only, owned by the job user if there is
//! one) when a job starts and deleted when it ends. Its output has been streamed by then; the
//! directory only held the job's scratch files. Directories a killed worker left behind are
//! swept when the next one starts.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::confine::JobUser;

/// Makes the job's directory.
pub(super) async fn create(dir: &Path, user: Option<&JobUser>) -> std::io::Result<()> {
    let (dir, owner) = (dir.to_path_buf(), user.map(|u| (u.uid, u.gid)));
    blocking(move || {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            // Left over from a run that was cut short: start from an empty one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                remove_now(&dir)?;
                std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
            }
            Err(e) => return Err(e),
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        Ok(())
    })
    .await
}

/// Deletes a finished job's directory, saying so if it cannot.
pub(super) async fn remove(dir: &Path) {
    let path = dir.to_path_buf();
    if let Err(e) = blocking(move || remove_now(&path)).await {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot delete a finished job's directory");
    }
}

/// Deletes the job directories a previous worker process left (it was killed mid-job). Called
/// when no job runs yet.
pub(super) fn sweep(jobs_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(jobs_dir) else {
        return;
    };
    let mut swept = 0;
    for entry in entries.flatten() {
        match remove_now(&entry.path()) {
            Ok(()) => swept += 1,
            Err(e) => {
                tracing::warn!(dir = %entry.path().display(), error = %e, "cannot delete a job directory left from before")
            }
        }
    }
    if swept > 0 {
        tracing::info!(
            swept,
            "deleted the job directories a stopped worker left behind"
        );
    }
}

/// Removes `path` and everything in it. A job may have left directories it made unwritable or
/// unreadable (`chmod 000`); those are opened up and the removal tried again.
fn remove_now(path: &Path) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            open_up(path.to_path_buf());
            std::fs::remove_dir_all(path)
        }
        Err(e) => Err(e),
    }
}

/// Makes every directory under `dir` (never following a symlink) owner-accessible.
fn open_up(dir: PathBuf) {
    let mut pending = vec![dir];
    while let Some(dir) = pending.pop() {
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(entry.path());
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

//! The state dir's owner and permissions: what the worker requires of it (no one else may write
//! to it: `muster_fs::check_private_dir`, the same check the worker makes), and what it keeps
//! in it (files with credentials readable by their owner only).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use muster_fs::{FsError, UnsafeDir};

use super::{Check, Finding};
use crate::config::WorkerConfig;
use crate::state_dir::CREDENTIAL_FILES;

/// The state dir row, and what the identity check needs to know of the state dir.
pub(super) struct StateDirReport {
    pub finding: Finding,
    pub exists: bool,
    /// The worker would accept it (so the identity in it may be checked).
    pub usable: bool,
}

pub(super) fn check_state_dir(config: &WorkerConfig) -> StateDirReport {
    let dir = &config.state_dir;
    let shown = dir.display();
    let report = |finding, exists, usable| StateDirReport {
        finding,
        exists,
        usable,
    };
    if !dir.exists() {
        return report(
            Finding::ok(
                Check::StateDir,
                format!(
                    "`{shown}` does not exist yet: the worker creates it, owner-only, at its first start"
                ),
            ),
            false,
            true,
        );
    }
    if let Err(error) = muster_fs::check_private_dir(dir) {
        let fix = match &error {
            FsError::UnsafeDir {
                problem: UnsafeDir::WritableByOthers { .. },
                ..
            } => format!("make it private: `chmod 700 {shown}`"),
            FsError::UnsafeDir {
                problem: UnsafeDir::OtherOwner { owner, .. },
                ..
            } => format!(
                "run the worker as the user who owns it (uid {owner}), or give it to this user: `chown -R \"$(id -u)\" {shown}`"
            ),
            _ => "point `--state-dir` at a directory of the worker's own".to_owned(),
        };
        return report(
            Finding::fail(Check::StateDir, error.to_string(), fix),
            true,
            false,
        );
    }
    let exposed = exposed_files(dir);
    if !exposed.is_empty() {
        let names: Vec<String> = exposed.iter().map(|p| p.display().to_string()).collect();
        return report(
            Finding::fail(
                Check::StateDir,
                format!(
                    "credentials in `{shown}` are readable by other users: {}",
                    names.join(", ")
                ),
                format!(
                    "`chmod 600 {}`; whoever could read them may hold this worker's key, so consider revoking the worker and enrolling it again",
                    names.join(" ")
                ),
            ),
            true,
            true,
        );
    }
    let mode = mode_of(dir).unwrap_or(0);
    if mode & 0o077 != 0 {
        return report(
            Finding::warn(
                Check::StateDir,
                format!(
                    "`{shown}` is private enough for the worker, but other users can list it (mode {mode:04o})"
                ),
                format!("`chmod 700 {shown}`"),
            ),
            true,
            true,
        );
    }
    report(
        Finding::ok(
            Check::StateDir,
            format!("`{shown}` is yours and owner-only (mode {mode:04o})"),
        ),
        true,
        true,
    )
}

fn mode_of(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// The credential files in `dir` that others can read or write.
fn exposed_files(dir: &Path) -> Vec<PathBuf> {
    CREDENTIAL_FILES
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| mode_of(path).is_some_and(|mode| mode & 0o077 != 0))
        .collect()
}

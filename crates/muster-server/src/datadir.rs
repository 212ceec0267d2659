//! The server's data dir: its database, certificate, admin credential, web UI password and
//! address file.

use std::path::{Path, PathBuf};

use muster_fs::{DirLock, FsError};
use muster_proto::local::{self, ServerFile};

pub struct DataDir {
    root: PathBuf,
    _lock: DirLock,
}

impl DataDir {
    /// Creates the directory (owner-only) if needed and locks it: two servers on one data dir
    /// would corrupt each other's view of the fleet.
    pub fn open(root: &Path) -> Result<Self, FsError> {
        muster_fs::ensure_private_dir(root)?;
        let lock = DirLock::acquire(root, "server.lock")?;
        Ok(Self {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn database_path(&self) -> PathBuf {
        self.root.join("muster.db")
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.root.join(local::ADMIN_TOKEN_FILE)
    }

    pub fn admin_password_path(&self) -> PathBuf {
        self.root.join(local::ADMIN_PASSWORD_FILE)
    }

    pub fn cert_path(&self) -> PathBuf {
        self.root.join(local::SELF_SIGNED_CERT_FILE)
    }

    pub fn key_path(&self) -> PathBuf {
        self.root.join(local::SELF_SIGNED_KEY_FILE)
    }

    pub fn write_server_file(&self, file: &ServerFile) -> Result<(), FsError> {
        let json = serde_json::to_vec_pretty(file).unwrap_or_default();
        muster_fs::write_atomic(&self.root.join(local::SERVER_FILE), &json, 0o644)
    }
}

//! The server's data dir: its database, certificate, admin credential, web UI password and
//! address file.

use std::path::{Path, PathBuf};

use muster_fs::{DirLock, FsError};
use muster_proto::local::{self, ServerFile};

/// `<data-dir>/tls/ticket-keys`: the server's own, never read by another command.
const TICKET_KEYS_FILE: &str = "tls/ticket-keys";

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

    /// The TLS session ticket keys (owner-only; see `tls::tickets`). Never archived by a backup:
    /// a restored server makes new ones, and its workers do one full handshake each.
    pub fn ticket_keys_path(&self) -> PathBuf {
        self.root.join(TICKET_KEYS_FILE)
    }

    /// This server's stable identity among replicas sharing a database: made at first start and
    /// kept in `server-id`, so after a restart it recognises the jobs it was running.
    pub fn server_id(&self) -> Result<String, FsError> {
        let path = self.root.join("server-id");
        if let Some(existing) = muster_fs::read_optional(&path)? {
            let id = existing.trim();
            if id.len() >= 8 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Ok(id.to_owned());
            }
        }
        let mut bytes = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        let id = hex::encode(bytes);
        muster_fs::write_atomic(&path, format!("{id}\n").as_bytes(), 0o644)?;
        Ok(id)
    }

    pub fn write_server_file(&self, file: &ServerFile) -> Result<(), FsError> {
        let json = serde_json::to_vec_pretty(file).unwrap_or_default();
        muster_fs::write_atomic(&self.root.join(local::SERVER_FILE), &json, 0o644)
    }
}

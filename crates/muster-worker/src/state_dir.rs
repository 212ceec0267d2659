//! The worker's state dir: its key and the machine id derived from it, its ticket, its cached
//! identity, and job workspaces.
//!
//! Everything is owner-only and written atomically. One process at a time: a second worker on
//! the same state dir would be the same machine twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use muster_core::MachineId;
use muster_core::identity::WorkerKey;
use muster_fs::{DirLock, FsError};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

use muster_proto::api::EnrolledVia;

use crate::error::WorkerError;

const MACHINE_ID_FILE: &str = "machine-id";
const KEY_FILE: &str = "worker-key";
const TICKET_FILE: &str = "ticket";
const IDENTITY_FILE: &str = "identity.json";
const LOCK_FILE: &str = "worker.lock";

/// The files of a state dir that hold its key, credentials or identity: owner-only.
pub const CREDENTIAL_FILES: [&str; 4] = [KEY_FILE, IDENTITY_FILE, TICKET_FILE, MACHINE_ID_FILE];

/// What the worker remembers after enrolling: enough to reconnect with no enrollment secret.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CachedIdentity {
    pub server_url: String,
    pub worker_id: String,
    pub name: String,
    pub api_key: String,
    pub enrolled_via: EnrolledVia,
    #[serde(default)]
    pub expires_at: Option<String>,
    /// A keyed hash of the enrollment credential (token or secret) this identity came from, to
    /// tell that credential, still configured, from a freshly given one (see
    /// [`crate::runner`]). Absent in identities cached by older builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl CachedIdentity {
    /// The value [`Self::credential`] holds for `credential` on the machine `machine_id`.
    pub fn credential_mark(machine_id: &str, credential: &str) -> String {
        muster_core::SecretHash::of(&format!("muster-enrolled-with:{machine_id}:{credential}"))
            .to_hex()
    }
}

impl std::fmt::Debug for CachedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedIdentity")
            .field("server_url", &self.server_url)
            .field("worker_id", &self.worker_id)
            .field("name", &self.name)
            .field("api_key", &"<redacted>")
            .field("enrolled_via", &self.enrolled_via)
            .finish()
    }
}

pub struct StateDir {
    root: PathBuf,
    machine_id: MachineId,
    key: Arc<WorkerKey>,
    _lock: DirLock,
}

fn fs_error(error: FsError) -> WorkerError {
    match error {
        FsError::Locked { path, holder } => WorkerError::config(
            format!(
                "state dir `{}` is in use by another worker process (pid {holder})",
                path.display()
            ),
            "give each worker process its own `--state-dir`",
        ),
        other => {
            let hint = other.hint().unwrap_or_else(|| {
                "check the state dir's path and permissions (`--state-dir`)".to_owned()
            });
            WorkerError::config(other.to_string(), hint)
        }
    }
}

/// Reads the worker's key, or makes one (written atomically, owner-only, before it is used).
fn load_or_create_key(path: &Path) -> Result<WorkerKey, WorkerError> {
    if let Some(text) = muster_fs::read_optional(path).map_err(fs_error)? {
        return WorkerKey::from_file(&text).map_err(|e| {
            WorkerError::config(
                format!("`{}` is corrupt: {e}", path.display()),
                "this state dir's identity is lost; start the worker with a fresh `--state-dir` to enroll again",
            )
        });
    }
    let key = WorkerKey::generate(&mut OsRng);
    muster_fs::write_private(path, key.to_file().as_bytes()).map_err(fs_error)?;
    Ok(key)
}

/// The identity cached in the state dir at `root`, read without opening (or creating, or
/// locking) the state dir.
pub fn read_identity(root: &Path) -> Result<Option<CachedIdentity>, WorkerError> {
    let path = root.join(IDENTITY_FILE);
    let Some(text) = muster_fs::read_optional(&path).map_err(fs_error)? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        WorkerError::config(
            format!(
                "the cached identity `{}` is unreadable: {e}",
                path.display()
            ),
            "delete it to enroll this worker again",
        )
    })
}

/// Whether the existing state dir at `root` has its key and machine id (a state dir from before
/// keys gains one at the worker's next start).
pub fn has_key(root: &Path) -> bool {
    root.join(KEY_FILE).is_file() && root.join(MACHINE_ID_FILE).is_file()
}

/// The pid a running worker wrote in the lock of the state dir at `root`, if one holds it.
pub fn lock_holder(root: &Path) -> Option<String> {
    match DirLock::acquire(root, LOCK_FILE) {
        Err(FsError::Locked { holder, .. }) => Some(holder),
        _ => None,
    }
}

impl StateDir {
    /// Creates (owner-only) and locks the state dir, and reads or creates the key and the
    /// machine id. A new state dir's machine id is derived from its key; one made before keys
    /// existed keeps its machine id and gains a key (which the server binds at the worker's next
    /// connection).
    pub fn open(root: &Path) -> Result<Self, WorkerError> {
        muster_fs::ensure_private_dir(root).map_err(fs_error)?;
        let lock = DirLock::acquire(root, LOCK_FILE).map_err(fs_error)?;
        let key = load_or_create_key(&root.join(KEY_FILE))?;
        let id_path = root.join(MACHINE_ID_FILE);
        let machine_id = match muster_fs::read_optional(&id_path).map_err(fs_error)? {
            Some(text) => MachineId::parse(text.trim()).map_err(|e| {
                WorkerError::config(
                    format!("`{}` is corrupt: {e}", id_path.display()),
                    "delete the file to make this a new machine (it must then enroll again)",
                )
            })?,
            None => {
                let id = key.public_key().machine_id();
                muster_fs::write_private(&id_path, format!("{id}\n").as_bytes())
                    .map_err(fs_error)?;
                id
            }
        };
        Ok(Self {
            root: root.to_path_buf(),
            machine_id,
            key: Arc::new(key),
            _lock: lock,
        })
    }

    /// The worker's key pair.
    pub fn key(&self) -> &Arc<WorkerKey> {
        &self.key
    }

    /// Where the worker keeps its ticket.
    pub fn ticket_path(&self) -> PathBuf {
        self.root.join(TICKET_FILE)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn machine_id(&self) -> &MachineId {
        &self.machine_id
    }

    pub fn identity_path(&self) -> PathBuf {
        self.root.join(IDENTITY_FILE)
    }

    pub fn load_identity(&self) -> Result<Option<CachedIdentity>, WorkerError> {
        read_identity(&self.root)
    }

    /// Caches the identity: on disk, whole, before the worker uses it.
    pub fn save_identity(&self, identity: &CachedIdentity) -> Result<(), WorkerError> {
        let json = serde_json::to_vec_pretty(identity).unwrap_or_default();
        muster_fs::write_private(&self.identity_path(), &json).map_err(fs_error)
    }

    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn machine_id_is_stable_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateDir::open(dir.path()).unwrap();
        let (id, key) = (first.machine_id().clone(), first.key().public_key());
        assert_eq!(id, key.machine_id(), "a new machine id names the new key");
        drop(first);
        let second = StateDir::open(dir.path()).unwrap();
        assert_eq!(second.machine_id(), &id);
        assert_eq!(second.key().public_key(), key);
        let key_mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(key_mode, 0o600);
        let identity = CachedIdentity {
            credential: None,
            server_url: "https://h".into(),
            worker_id: "w".into(),
            name: "n".into(),
            api_key: "mk_secret".into(),
            enrolled_via: EnrolledVia::Token,
            expires_at: None,
        };
        second.save_identity(&identity).unwrap();
        assert_eq!(second.load_identity().unwrap(), Some(identity.clone()));
        let mode = std::fs::metadata(second.identity_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!format!("{identity:?}").contains("mk_secret"));
    }

    #[test]
    fn a_state_dir_from_before_keys_keeps_its_machine_id_and_gains_a_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MACHINE_ID_FILE), "legacy-machine-0001\n").unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert_eq!(state.machine_id().as_str(), "legacy-machine-0001");
        assert!(dir.path().join(KEY_FILE).exists());
    }

    #[test]
    fn a_second_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateDir::open(dir.path()).unwrap();
        let err = StateDir::open(dir.path()).err().unwrap();
        assert_eq!(err.exit_code(), crate::classify::code::CONFIG);
        assert!(
            err.message().contains("in use by another worker process"),
            "{err}"
        );
    }

    #[test]
    fn a_corrupt_identity_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        std::fs::write(state.identity_path(), "{not json").unwrap();
        let err = state.load_identity().unwrap_err();
        assert!(err.message().contains("unreadable"), "{err}");
    }
}

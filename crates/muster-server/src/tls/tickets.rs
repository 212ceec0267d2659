//! TLS 1.3 session tickets whose keys survive a restart, so a reconnect storm after one resumes.
//!
//! A resumed TLS 1.3 handshake (RFC 8446 §2.2) skips the certificate and its signature on the
//! server and the certificate check on the client; it still runs a fresh ECDHE exchange (rustls
//! only does `psk_dhe_ke`), so every connection has its own keys and its own exporter value, and
//! the worker's proof of possession, signed over that exporter, is as strong as on a full
//! handshake. A worker's identity, its ticket ledger and revocation are checked after TLS on every
//! connection, resumed or not: resumption saves CPU and nothing else.
//!
//! rustls's own ticketer makes its key at random in memory, so a restart (the moment every worker
//! reconnects at once) loses it. This one keeps its keys in `<data-dir>/tls/ticket-keys`:
//!
//! - **A secret as sensitive as the TLS private key**: whoever holds a ticket key can finish a
//!   resumed handshake as the server with a client that presents a ticket made under it. So the
//!   file is owner-only (0600, written atomically), next to `tls/key.pem`; a file others could
//!   read is not trusted (new keys are made); the keys are never logged or printed (`Debug` says
//!   how many there are, nothing more); and the file names the certificate it belongs to, so
//!   replacing the certificate (after a key compromise, say) also replaces the ticket keys.
//! - **Rotated**: a new key encrypts new tickets every [`ROTATE_EVERY`]; an old key only decrypts,
//!   and is erased (from memory and the file) once every ticket it made has expired
//!   ([`TICKET_LIFETIME`] after it stopped making them). What a stolen file exposes is the
//!   resumption of the tickets of the last [`TICKET_LIFETIME`] + [`ROTATE_EVERY`].
//! - **TLS 1.3 only**: a TLS 1.2 ticket carries the session's master secret itself, so a leaked
//!   ticket key would decrypt recorded TLS 1.2 traffic; no TLS 1.2 ticket is made or accepted.
//!
//! Replicas on one PostgreSQL database keep their keys there instead, sealed, so that those
//! serving one certificate share them and a worker failing over resumes ([`shared`]).
//!
//! Tickets are sealed with AES-256-GCM (ring), a random nonce each, the key's random 16-byte
//! name as associated data: the layout of rustls's own ticketer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// How long a client may keep a ticket (its lifetime hint; RFC 8446 caps it at 7 days). Workers
/// hold their connections for days: a week lets a restart in that time resume most of a fleet.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How often a new key starts encrypting tickets.
pub const ROTATE_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

const FILE_VERSION: u32 = 1;
const NAME_LEN: usize = 16;
const NONCE_LEN: usize = aead::NONCE_LEN;
const TAG_LEN: usize = 16;
/// A session rustls hands us is far smaller (no client certificates here); anything larger
/// presented back is refused before any decryption is tried.
const MAX_TICKET: usize = 2048;

/// TLS 1.3 and 1.2 as rustls encodes them in the session it asks us to seal.
const TLS13: [u8; 2] = [0x03, 0x04];

#[derive(Debug, thiserror::Error)]
pub enum TicketKeyError {
    #[error("cannot make a TLS ticket key: the system's random source failed")]
    Random,
    #[error(transparent)]
    Fs(#[from] muster_fs::FsError),
    #[error("cannot read or store the TLS ticket keys in the database: {0}")]
    Store(muster_store::StoreError),
}

/// One key: its name (sent with every ticket it seals, to find it again) and when it was made.
struct Key {
    name: [u8; NAME_LEN],
    created: u64,
    secret: [u8; 32],
    sealing: LessSafeKey,
}

impl Key {
    fn generate(rng: &SystemRandom, created: u64) -> Result<Self, TicketKeyError> {
        let mut name = [0u8; NAME_LEN];
        let mut secret = [0u8; 32];
        rng.fill(&mut name).map_err(|_| TicketKeyError::Random)?;
        rng.fill(&mut secret).map_err(|_| TicketKeyError::Random)?;
        Ok(Self::new(name, created, secret))
    }

    fn new(name: [u8; NAME_LEN], created: u64, secret: [u8; 32]) -> Self {
        let unbound =
            UnboundKey::new(&aead::AES_256_GCM, &secret).expect("AES-256 takes a 32-byte key");
        Self {
            name,
            created,
            secret,
            sealing: LessSafeKey::new(unbound),
        }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // Erasure is the point of rotating; ring's own copy goes with `sealing`.
        self.secret.fill(0);
    }
}

/// The file: the certificate the keys belong to, and the keys, newest first.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    certificate: String,
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    name: String,
    created: u64,
    secret: String,
}

/// Where the keys are kept.
enum Home {
    /// A file in the data dir: one server.
    File { path: PathBuf, certificate: String },
    /// The store, shared by the replicas serving this certificate (see [`shared`]).
    Store(StoreHome),
}

struct StoreHome {
    store: muster_store::Store,
    wrap: Arc<shared::KeyWrap>,
    runtime: tokio::runtime::Handle,
    /// A re-read is under way (at most one at a time).
    syncing: AtomicBool,
    /// Unix seconds of the last re-read started, to rate-limit those a ticket under an
    /// unknown key asks for.
    synced_at: AtomicU64,
}

/// A ticket under a key this replica does not know asks for a re-read (another replica may
/// have made it) at most this often: a client can present any name it likes.
const UNKNOWN_KEY_REREAD_EVERY: u64 = 10;
/// After a failed re-read at rotation, the next one is tried this much later.
const SYNC_RETRY: u64 = 60;

/// The ticketer rustls calls for every ticket it sends and every ticket a client presents.
pub struct PersistentTicketer {
    home: Home,
    rng: SystemRandom,
    /// Newest first; the newest already in force seals (keys from the store are known a
    /// period before they are).
    keys: RwLock<Vec<Key>>,
    /// Unix seconds at which the newest key stops sealing (read without the lock on every ticket).
    rotate_at: AtomicU64,
    /// Serializes writes of the file (a rotation writes it from a thread of its own).
    writing: Arc<Mutex<()>>,
}

impl std::fmt::Debug for PersistentTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.keys.read().map_or(0, |k| k.len());
        let home = match &self.home {
            Home::File { path, .. } => path.display().to_string(),
            Home::Store(home) => format!("the database, for {}", home.wrap.certificate()),
        };
        f.debug_struct("PersistentTicketer")
            .field("home", &home)
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl PersistentTicketer {
    /// The ticketer of the data dir's key file at `path`, for the certificate with this
    /// fingerprint: its keys if the file holds usable ones for that certificate, new ones
    /// otherwise (written before this returns). Keys due for rotation are rotated now.
    pub fn open(path: &Path, certificate: &str) -> Result<Self, TicketKeyError> {
        let rng = SystemRandom::new();
        let now = now_secs();
        let mut keys = match load(path, certificate) {
            Ok(keys) => keys,
            Err(why) => {
                if let Some(why) = why {
                    tracing::warn!(file = %path.display(), "{why}; new TLS ticket keys are made (workers' next connections do full TLS handshakes)");
                }
                Vec::new()
            }
        };
        let changed = roll(&mut keys, &rng, now)?;
        let ticketer = Self {
            home: Home::File {
                path: path.to_path_buf(),
                certificate: certificate.to_owned(),
            },
            rng,
            rotate_at: AtomicU64::new(rotation_due(&keys)),
            keys: RwLock::new(keys),
            writing: Arc::new(Mutex::new(())),
        };
        if changed {
            ticketer.persist()?;
        }
        Ok(ticketer)
    }

    /// The ticketer of replicas sharing one store: the keys of the certificate `wrap` is bound
    /// to, read (and made, where missing) before this returns (see [`shared`]). Must be called
    /// on the runtime that later re-reads run on.
    pub async fn open_shared(
        store: muster_store::Store,
        wrap: Arc<shared::KeyWrap>,
    ) -> Result<Self, TicketKeyError> {
        let now = now_secs();
        let keys = shared::sync(&store, &wrap, now).await?;
        Ok(Self {
            home: Home::Store(StoreHome {
                store,
                wrap,
                runtime: tokio::runtime::Handle::current(),
                syncing: AtomicBool::new(false),
                synced_at: AtomicU64::new(now),
            }),
            rng: SystemRandom::new(),
            rotate_at: AtomicU64::new(shared::next_period_start(now)),
            keys: RwLock::new(keys),
            writing: Arc::new(Mutex::new(())),
        })
    }

    /// Writes the keys as they are now (to the file; the store's are written as they are made).
    fn persist(&self) -> Result<(), TicketKeyError> {
        let Home::File { path, certificate } = &self.home else {
            return Ok(());
        };
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let contents = {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            encode(certificate, &keys)
        };
        if let Some(parent) = path.parent() {
            muster_fs::ensure_private_dir(parent)?;
        }
        muster_fs::write_private(path, contents.as_bytes())?;
        Ok(())
    }

    /// Re-reads the store's keys on a task of its own (none on a file), unless one is under way.
    /// Should it fail, the keys in memory stay, and the next try is [`SYNC_RETRY`] later.
    fn resync(self: &Arc<Self>, now: u64) {
        let Home::Store(home) = &self.home else {
            return;
        };
        if home.syncing.swap(true, Ordering::AcqRel) {
            return;
        }
        home.synced_at.store(now, Ordering::Relaxed);
        let me = Arc::clone(self);
        home.runtime.spawn(async move {
            let Home::Store(home) = &me.home else {
                return;
            };
            match shared::sync(&home.store, &home.wrap, now_secs()).await {
                Ok(keys) => {
                    *me.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot re-read the TLS ticket keys from the database; the keys in memory stay in use");
                    me.rotate_at.store(now_secs() + SYNC_RETRY, Ordering::Relaxed);
                }
            }
            home.syncing.store(false, Ordering::Release);
        });
    }

    /// A ticket named a key this replica does not hold: another replica may have made it since
    /// the last re-read. Re-reads, at most every [`UNKNOWN_KEY_REREAD_EVERY`].
    fn on_unknown_key(self: &Arc<Self>) {
        let Home::Store(home) = &self.home else {
            return;
        };
        let now = now_secs();
        if now >= home.synced_at.load(Ordering::Relaxed) + UNKNOWN_KEY_REREAD_EVERY {
            self.resync(now);
        }
    }

    /// Rotates if the newest key has sealed long enough. Cheap when nothing is due (one atomic
    /// read); when something is, the file is written from a thread of its own so the handshake
    /// that noticed does not wait on the disk.
    fn rotate_if_due(self: &Arc<Self>) {
        let now = now_secs();
        if now < self.rotate_at.load(Ordering::Relaxed) {
            return;
        }
        if let Home::Store(_) = &self.home {
            // The next period's key is already in memory (see `shared`): sealing moves to it
            // without waiting; the re-read makes the one after and erases expired ones.
            self.rotate_at
                .store(shared::next_period_start(now), Ordering::Relaxed);
            self.resync(now);
            return;
        }
        let changed = {
            let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
            let changed = roll(&mut keys, &self.rng, now);
            self.rotate_at.store(rotation_due(&keys), Ordering::Relaxed);
            changed
        };
        match changed {
            Ok(true) => {
                let me = Arc::clone(self);
                std::thread::spawn(move || {
                    if let Err(e) = me.persist() {
                        tracing::warn!(error = %e, "cannot save the rotated TLS ticket keys; a restart before the next rotation makes new ones");
                    }
                });
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot rotate the TLS ticket key"),
        }
    }

    fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let keys = self.keys.read().ok()?;
        // The newest key already in force: shared keys are known a period ahead.
        let now = now_secs();
        let key = keys
            .iter()
            .find(|k| k.created <= now)
            .or_else(|| keys.last())?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = key
            .sealing
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.name),
                &mut out[NAME_LEN + NONCE_LEN..],
            )
            .ok()?;
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    fn open_ticket(self: &Arc<Self>, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() > MAX_TICKET || ticket.len() < NAME_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (name, rest) = ticket.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let keys = self.keys.read().ok()?;
        let Some(key) = keys.iter().find(|k| k.name == name) else {
            drop(keys);
            self.on_unknown_key();
            return None;
        };
        let mut buf = sealed.to_vec();
        let plain_len = key
            .sealing
            .open_in_place(
                Nonce::try_assume_unique_for_key(nonce).ok()?,
                Aad::from(key.name),
                &mut buf,
            )
            .ok()?
            .len();
        buf.truncate(plain_len);
        Some(buf)
    }
}

/// Makes a new sealing key if the newest is due, and erases keys whose tickets have all expired.
/// Returns whether anything changed.
fn roll(keys: &mut Vec<Key>, rng: &SystemRandom, now: u64) -> Result<bool, TicketKeyError> {
    let before = keys.len();
    // A key stops sealing ROTATE_EVERY after it was made; its last ticket expires
    // TICKET_LIFETIME later. (A clock set back leaves keys from the "future": they are kept.)
    let erase_after = ROTATE_EVERY.as_secs() + TICKET_LIFETIME.as_secs();
    keys.retain(|k| now.saturating_sub(k.created) < erase_after);
    let mut changed = keys.len() != before;
    let due = keys
        .first()
        .is_none_or(|newest| now.saturating_sub(newest.created) >= ROTATE_EVERY.as_secs());
    if due {
        keys.insert(0, Key::generate(rng, now)?);
        changed = true;
    }
    Ok(changed)
}

fn rotation_due(keys: &[Key]) -> u64 {
    keys.first()
        .map_or(0, |k| k.created + ROTATE_EVERY.as_secs())
}

fn encode(certificate: &str, keys: &[Key]) -> String {
    let file = KeyFile {
        version: FILE_VERSION,
        certificate: certificate.to_owned(),
        keys: keys
            .iter()
            .map(|k| StoredKey {
                name: hex::encode(k.name),
                created: k.created,
                secret: hex::encode(k.secret),
            })
            .collect(),
    };
    let mut text = serde_json::to_string(&file).unwrap_or_default();
    text.push('\n');
    text
}

/// The keys in the file, or why there are none to use (`None`: no file yet, nothing to say).
/// Never says anything about the keys themselves.
fn load(path: &Path, certificate: &str) -> Result<Vec<Key>, Option<String>> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(None),
        Err(e) => return Err(Some(format!("cannot read the TLS ticket keys: {e}"))),
    };
    if meta.mode() & 0o077 != 0 {
        // Someone else may have read them: they cannot be trusted to be secret any more.
        return Err(Some(format!(
            "the TLS ticket key file was readable by others (mode {:o}), so its keys are not used",
            meta.mode() & 0o777
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Some(format!("cannot read the TLS ticket keys: {e}")))?;
    let malformed = || Some("the TLS ticket key file is malformed".to_owned());
    let file: KeyFile = serde_json::from_str(&text).map_err(|_| malformed())?;
    if file.version != FILE_VERSION {
        return Err(malformed());
    }
    if file.certificate != certificate {
        return Err(Some(
            "the TLS ticket keys belong to another certificate than the one served now".to_owned(),
        ));
    }
    let mut keys = Vec::with_capacity(file.keys.len());
    for stored in file.keys {
        let name: [u8; NAME_LEN] = hex::decode(&stored.name)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(malformed)?;
        let secret: [u8; 32] = hex::decode(&stored.secret)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(malformed)?;
        keys.push(Key::new(name, stored.created, secret));
    }
    keys.sort_by_key(|k| std::cmp::Reverse(k.created));
    Ok(keys)
}

/// The session rustls asks to seal is TLS 1.3's. rustls encodes a session as an optional SNI
/// (a flag byte, then a length-prefixed name) followed by the protocol version; the tests check
/// this against real TLS 1.3 and TLS 1.2 handshakes, so a rustls that changes it fails them.
fn is_tls13_session(plain: &[u8]) -> bool {
    let version_at = match plain.first() {
        Some(0) => 1,
        Some(1) => match plain.get(1) {
            Some(&len) => 2 + usize::from(len),
            None => return false,
        },
        _ => return false,
    };
    plain.get(version_at..version_at + 2) == Some(&TLS13[..])
}

/// What rustls holds: the ticketer behind an `Arc`, so a rotation can hand the file's writing
/// to a thread of its own.
#[derive(Debug, Clone)]
pub struct Tickets(pub Arc<PersistentTicketer>);

impl rustls::server::ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(TICKET_LIFETIME.as_secs()).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        if !is_tls13_session(plain) {
            return None;
        }
        self.0.rotate_if_due();
        self.0.seal(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.0
            .open_ticket(cipher)
            .filter(|plain| is_tls13_session(plain))
    }
}

pub mod shared;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod handshakes;

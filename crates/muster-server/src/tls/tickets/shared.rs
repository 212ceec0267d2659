//! Ticket keys that replicas share through the store, so a worker failing over from one replica
//! to another resumes its TLS session there instead of making it sign and check a certificate
//! again (the failover storm is CPU-bound).
//!
//! - **One key per period, agreed by all**: periods are [`ROTATE_EVERY`] long and aligned to the
//!   Unix epoch, so every replica computes the same ones. Each replica offers a fresh key for the
//!   current period and the next, and the store keeps the first one written per certificate and
//!   period (insert-if-absent); the replica then reads back whatever was kept. The next period's
//!   key is therefore known to every replica a whole period before it seals anything, and a
//!   rotation switches keys with no read on the handshake's path.
//! - **Sealed under the TLS private key**: each key is stored encrypted with AES-256-GCM under a
//!   key derived with HKDF-SHA256 from the TLS private key (replicas share `--tls-key`), the
//!   certificate's fingerprint as HKDF info and, with the period, as associated data. A reader
//!   of the database without the TLS key learns nothing usable; a replica serving another
//!   certificate derives another key, cannot open them, and keeps keys of its own.
//! - **Erased on schedule**: a period's key is deleted (from the store, by whichever replica
//!   syncs, and from memory) once the last ticket it sealed has expired.

use muster_store::{SealedTicketKey, Store};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use super::{Key, NAME_LEN, NONCE_LEN, ROTATE_EVERY, TICKET_LIFETIME, TicketKeyError};

/// Domain separation: this derived key seals ticket keys and nothing else.
const SALT: &[u8] = b"muster tls ticket keys in the store v1";
const SECRET_LEN: usize = 32;

/// The key that seals ticket keys for the store, derived from the TLS private key and bound to
/// one certificate.
pub struct KeyWrap {
    certificate: String,
    key: LessSafeKey,
}

impl std::fmt::Debug for KeyWrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyWrap")
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

struct Aes256;

impl hkdf::KeyType for Aes256 {
    fn len(&self) -> usize {
        SECRET_LEN
    }
}

impl KeyWrap {
    /// `private_key` is the TLS private key's DER encoding; `certificate` the fingerprint of the
    /// certificate served with it.
    pub fn derive(private_key: &[u8], certificate: &str) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(private_key);
        let info = [certificate.as_bytes()];
        let mut secret = [0u8; SECRET_LEN];
        prk.expand(&info, Aes256)
            .and_then(|okm| okm.fill(&mut secret))
            .expect("HKDF-SHA256 yields 32 bytes");
        let unbound =
            UnboundKey::new(&aead::AES_256_GCM, &secret).expect("AES-256 takes a 32-byte key");
        secret.fill(0);
        Self {
            certificate: certificate.to_owned(),
            key: LessSafeKey::new(unbound),
        }
    }

    pub fn certificate(&self) -> &str {
        &self.certificate
    }

    /// What a sealed key is bound to besides the derived key: its certificate and period, so a
    /// row moved to another period or certificate does not open.
    fn aad(&self, period: i64) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.certificate.len() + 9);
        aad.extend_from_slice(self.certificate.as_bytes());
        aad.push(0);
        aad.extend_from_slice(&period.to_be_bytes());
        aad
    }

    fn seal(
        &self,
        rng: &SystemRandom,
        period: i64,
        name: &[u8; NAME_LEN],
        secret: &[u8; SECRET_LEN],
    ) -> Result<SealedTicketKey, TicketKeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).map_err(|_| TicketKeyError::Random)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + NAME_LEN + SECRET_LEN + 16);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(name);
        sealed.extend_from_slice(secret);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(period)),
                &mut sealed[NONCE_LEN..],
            )
            .map_err(|_| TicketKeyError::Random)?;
        sealed.extend_from_slice(tag.as_ref());
        Ok(SealedTicketKey {
            certificate: self.certificate.clone(),
            period,
            sealed,
        })
    }

    /// The ticket key in a row, if this certificate's key opens it.
    fn open(&self, row: &SealedTicketKey) -> Option<Key> {
        if row.certificate != self.certificate || row.sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = row.sealed.split_at(NONCE_LEN);
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::try_assume_unique_for_key(nonce).ok()?,
                Aad::from(self.aad(row.period)),
                &mut buf,
            )
            .ok()?;
        let key = (plain.len() == NAME_LEN + SECRET_LEN).then(|| {
            let mut name = [0u8; NAME_LEN];
            let mut secret = [0u8; SECRET_LEN];
            name.copy_from_slice(&plain[..NAME_LEN]);
            secret.copy_from_slice(&plain[NAME_LEN..]);
            let created = u64::try_from(row.period).ok()? * ROTATE_EVERY.as_secs();
            Some(Key::new(name, created, secret))
        });
        buf.fill(0);
        key.flatten()
    }
}

/// The period `at` (Unix seconds) falls in.
pub(super) fn period_of(at: u64) -> i64 {
    i64::try_from(at / ROTATE_EVERY.as_secs()).unwrap_or(i64::MAX)
}

/// When the period after the one `at` falls in starts.
pub(super) fn next_period_start(at: u64) -> u64 {
    (at / ROTATE_EVERY.as_secs() + 1) * ROTATE_EVERY.as_secs()
}

/// The oldest period whose tickets may still be presented at `at`: a period's key stops sealing
/// at its end and its last ticket expires [`TICKET_LIFETIME`] later.
fn oldest_kept(at: u64) -> i64 {
    period_of(at.saturating_sub(TICKET_LIFETIME.as_secs()))
}

/// Makes sure the store has keys of this certificate for the current and the next period (the
/// first written wins), erases expired ones, and returns every key of this certificate this
/// replica can open, newest first.
pub(super) async fn sync(
    store: &Store,
    wrap: &std::sync::Arc<KeyWrap>,
    at: u64,
) -> Result<Vec<Key>, TicketKeyError> {
    let rng = SystemRandom::new();
    let current = period_of(at);
    let mut offers = Vec::with_capacity(2);
    for period in [current, current.saturating_add(1)] {
        let offered = Key::generate(&rng, 0)?;
        offers.push(wrap.seal(&rng, period, &offered.name, &offered.secret)?);
    }
    let certificate = wrap.certificate.clone();
    let rows = store
        .write(move |tx| {
            for offer in &offers {
                tx.insert_ticket_key(offer)?;
            }
            tx.drop_ticket_keys_before(oldest_kept(at))?;
            tx.ticket_keys(&certificate)
        })
        .await
        .map_err(TicketKeyError::Store)?;
    let total = rows.len();
    let mut keys: Vec<Key> = rows.iter().filter_map(|row| wrap.open(row)).collect();
    if keys.len() != total {
        // Never says anything about the keys; only that some were not opened.
        tracing::warn!(
            unusable = total - keys.len(),
            "TLS ticket keys in the database do not open with this certificate's private key; workers resuming under them do full TLS handshakes"
        );
    }
    keys.sort_by_key(|k| std::cmp::Reverse(k.created));
    Ok(keys)
}

#[cfg(test)]
mod tests;

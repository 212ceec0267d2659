//! Checking that a worker holds its key.
//!
//! A proof (`muster_core::identity::Proof`) is bound to something only this connection has:
//! over TLS, the connection's exporter value ([`ChannelBinding`], which the worker derives on its
//! side too); where the server has no TLS of its own (`--no-tls`, loopback or behind a TLS
//! proxy), a nonce this server issued a moment ago ([`NonceKey`]). Enrollment always signs a
//! fresh nonce: the worker's enrollment request goes through an ordinary HTTP client (with a
//! connection pool) that cannot read its exporter, and binding it to a connection would buy
//! nothing there — a man in the middle who could relay an enrollment would also read the token
//! or secret it carries. What the proof gives enrollment is that the key recorded is one the
//! enrolling machine holds.
//!
//! Nonces are stateless: `expiry | random | HMAC(key, …)`, under a key kept in the store so that
//! every replica accepts every replica's nonces.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use muster_core::Timestamp;
use muster_core::identity::Binding;
use muster_store::{Scope, Store, StoreError};
use rand::RngCore;
use ring::hmac;

use crate::lean_tls::ChannelBinding;

/// How long a nonce may be used after it was issued.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(60);
const SETTING: &str = "proof_nonce_key";
const DOMAIN: &[u8] = b"muster-nonce-v1";
const MAC_LEN: usize = 16;
const RANDOM_LEN: usize = 16;

/// Why a nonce was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    #[error("the nonce is malformed")]
    Malformed,
    #[error("the nonce was not issued by this fleet")]
    Forged,
    #[error("the nonce expired")]
    Expired,
}

/// The key nonces are made and checked with.
pub struct NonceKey(hmac::Key);

impl NonceKey {
    /// The fleet's key: read from the store, or made and stored by the first replica to start.
    pub async fn load_or_create(store: &Store) -> Result<Self, StoreError> {
        let mut fresh = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        let key = store
            .write(move |tx| {
                // Replicas starting together must agree on one key.
                tx.serialize(Scope::Enrollment)?;
                if let Some(existing) = tx.get_setting(SETTING)? {
                    return Ok(existing);
                }
                let value = hex::encode(fresh);
                tx.put_setting(SETTING, &value)?;
                Ok(value)
            })
            .await?;
        let bytes = hex::decode(key.trim())
            .map_err(|e| StoreError::Corrupt(format!("setting `{SETTING}`: {e}")))?;
        Ok(Self::from_bytes(&bytes))
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    fn mac(&self, expires: &[u8], random: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(DOMAIN);
        context.update(expires);
        context.update(random);
        context.sign()
    }

    /// A nonce good until `now + NONCE_LIFETIME`.
    pub fn issue(&self, now: Timestamp) -> String {
        let expires = now
            .saturating_add(NONCE_LIFETIME)
            .unix_millis()
            .to_be_bytes();
        let mut random = [0u8; RANDOM_LEN];
        rand::rngs::OsRng.fill_bytes(&mut random);
        let mac = self.mac(&expires, &random);
        let mut out = Vec::with_capacity(8 + RANDOM_LEN + MAC_LEN);
        out.extend_from_slice(&expires);
        out.extend_from_slice(&random);
        out.extend_from_slice(&mac.as_ref()[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Whether `nonce` was issued by this fleet and is still fresh.
    pub fn check(&self, nonce: &str, now: Timestamp) -> Result<(), NonceError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| NonceError::Malformed)?;
        if bytes.len() != 8 + RANDOM_LEN + MAC_LEN {
            return Err(NonceError::Malformed);
        }
        let (expires, rest) = bytes.split_at(8);
        let (random, mac) = rest.split_at(RANDOM_LEN);
        let expected = self.mac(expires, random);
        // `verify` compares in constant time; a truncated tag is compared the same way.
        let full = expected.as_ref();
        if !constant_time_eq(&full[..MAC_LEN], mac) {
            return Err(NonceError::Forged);
        }
        let expires_ms = i64::from_be_bytes(expires.try_into().map_err(|_| NonceError::Malformed)?);
        if now.unix_millis() > expires_ms {
            return Err(NonceError::Expired);
        }
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// What a connection's proof must be bound to: its TLS exporter value when it has one (a nonce
/// is then not accepted: no downgrade), a valid nonce otherwise.
pub fn connect_binding(
    key: &NonceKey,
    conn: Option<&ChannelBinding>,
    nonce: Option<&str>,
    now: Timestamp,
) -> Result<Binding, ProofError> {
    match conn {
        Some(binding) => Ok(Binding::TlsExporter(binding.0)),
        None => {
            let nonce = nonce.ok_or(ProofError::NoBinding)?;
            key.check(nonce, now).map_err(ProofError::Nonce)?;
            Ok(Binding::ServerNonce(nonce.as_bytes().to_vec()))
        }
    }
}

/// What an enrollment's proof must be bound to: a fresh nonce of this fleet's.
pub fn enroll_binding(
    key: &NonceKey,
    nonce: Option<&str>,
    now: Timestamp,
) -> Result<Binding, ProofError> {
    let nonce = nonce.ok_or(ProofError::NoBinding)?;
    key.check(nonce, now).map_err(ProofError::Nonce)?;
    Ok(Binding::ServerNonce(nonce.as_bytes().to_vec()))
}

/// Why a proof could not be checked or did not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the request carries no proof that the worker holds its key")]
    Missing,
    #[error("the proof is bound to nothing: there is no TLS exporter here and no server nonce")]
    NoBinding,
    #[error("the proof's server nonce is not good: {0}")]
    Nonce(NonceError),
    #[error("the proof's public key is malformed")]
    PublicKey,
    #[error("the signature does not prove this key on this connection")]
    Signature,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    #[test]
    fn a_nonce_is_good_when_this_fleet_issued_it_and_until_it_expires() {
        let key = NonceKey::from_bytes(&[9; 32]);
        let nonce = key.issue(at(1_000));
        assert_eq!(key.check(&nonce, at(2_000)), Ok(()));
        assert_eq!(
            key.check(&nonce, at(1_000 + 60_001)),
            Err(NonceError::Expired)
        );
        let other_fleet = NonceKey::from_bytes(&[8; 32]);
        assert_eq!(
            other_fleet.check(&nonce, at(2_000)),
            Err(NonceError::Forged)
        );
        let mut tampered = nonce.clone().into_bytes();
        tampered[2] = if tampered[2] == b'A' { b'B' } else { b'A' };
        assert_ne!(
            key.check(std::str::from_utf8(&tampered).unwrap(), at(2_000)),
            Ok(())
        );
        assert_eq!(key.check("short", at(0)), Err(NonceError::Malformed));
    }

    #[test]
    fn a_connection_with_tls_binds_to_its_exporter_and_refuses_a_nonce_instead() {
        let key = NonceKey::from_bytes(&[9; 32]);
        let conn = ChannelBinding([3; 32]);
        let nonce = key.issue(at(0));
        assert_eq!(
            connect_binding(&key, Some(&conn), Some(&nonce), at(1)),
            Ok(Binding::TlsExporter([3; 32]))
        );
        assert_eq!(
            connect_binding(&key, None, Some(&nonce), at(1)),
            Ok(Binding::ServerNonce(nonce.as_bytes().to_vec()))
        );
        assert_eq!(
            connect_binding(&key, None, None, at(1)),
            Err(ProofError::NoBinding)
        );
    }
}

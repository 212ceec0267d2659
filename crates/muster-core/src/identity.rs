//! A worker's key pair and what it proves.
//!
//! - [`WorkerKey`]: an Ed25519 key pair the worker makes on first start. The private half never
//!   leaves its state dir; the server records the [`PublicKey`] at enrollment.
//! - [`PublicKey::machine_id`]: a new worker's machine id is derived from its public key, so no
//!   one can claim a machine id without holding its key.
//! - [`Proof`]: what the worker signs to prove it holds the key on *this* connection: the
//!   connection's [`Binding`] (a TLS exporter value, or a server nonce where there is no TLS),
//!   who it claims to be, and for a connection the ticket it presents and its process nonce.
//!
//! Signatures are `ring`'s Ed25519; nothing here is a new primitive. Every field of the signed
//! message is length-prefixed, so no two different proofs share a message.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::{CryptoRng, RngCore};
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};

use crate::credentials::MachineId;

/// The domain of every proof muster signs: a signature made for anything else never verifies.
const PROOF_DOMAIN: &[u8] = b"muster-proof-v1";
/// The domain of machine ids derived from public keys.
const MACHINE_ID_DOMAIN: &[u8] = b"muster-machine-id-v1";
/// How a stored private key starts, so a wrong file is refused rather than misread.
const KEY_FILE_PREFIX: &str = "ed25519-seed:";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the worker key file is not an Ed25519 key muster wrote")]
    Malformed,
    #[error("`{0}` is not an Ed25519 public key (43 characters of base64url)")]
    PublicKey(String),
    #[error("the signature is malformed")]
    Signature,
}

/// The worker's key pair.
pub struct WorkerKey {
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl WorkerKey {
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// The key pair of a given seed. A worker makes its seed with [`WorkerKey::generate`]; a
    /// fixed seed is for tests and load tools that need the same key twice.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        // `unchecked` only means there is no public key to compare with: it is derived here.
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .expect("every 32-byte seed is an Ed25519 key");
        Self { seed, pair }
    }

    /// The key as the worker stores it (in an owner-only file).
    pub fn to_file(&self) -> String {
        format!("{KEY_FILE_PREFIX}{}\n", URL_SAFE_NO_PAD.encode(self.seed))
    }

    pub fn from_file(text: &str) -> Result<Self, KeyError> {
        let encoded = text
            .trim()
            .strip_prefix(KEY_FILE_PREFIX)
            .ok_or(KeyError::Malformed)?;
        let seed: [u8; 32] = URL_SAFE_NO_PAD
            .decode(encoded)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(KeyError::Malformed)?;
        Ok(Self::from_seed(seed))
    }

    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(bytes)
    }

    pub fn sign(&self, proof: &Proof<'_>) -> ProofSignature {
        let mut bytes = [0u8; 64];
        bytes.copy_from_slice(self.pair.sign(&proof.message()).as_ref());
        ProofSignature(bytes)
    }
}

impl fmt::Debug for WorkerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkerKey({})", self.public_key())
    }
}

/// An Ed25519 public key: base64url on the wire and in the store.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn parse(input: &str) -> Result<Self, KeyError> {
        URL_SAFE_NO_PAD
            .decode(input.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .map(PublicKey)
            .ok_or_else(|| KeyError::PublicKey(crate::name::shorten(input)))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The machine id of a worker whose identity began with this key.
    pub fn machine_id(&self) -> MachineId {
        let digest = Sha256::new()
            .chain_update(MACHINE_ID_DOMAIN)
            .chain_update(self.0)
            .finalize();
        MachineId::parse(&hex::encode(&digest[..16])).expect("32 hex digits are a machine id")
    }

    /// `sha256:` and the first 16 hex digits of the key's SHA-256: short enough to show in a
    /// listing, long enough to tell keys apart.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", &hex::encode(Sha256::digest(self.0))[..16])
    }

    /// Whether `signature` is this key's signature over `proof`.
    pub fn verify(&self, proof: &Proof<'_>, signature: &ProofSignature) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, self.0)
            .verify(&proof.message(), &signature.0)
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// An Ed25519 signature over a [`Proof`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ProofSignature([u8; 64]);

impl ProofSignature {
    pub fn parse(input: &str) -> Result<Self, KeyError> {
        URL_SAFE_NO_PAD
            .decode(input.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .map(ProofSignature)
            .ok_or(KeyError::Signature)
    }
}

impl fmt::Display for ProofSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for ProofSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProofSignature(..)")
    }
}

/// What a proof is for: a signature made to enroll is no good for connecting, and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Connect,
    Enroll,
}

/// What ties a proof to one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// The TLS 1.3 exporter value of the connection (both ends derive it; no one else can).
    TlsExporter([u8; 32]),
    /// A fresh nonce the server issued, where the server has no TLS of its own (loopback, or a
    /// TLS proxy in front).
    ServerNonce(Vec<u8>),
}

/// A random value per worker process: a connection that carries the same one as a live session
/// is that same process coming back, not a copy of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessNonce(pub [u8; 16]);

impl ProcessNonce {
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn parse(input: &str) -> Option<Self> {
        URL_SAFE_NO_PAD
            .decode(input.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .map(ProcessNonce)
    }
}

impl fmt::Display for ProcessNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for ProcessNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProcessNonce(..)")
    }
}

/// The statement a worker signs.
#[derive(Debug, Clone)]
pub struct Proof<'a> {
    pub purpose: Purpose,
    pub binding: &'a Binding,
    /// Who it claims to be: the worker id (connect), or the token or worker name (enroll).
    pub subject: &'a str,
    pub public_key: &'a PublicKey,
    /// The ticket it presents (connect), if it holds one.
    pub ticket: Option<&'a [u8]>,
    pub process: Option<&'a ProcessNonce>,
}

impl Proof<'_> {
    /// The exact bytes signed.
    pub fn message(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let mut field = |bytes: &[u8]| {
            let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&bytes[..usize::from(len)]);
        };
        field(PROOF_DOMAIN);
        field(match self.purpose {
            Purpose::Connect => b"connect",
            Purpose::Enroll => b"enroll",
        });
        match self.binding {
            Binding::TlsExporter(value) => {
                field(b"tls-exporter");
                field(value);
            }
            Binding::ServerNonce(nonce) => {
                field(b"server-nonce");
                field(nonce);
            }
        }
        field(self.subject.as_bytes());
        field(&self.public_key.0);
        field(self.ticket.unwrap_or_default());
        field(self.process.map(|p| &p.0[..]).unwrap_or_default());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    fn proof<'a>(binding: &'a Binding, key: &'a PublicKey, subject: &'a str) -> Proof<'a> {
        Proof {
            purpose: Purpose::Connect,
            binding,
            subject,
            public_key: key,
            ticket: Some(b"ticket"),
            process: None,
        }
    }

    #[test]
    fn a_signature_verifies_for_its_own_proof_only() {
        let key = WorkerKey::generate(&mut OsRng);
        let public = key.public_key();
        let here = Binding::TlsExporter([1; 32]);
        let elsewhere = Binding::TlsExporter([2; 32]);
        let signature = key.sign(&proof(&here, &public, "w1"));
        assert!(public.verify(&proof(&here, &public, "w1"), &signature));
        // Relayed to another connection, claimed for another worker, or for another purpose.
        assert!(!public.verify(&proof(&elsewhere, &public, "w1"), &signature));
        assert!(!public.verify(&proof(&here, &public, "w2"), &signature));
        let mut enroll = proof(&here, &public, "w1");
        enroll.purpose = Purpose::Enroll;
        assert!(!public.verify(&enroll, &signature));
        // Another key's signature.
        let other = WorkerKey::generate(&mut OsRng);
        assert!(!public.verify(
            &proof(&here, &public, "w1"),
            &other.sign(&proof(&here, &public, "w1"))
        ));
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let key = WorkerKey::generate(&mut OsRng).public_key();
        let nonce_a = Binding::ServerNonce(b"ab".to_vec());
        let nonce_b = Binding::ServerNonce(b"a".to_vec());
        assert_ne!(
            proof(&nonce_a, &key, "c").message(),
            proof(&nonce_b, &key, "bc").message()
        );
    }

    #[test]
    fn keys_round_trip_through_their_file_and_name_their_machine() {
        let key = WorkerKey::generate(&mut OsRng);
        let again = WorkerKey::from_file(&key.to_file()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(
            PublicKey::parse(&key.public_key().to_string()).unwrap(),
            key.public_key()
        );
        let id = key.public_key().machine_id();
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(id, again.public_key().machine_id());
        assert_ne!(
            id,
            WorkerKey::generate(&mut OsRng).public_key().machine_id()
        );
        assert_eq!(
            WorkerKey::from_file("ed25519-seed:short").unwrap_err(),
            KeyError::Malformed
        );
        assert!(!format!("{key:?}").contains(&key.to_file()[KEY_FILE_PREFIX.len()..]));
    }
}

//! Credentials: how secrets are made, stored and checked.
//!
//! Two kinds of secret, two kinds of hash, on purpose:
//! - Secrets muster generates (enrollment-token secrets, worker API keys, the admin token) carry
//!   256 random bits. Guessing one is hopeless, so they are stored as a plain SHA-256 and checked
//!   in constant time. A slow hash would add nothing but CPU per connection.
//! - Secrets people choose (the auto-enrollment secret, admin passwords) may be weak, so they are
//!   stored only as a salted Argon2id hash, which makes an offline guess expensive.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::name::{Name, NameError, shorten};

/// Random bytes in every generated secret: 256 bits.
pub const SECRET_BYTES: usize = 32;

fn random_b64<R: RngCore + CryptoRng>(rng: &mut R, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// The SHA-256 of a high-entropy secret, as stored. Compared in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Constant-time check of a presented secret against this hash.
    pub fn matches(&self, presented: &str) -> bool {
        let other = Self::of(presented);
        self.0.ct_eq(&other.0).into()
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(input: &str) -> Option<Self> {
        let bytes = hex::decode(input).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hashes are not secrets, but there is no reason to print them either.
        f.write_str("SecretHash(..)")
    }
}

/// A worker's API key hash.
pub type KeyHash = SecretHash;

/// An enrollment token's plaintext: `NAME.SECRET`. Shown once at creation, never stored.
#[derive(Clone)]
pub struct TokenSecret {
    pub name: Name,
    secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    #[error(
        "enrollment token is malformed: expected `NAME.SECRET` as printed by `muster token create`"
    )]
    MissingDot,
    #[error("enrollment token is malformed: {0}")]
    BadName(NameError),
    #[error("enrollment token is malformed: the part after the dot is not a muster token secret")]
    BadSecret,
}

impl TokenSecret {
    pub fn generate<R: RngCore + CryptoRng>(name: Name, rng: &mut R) -> Self {
        Self {
            name,
            secret: random_b64(rng, SECRET_BYTES),
        }
    }

    /// Parses what a user pastes. Only the shape is checked here; whether the secret is right is
    /// for the stored hash to say.
    pub fn parse(input: &str) -> Result<Self, TokenFormatError> {
        let (name, secret) = input
            .trim()
            .split_once('.')
            .ok_or(TokenFormatError::MissingDot)?;
        let name = Name::parse(name).map_err(TokenFormatError::BadName)?;
        let plausible = (40..=128).contains(&secret.len())
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !plausible {
            return Err(TokenFormatError::BadSecret);
        }
        Ok(Self {
            name,
            secret: secret.to_owned(),
        })
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.secret)
    }

    /// The full plaintext, `NAME.SECRET`.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.name, self.secret)
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSecret({}.<redacted>)", self.name)
    }
}

/// A worker's API key: `mk_` and 256 random bits. The prefix makes a leaked key recognisable
/// to secret scanners.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub const PREFIX: &'static str = "mk_";

    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self(format!("{}{}", Self::PREFIX, random_b64(rng, SECRET_BYTES)))
    }

    pub fn from_presented(input: &str) -> Self {
        Self(input.to_owned())
    }

    pub fn hash(&self) -> KeyHash {
        SecretHash::of(&self.0)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The admin credential: a bearer token for the admin API, written to the data dir at first
/// start. Same strength and storage as an API key.
pub fn generate_admin_token<R: RngCore + CryptoRng>(rng: &mut R) -> String {
    format!("ma_{}", random_b64(rng, SECRET_BYTES))
}

/// A random secret for `muster enrollment enable --generate`: 256 bits, 43 characters.
pub fn generate_enrollment_secret<R: RngCore + CryptoRng>(rng: &mut R) -> String {
    random_b64(rng, SECRET_BYTES)
}

/// An identifier: 128 random bits, hex. Used for worker and job ids.
pub fn generate_id<R: RngCore + CryptoRng>(rng: &mut R) -> String {
    let mut buf = [0u8; 16];
    rng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A machine identity, created by the worker on first start and kept in its state dir.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MachineId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "machine id `{0}` is malformed: machine ids are 8–128 characters of letters, digits, `-` and `_`"
)]
pub struct MachineIdError(String);

impl MachineId {
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self(generate_id(rng))
    }

    pub fn parse(input: &str) -> Result<Self, MachineIdError> {
        let ok = (8..=128).contains(&input.len())
            && input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(input.to_owned()))
        } else {
            Err(MachineIdError(shorten(input)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The shortest auto-enrollment secret accepted.
pub const MIN_SHARED_SECRET_LEN: usize = 32;
/// The longest, so a pasted file cannot make the server hash megabytes.
pub const MAX_SHARED_SECRET_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharedSecretError {
    #[error(
        "the enrollment secret is {0} characters long; it must be at least 32 characters so it cannot be guessed"
    )]
    TooShort(usize),
    #[error("the enrollment secret is longer than 1024 characters")]
    TooLong,
    #[error("the enrollment secret contains whitespace or control characters")]
    BadCharacters,
}

/// Checks a chosen auto-enrollment secret against the rules before it is hashed.
pub fn validate_shared_secret(secret: &str) -> Result<(), SharedSecretError> {
    let len = secret.chars().count();
    if len < MIN_SHARED_SECRET_LEN {
        return Err(SharedSecretError::TooShort(len));
    }
    if len > MAX_SHARED_SECRET_LEN {
        return Err(SharedSecretError::TooLong);
    }
    if secret.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(SharedSecretError::BadCharacters);
    }
    Ok(())
}

/// Argon2id, with OWASP's recommended parameters (19 MiB, 2 passes). Used for secrets people
/// choose. Verification costs tens of milliseconds of CPU on purpose.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A slow, salted hash in PHC string form (`$argon2id$...`).
#[derive(Clone, PartialEq, Eq)]
pub struct SlowHash(String);

impl SlowHash {
    pub fn create<R: RngCore + CryptoRng>(secret: &str, rng: &mut R) -> Self {
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        // 16 bytes is within the salt length Argon2 accepts, so encoding cannot fail.
        let salt = SaltString::encode_b64(&salt).expect("16-byte salt is valid");
        let hash = argon2()
            .hash_password(secret.as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default();
        Self(hash)
    }

    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }

    pub fn as_stored(&self) -> &str {
        &self.0
    }

    /// Checks a presented secret. Takes tens of milliseconds: call it off the async runtime.
    /// Allocates Argon2's working memory (19 MiB) for the one check; a server checking many
    /// uses [`SlowHash::verify_with`] and its own reused memory instead.
    pub fn verify(&self, presented: &str) -> bool {
        self.verify_with(presented, &mut SlowHashMemory::default())
    }

    /// [`SlowHash::verify`] in caller-provided working memory, grown to what the hash's
    /// parameters need and kept: a thread that checks secrets all day holds one buffer, instead
    /// of asking the allocator for 19 MiB per check (which glibc keeps per thread, for good).
    pub fn verify_with(&self, presented: &str, memory: &mut SlowHashMemory) -> bool {
        let Ok(parsed) = PasswordHash::new(&self.0) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return false;
        };
        let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
            return false;
        };
        let version = match parsed.version.map(Version::try_from) {
            None => Version::V0x13,
            Some(Ok(version)) => version,
            Some(Err(_)) => return false,
        };
        let Ok(stored_params) = Params::try_from(&parsed) else {
            return false;
        };
        let Ok(params) = Params::new(
            stored_params.m_cost(),
            stored_params.t_cost(),
            stored_params.p_cost(),
            Some(expected.len()),
        ) else {
            return false;
        };
        let mut salt_buf = [0u8; 64];
        let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
            return false;
        };
        let blocks = params.block_count();
        if memory.0.len() < blocks {
            memory.0.resize(blocks, argon2::Block::default());
        }
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(
                presented.as_bytes(),
                salt,
                &mut out,
                &mut memory.0[..blocks],
            )
            .is_ok()
            && bool::from(expected.as_bytes().ct_eq(&out))
    }
}

/// Argon2's working memory, reused from one check to the next (see [`SlowHash::verify_with`]).
#[derive(Default)]
pub struct SlowHashMemory(Vec<argon2::Block>);

impl SlowHashMemory {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.0.len() * std::mem::size_of::<argon2::Block>()
    }
}

impl fmt::Debug for SlowHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SlowHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    #[test]
    fn token_plaintext_round_trips_and_hash_checks() {
        let token = TokenSecret::generate(Name::parse("t1").unwrap(), &mut OsRng);
        assert!(
            token.secret().len() >= 43,
            "256 bits is at least 43 base64url characters"
        );
        let parsed = TokenSecret::parse(&token.expose()).unwrap();
        assert_eq!(parsed.name.as_str(), "t1");
        assert!(token.hash().matches(parsed.secret()));
        assert!(!token.hash().matches("wrong"));
        assert!(!format!("{token:?}").contains(token.secret()));
    }

    #[test]
    fn malformed_tokens_are_named() {
        assert_eq!(
            TokenSecret::parse("nodot").unwrap_err(),
            TokenFormatError::MissingDot
        );
        assert!(matches!(
            TokenSecret::parse("Bad.x").unwrap_err(),
            TokenFormatError::BadName(_)
        ));
        assert_eq!(
            TokenSecret::parse("ok.short").unwrap_err(),
            TokenFormatError::BadSecret
        );
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let h = SecretHash::of("abc");
        assert_eq!(SecretHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(SecretHash::from_hex("zz"), None);
    }

    #[test]
    fn shared_secret_rules() {
        assert_eq!(
            validate_shared_secret("short"),
            Err(SharedSecretError::TooShort(5))
        );
        assert!(validate_shared_secret(&"x".repeat(32)).is_ok());
        assert_eq!(
            validate_shared_secret(&format!("{} ", "x".repeat(32))),
            Err(SharedSecretError::BadCharacters)
        );
        let msg = validate_shared_secret("short").unwrap_err().to_string();
        assert!(msg.contains("at least 32"), "{msg}");
    }

    #[test]
    fn slow_hash_verifies_only_the_right_secret() {
        let secret = generate_enrollment_secret(&mut OsRng);
        let hash = SlowHash::create(&secret, &mut OsRng);
        assert!(hash.as_stored().starts_with("$argon2id$"));
        assert!(!hash.as_stored().contains(&secret));
        assert!(hash.verify(&secret));
        assert!(!hash.verify("something else entirely, 32 chars long"));
        // The same answers from reused memory, which keeps its size.
        let mut memory = SlowHashMemory::default();
        assert!(hash.verify_with(&secret, &mut memory));
        let held = memory.bytes();
        assert_eq!(held, 19 * 1024 * 1024);
        assert!(!hash.verify_with("something else entirely, 32 chars long", &mut memory));
        assert!(hash.verify_with(&secret, &mut memory));
        assert_eq!(memory.bytes(), held);
        // The library's own verifier agrees.
        let parsed = PasswordHash::new(hash.as_stored()).unwrap();
        assert!(
            argon2::password_hash::PasswordVerifier::verify_password(
                &argon2(),
                secret.as_bytes(),
                &parsed
            )
            .is_ok()
        );
    }

    #[test]
    fn machine_ids_are_validated() {
        assert!(MachineId::parse(MachineId::generate(&mut OsRng).as_str()).is_ok());
        assert!(MachineId::parse("short").is_err());
        assert!(MachineId::parse("has space in it").is_err());
    }
}

//! Issuer keys: the Ed25519 key pair a license issuer signs with, written as PASERK
//! (`k4.secret.…`, `k4.public.…`), and the key's fingerprint, its PASERK id (`k4.pid.…`), which
//! a license names in its footer and `muster license show` prints as its `issuer`.

use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::paserk::{FormatAsPaserk, Id};
use pasetors::version4::V4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not an issuer public key: expected one line `k4.public.…` (PASERK)")]
    NotPublic,
    #[error("not an issuer secret key: expected one line `k4.secret.…` (PASERK)")]
    NotSecret,
    #[error("cannot generate a key pair: {0}")]
    Generate(String),
}

/// A public key that verifies licenses, with its fingerprint.
#[derive(Clone)]
pub struct IssuerKey {
    key: AsymmetricPublicKey<V4>,
    id: String,
}

impl std::fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("IssuerKey").field(&self.id).finish()
    }
}

impl PartialEq for IssuerKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl IssuerKey {
    /// Parses `k4.public.…`, surrounding whitespace allowed.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let key =
            AsymmetricPublicKey::<V4>::try_from(text.trim()).map_err(|_| KeyError::NotPublic)?;
        Ok(Self::from_key(key))
    }

    fn from_key(key: AsymmetricPublicKey<V4>) -> Self {
        let id = paserk(&Id::from(&key));
        Self { key, id }
    }

    /// The fingerprint: the key's PASERK id, `k4.pid.…`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as PASERK, `k4.public.…`: what an issuer key file holds.
    pub fn to_paserk(&self) -> String {
        paserk(&self.key)
    }

    pub(crate) fn key(&self) -> &AsymmetricPublicKey<V4> {
        &self.key
    }
}

/// The secret half: signs licenses. Never logged (its `Debug` says nothing of it).
pub struct IssuerSecret {
    key: AsymmetricSecretKey<V4>,
    public: IssuerKey,
}

impl std::fmt::Debug for IssuerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerSecret")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl IssuerSecret {
    /// A new key pair from the operating system's randomness.
    pub fn generate() -> Result<Self, KeyError> {
        let pair = AsymmetricKeyPair::<V4>::generate()
            .map_err(|e| KeyError::Generate(format!("{e:?}")))?;
        Ok(Self {
            key: pair.secret,
            public: IssuerKey::from_key(pair.public),
        })
    }

    /// Parses `k4.secret.…`, surrounding whitespace allowed.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let key =
            AsymmetricSecretKey::<V4>::try_from(text.trim()).map_err(|_| KeyError::NotSecret)?;
        let public = AsymmetricPublicKey::<V4>::try_from(&key).map_err(|_| KeyError::NotSecret)?;
        Ok(Self {
            key,
            public: IssuerKey::from_key(public),
        })
    }

    pub fn public(&self) -> &IssuerKey {
        &self.public
    }

    /// The secret key as PASERK, `k4.secret.…`: what the issuer keeps, owner-only.
    pub fn to_paserk(&self) -> String {
        paserk(&self.key)
    }

    pub(crate) fn key(&self) -> &AsymmetricSecretKey<V4> {
        &self.key
    }
}

fn paserk(value: &dyn FormatAsPaserk) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = value.fmt(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_as_paserk_and_keep_their_id() {
        let secret = IssuerSecret::generate().unwrap();
        let text = secret.to_paserk();
        assert!(text.starts_with("k4.secret."), "{text}");
        let again = IssuerSecret::parse(&format!("{text}\n")).unwrap();
        assert_eq!(again.public(), secret.public());
        let public = IssuerKey::parse(&secret.public().to_paserk()).unwrap();
        assert!(public.id().starts_with("k4.pid."), "{}", public.id());
        assert_eq!(public.id(), secret.public().id());
        assert!(!format!("{secret:?}").contains(&text));
    }

    #[test]
    fn a_key_of_the_wrong_kind_is_refused() {
        let secret = IssuerSecret::generate().unwrap();
        assert_eq!(
            IssuerKey::parse(&secret.to_paserk()).unwrap_err(),
            KeyError::NotPublic
        );
        assert_eq!(
            IssuerSecret::parse(&secret.public().to_paserk()).unwrap_err(),
            KeyError::NotSecret
        );
        assert_eq!(IssuerKey::parse("hello").unwrap_err(), KeyError::NotPublic);
    }
}

//! muster's license document, written once for the server that verifies it and the tool that
//! signs it.
//!
//! A license is a PASETO v4.public token: Ed25519 over a small JSON document, with the signing
//! key's PASERK id in its footer ([`document`]). Issuer keys are PASERK text ([`keys`]). A
//! server trusts muster's own issuer key, compiled in ([`MUSTER_ISSUER`]), and any keys its
//! operator adds ([`Issuers`]); verification never leaves the machine.

pub mod document;
pub mod keys;

pub use document::{
    Document, FORMAT_VERSION, LicenseError, Terms, check_dates, sign, sign_document, verify,
};
pub use keys::{IssuerKey, IssuerSecret, KeyError};

/// muster's own issuer public key. Its secret half is kept by whoever issues muster's licenses,
/// never in this repository.
pub const MUSTER_ISSUER: &str = include_str!("../issuer/muster.pub");

/// The issuer keys a server trusts: muster's own, and those its operator adds.
#[derive(Debug, Clone)]
pub struct Issuers {
    keys: Vec<IssuerKey>,
}

impl Issuers {
    /// muster's own key only.
    pub fn muster() -> Self {
        // Checked by a test; a build with a broken key file trusts nobody rather than panic.
        Self {
            keys: IssuerKey::parse(MUSTER_ISSUER).into_iter().collect(),
        }
    }

    /// Adds the keys in an issuer key file: one `k4.public.…` per line; blank lines and lines
    /// starting with `#` are skipped.
    pub fn add_file_contents(&mut self, text: &str) -> Result<usize, KeyError> {
        let mut added = 0;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = IssuerKey::parse(line)?;
            if self.find(key.id()).is_none() {
                self.keys.push(key);
            }
            added += 1;
        }
        if added == 0 {
            return Err(KeyError::NotPublic);
        }
        Ok(added)
    }

    pub fn add(&mut self, key: IssuerKey) {
        if self.find(key.id()).is_none() {
            self.keys.push(key);
        }
    }

    pub fn find(&self, id: &str) -> Option<&IssuerKey> {
        self.keys.iter().find(|k| k.id() == id)
    }

    /// The fingerprints of the trusted keys, muster's own first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(IssuerKey::id)
    }
}

#[cfg(test)]
mod tests;

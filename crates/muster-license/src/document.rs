//! The license document: a PASETO v4.public token (Ed25519) whose payload is the license's terms
//! as JSON and whose footer names the signing key (`{"kid":"k4.pid.…"}`).
//!
//! ```text
//! v4.public.<base64url(payload ‖ signature)>.<base64url(footer)>
//! payload: {"format_version":1,"id":"…","licensee":"…","max_workers":50,
//!           "issued_at":"2026-01-01T00:00:00Z","expires_at":"2027-01-01T00:00:00Z"}
//! ```
//!
//! The signature also covers an implicit assertion ([`PURPOSE`]), so nothing else the same key
//! signs can pass for a license. Verification is offline: the footer's key id picks one of the
//! trusted keys, the signature is checked, and only then is the payload read.

use muster_core::Timestamp;
use muster_core::license::License;
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use serde::{Deserialize, Serialize};

use crate::Issuers;
use crate::keys::IssuerSecret;

/// The format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Bound into every signature: what the token is for.
const PURPOSE: &[u8] = b"muster license";

/// A clock this far behind the issuer's still takes a license issued just now.
const CLOCK_SKEW_MILLIS: i64 = 5 * 60 * 1000;

/// What a license says, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    pub id: String,
    pub licensee: String,
    /// `None`: no limit.
    pub max_workers: Option<u64>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// The payload as it travels. Public so tests can sign documents this build would refuse (a
/// newer format version, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    pub format_version: u32,
    pub id: String,
    pub licensee: String,
    pub max_workers: Option<u64>,
    /// RFC 3339.
    pub issued_at: String,
    /// RFC 3339.
    pub expires_at: String,
}

impl Document {
    pub fn of(terms: &Terms) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            id: terms.id.clone(),
            licensee: terms.licensee.clone(),
            max_workers: terms.max_workers,
            issued_at: terms.issued_at.to_rfc3339(),
            expires_at: terms.expires_at.to_rfc3339(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Footer {
    kid: String,
}

/// Why a license was refused. Each says what is wrong with the document itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseError {
    #[error("the license is malformed: {0}")]
    Malformed(String),
    #[error("the license is signed by issuer `{0}`, which this server does not trust")]
    UnknownIssuer(String),
    #[error(
        "the license's signature does not verify: it was changed after it was signed, or damaged"
    )]
    BadSignature,
    #[error(
        "the license is in format version {found}; this server reads format version {FORMAT_VERSION}"
    )]
    UnsupportedVersion { found: u32 },
    #[error("the license is not valid yet: it is issued for {}", .0.to_rfc3339())]
    NotYetValid(Timestamp),
    #[error("the license expired on {}", muster_core::license::day(*.0))]
    Expired(Timestamp),
    #[error("cannot sign the license: {0}")]
    Sign(String),
}

impl LicenseError {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            LicenseError::Malformed(_) | LicenseError::BadSignature => {
                "install the license exactly as you received it: one line starting with `v4.public.`"
            }
            LicenseError::UnknownIssuer(_) => {
                "licenses from muster are signed by muster's own key; to trust another issuer, start the server with `--license-issuer-key FILE`"
            }
            LicenseError::UnsupportedVersion { .. } => {
                "upgrade muster, or ask the issuer for a license this version reads"
            }
            LicenseError::NotYetValid(_) => "check this server's clock",
            LicenseError::Expired(_) => "ask the issuer for a renewed license",
            LicenseError::Sign(_) => "check the issuer key",
        }
    }
}

/// Signs `terms` in the current format.
pub fn sign(secret: &IssuerSecret, terms: &Terms) -> Result<String, LicenseError> {
    sign_document(secret, &Document::of(terms))
}

/// Signs any document, as it is.
pub fn sign_document(secret: &IssuerSecret, document: &Document) -> Result<String, LicenseError> {
    let payload = serde_json::to_vec(document).map_err(|e| LicenseError::Sign(e.to_string()))?;
    let footer = serde_json::to_vec(&Footer {
        kid: secret.public().id().to_owned(),
    })
    .map_err(|e| LicenseError::Sign(e.to_string()))?;
    // pasetors' errors have no `Display` without its `std` feature.
    PublicToken::sign(secret.key(), &payload, Some(&footer), Some(PURPOSE))
        .map_err(|e| LicenseError::Sign(format!("{e:?}")))
}

/// Verifies a license against the trusted issuers and reads its terms. Says nothing about
/// time: see [`check_dates`].
pub fn verify(text: &str, issuers: &Issuers) -> Result<License, LicenseError> {
    let text = text.trim();
    if !text.starts_with(PublicToken::HEADER) {
        return Err(LicenseError::Malformed(format!(
            "a muster license is one line starting with `{}`",
            PublicToken::HEADER
        )));
    }
    let token = UntrustedToken::<pasetors::Public, V4>::try_from(text)
        .map_err(|_| LicenseError::Malformed("it is not a complete PASETO token".into()))?;
    let footer: Footer = serde_json::from_slice(token.untrusted_footer())
        .map_err(|_| LicenseError::Malformed("its footer names no signing key".into()))?;
    let issuer = issuers
        .find(&footer.kid)
        .ok_or_else(|| LicenseError::UnknownIssuer(printable(&footer.kid)))?;
    let trusted = PublicToken::verify(
        issuer.key(),
        &token,
        Some(token.untrusted_footer()),
        Some(PURPOSE),
    )
    .map_err(|_| LicenseError::BadSignature)?;
    read_terms(trusted.payload(), issuer.id())
}

/// Refuses a license that is not valid at `now`: issued for later, or expired.
pub fn check_dates(license: &License, now: Timestamp) -> Result<(), LicenseError> {
    if license.issued_at.unix_millis() > now.unix_millis().saturating_add(CLOCK_SKEW_MILLIS) {
        return Err(LicenseError::NotYetValid(license.issued_at));
    }
    if license.expires_at <= now {
        return Err(LicenseError::Expired(license.expires_at));
    }
    Ok(())
}

fn read_terms(payload: &str, issuer: &str) -> Result<License, LicenseError> {
    // The version first, so a newer format is named as such rather than as malformed.
    #[derive(Deserialize)]
    struct Version {
        format_version: u32,
    }
    let version: Version = serde_json::from_str(payload)
        .map_err(|_| LicenseError::Malformed("it has no format version".into()))?;
    if version.format_version != FORMAT_VERSION {
        return Err(LicenseError::UnsupportedVersion {
            found: version.format_version,
        });
    }
    let document: Document =
        serde_json::from_str(payload).map_err(|e| LicenseError::Malformed(e.to_string()))?;
    let time = |field: &str, value: &str| {
        Timestamp::parse_rfc3339(value)
            .ok_or_else(|| LicenseError::Malformed(format!("`{field}` is not an RFC 3339 time")))
    };
    let issued_at = time("issued_at", &document.issued_at)?;
    let expires_at = time("expires_at", &document.expires_at)?;
    if expires_at <= issued_at {
        return Err(LicenseError::Malformed(
            "it expires before it is issued".into(),
        ));
    }
    for (field, value) in [("id", &document.id), ("licensee", &document.licensee)] {
        if value.trim().is_empty() || value.chars().any(char::is_control) || value.len() > 200 {
            return Err(LicenseError::Malformed(format!(
                "`{field}` must be 1 to 200 printable characters"
            )));
        }
    }
    Ok(License {
        id: document.id,
        licensee: document.licensee,
        max_workers: document.max_workers,
        issued_at,
        expires_at,
        issuer: issuer.to_owned(),
    })
}

/// A key id from an untrusted footer, fit to quote in a message.
fn printable(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(80)
        .collect();
    if cleaned.is_empty() {
        "(unnamed)".to_owned()
    } else {
        cleaned
    }
}

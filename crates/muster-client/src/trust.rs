//! Which server certificates to trust: the system's roots, a private CA file, or one pinned
//! certificate (`sha256:` fingerprint of its DER encoding). Used by the admin client and by the
//! worker's control channel alike.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The operating system's certificate store.
    System,
    /// PEM certificates (a private CA, or the server's own self-signed certificate).
    CaFile(PathBuf),
    /// Exactly this certificate, by the SHA-256 of its DER encoding.
    Fingerprint([u8; 32]),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error(
        "certificate fingerprint `{0}` is malformed: expected `sha256:` and 64 hex digits (colons between bytes allowed)"
    )]
    BadFingerprint(String),
    #[error("cannot read CA file `{path}`: {reason}")]
    CaFile { path: String, reason: String },
    #[error("CA file `{0}` holds no PEM certificate")]
    EmptyCaFile(String),
    #[error("cannot set up TLS: {0}")]
    Config(String),
}

/// Parses `sha256:AB:CD:…` or `sha256:abcd…` (case-insensitive), as `openssl x509 -fingerprint
/// -sha256` prints it or as muster prints it.
pub fn parse_fingerprint(input: &str) -> Result<[u8; 32], TrustError> {
    let bad = || TrustError::BadFingerprint(input.chars().take(120).collect());
    let trimmed = input.trim();
    let lower = trimmed.to_ascii_lowercase();
    let hex_part = lower
        .strip_prefix("sha256:")
        .or_else(|| lower.strip_prefix("sha256 fingerprint="))
        .ok_or_else(bad)?;
    let digits: String = hex_part.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&digits).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

pub fn format_fingerprint(digest: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(digest))
}

/// The cryptography muster's TLS uses on both ends: ring's, with AES-128-GCM/SHA-256 preferred.
/// It is as safe as AES-256-GCM/SHA-384 for this purpose, and much cheaper where it counts: the
/// SHA-256 key schedule runs on the CPU's SHA extensions (SHA-384 has none on most x86), and a
/// reconnect storm is thousands of handshakes at once.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    let preferred = rustls::CipherSuite::TLS13_AES_128_GCM_SHA256;
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != preferred);
    Arc::new(provider)
}

fn provider() -> Arc<CryptoProvider> {
    crypto_provider()
}

impl Trust {
    /// Picks the trust from the usual pair of options: a pinned fingerprint wins, then a CA file,
    /// then the system roots.
    pub fn from_options(
        ca_file: Option<&Path>,
        fingerprint: Option<&str>,
    ) -> Result<Self, TrustError> {
        match (fingerprint, ca_file) {
            (Some(fp), _) => Ok(Trust::Fingerprint(parse_fingerprint(fp)?)),
            (None, Some(path)) => Ok(Trust::CaFile(path.to_path_buf())),
            (None, None) => Ok(Trust::System),
        }
    }

    /// A rustls client configuration that trusts what this says, offering HTTP/1.1.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TrustError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TrustError::Config(e.to_string()))?;
        let mut config = match self {
            Trust::System => {
                let mut roots = RootCertStore::empty();
                let loaded = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(loaded.certs);
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::CaFile(path) => {
                let shown = path.display().to_string();
                let pem = std::fs::read(path).map_err(|e| TrustError::CaFile {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
                let certs: Vec<CertificateDer<'static>> =
                    rustls_pemfile::certs(&mut pem.as_slice())
                        .collect::<Result<_, _>>()
                        .map_err(|e| TrustError::CaFile {
                            path: shown.clone(),
                            reason: e.to_string(),
                        })?;
                if certs.is_empty() {
                    return Err(TrustError::EmptyCaFile(shown));
                }
                let mut roots = RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(TrustError::EmptyCaFile(shown));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::Fingerprint(digest) => pinned(builder, Some(*digest), None),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn pinned(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>,
    digest: Option<[u8; 32]>,
    seen: Option<Presented>,
) -> ClientConfig {
    builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCertificate {
            digest,
            seen,
            provider: provider(),
        }))
        .with_no_client_auth()
}

/// Where [`recording_config`] leaves the fingerprint of the certificate a server presented.
pub type Presented = Arc<std::sync::Mutex<Option<[u8; 32]>>>;

/// A TLS configuration that trusts no certificate at all and records the fingerprint of the one
/// the server presents: for saying which certificate a server presented after it failed a trust
/// check (`muster worker doctor`). Every handshake through it fails, so nothing is ever sent on
/// a connection it looked at.
pub fn recording_config() -> Result<(Arc<ClientConfig>, Presented), TrustError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TrustError::Config(e.to_string()))?;
    let seen = Presented::default();
    let mut config = pinned(builder, None, Some(Arc::clone(&seen)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), seen))
}

/// Trusts exactly one certificate, by fingerprint, whatever names it carries (none, without a
/// fingerprint). The handshake signature is still verified against that certificate's key, so
/// only its holder passes.
#[derive(Debug)]
struct PinnedCertificate {
    digest: Option<[u8; 32]>,
    /// Where the presented certificate's fingerprint is recorded, if anywhere.
    seen: Option<Presented>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if let Some(seen) = &self.seen {
            *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(presented);
        }
        if self.digest == Some(presented) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Whether an error (anywhere in its source chain) is a TLS certificate rejection.
pub fn is_untrusted_certificate(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(rustls::Error::InvalidCertificate(_)) = e.downcast_ref::<rustls::Error>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(rustls::Error::InvalidCertificate(_)) =
                inner.downcast_ref::<rustls::Error>()
        {
            return true;
        }
        let text = e.to_string();
        if text.contains("invalid peer certificate") || text.contains("UnknownIssuer") {
            return true;
        }
        current = e.source();
    }
    false
}

/// Whether an error (anywhere in its source chain) says the peer did not answer with TLS at
/// all: an `https://` URL pointed at a plain-HTTP server.
pub fn is_not_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(rustls::Error::InvalidMessage(_)) = e.downcast_ref::<rustls::Error>() {
            return true;
        }
        let text = e.to_string();
        if text.contains("received corrupt message") || text.contains("InvalidContentType") {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_both_spellings() {
        let plain = format!("sha256:{}", "ab".repeat(32));
        let colons = format!("SHA256:{}", vec!["AB"; 32].join(":"));
        assert_eq!(parse_fingerprint(&plain).unwrap(), [0xab; 32]);
        assert_eq!(parse_fingerprint(&colons).unwrap(), [0xab; 32]);
        assert_eq!(format_fingerprint(&[0xab; 32]), plain);
        for bad in [
            "",
            "ab",
            "sha256:zz",
            &format!("sha1:{}", "ab".repeat(20)),
            &format!("sha256:{}", "ab".repeat(31)),
        ] {
            let err = parse_fingerprint(bad).unwrap_err().to_string();
            assert!(err.contains("64 hex digits"), "{err}");
        }
    }
}

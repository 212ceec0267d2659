//! A server config whose side of every handshake is the same each time: the fuzzer's recorded
//! client bytes then replay into a handshake that completes, and the records after it decrypt.
//!
//! A real server picks fresh randoms and a fresh key share for every connection, so a recorded
//! client's Finished and records would only ever fit the one server that saw them, and a fuzzer
//! could never get past the handshake. Here the server's random, its key shares (X25519, P-256,
//! P-384) and its certificate are fixed, and its certificate key is Ed25519, whose signatures
//! are deterministic (ECDSA's are not). Everything else is the production config of
//! `muster_server::tls`: the same cipher suites in the same order, protocol versions, ALPN and
//! exporter key log. Session resumption is off so that no state carries over from one run to
//! the next.
//!
//! This is, of course, no TLS at all as far as secrecy goes: it exists only for fuzzing.

use std::sync::{Arc, OnceLock};

use ring::agreement;
use rustls::crypto::{ActiveKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{NamedGroup, ServerConfig};

/// Every "random" byte the server uses.
const FIXED_BYTE: u8 = 0x42;

/// The server config, built once per process.
pub fn server_config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(build))
}

/// The server's certificate (self-signed for `localhost`): the same bytes in every process.
pub fn certificate() -> CertificateDer<'static> {
    certified().0
}

fn certified() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    #[allow(deprecated)] // ring's fixed "random", kept for known-answer tests and fuzzing.
    let rng = ring::test::rand::FixedByteRandom { byte: FIXED_BYTE };
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .expect("an Ed25519 key from fixed bytes");
    let key_pair = rcgen::KeyPair::try_from(pkcs8.as_ref()).expect("rcgen reads ring's PKCS#8");
    // rcgen derives the serial from the public key and defaults to fixed validity dates, and an
    // Ed25519 signature depends only on the key and the message: the same certificate each time.
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("a valid name")
        .self_signed(&key_pair)
        .expect("a self-signed certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec()));
    (cert.der().clone(), key)
}

fn build() -> Arc<ServerConfig> {
    let production = muster_client::trust::crypto_provider();
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: production.cipher_suites.clone(),
        kx_groups: vec![&FIXED_X25519, &FIXED_P256, &FIXED_P384],
        secure_random: &FixedRandom,
        ..(*production).clone()
    };
    let (cert, key) = certified();
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("the production protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("the fixed certificate");
    // As `muster_server::tls` sets them.
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.key_log = Arc::new(muster_lean_tls::binding::ExporterSecretLog);
    // No state from one run may change the next.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Arc::new(config)
}

#[derive(Debug)]
struct FixedRandom;

impl rustls::crypto::SecureRandom for FixedRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
        buf.fill(FIXED_BYTE);
        Ok(())
    }
}

/// A key-exchange group whose private key is the same every time.
#[derive(Debug)]
struct FixedKx {
    name: NamedGroup,
    algorithm: &'static agreement::Algorithm,
}

static FIXED_X25519: FixedKx = FixedKx {
    name: NamedGroup::X25519,
    algorithm: &agreement::X25519,
};
static FIXED_P256: FixedKx = FixedKx {
    name: NamedGroup::secp256r1,
    algorithm: &agreement::ECDH_P256,
};
static FIXED_P384: FixedKx = FixedKx {
    name: NamedGroup::secp384r1,
    algorithm: &agreement::ECDH_P384,
};

impl SupportedKxGroup for FixedKx {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        #[allow(deprecated)]
        let rng = ring::test::rand::FixedByteRandom { byte: FIXED_BYTE };
        let private = agreement::EphemeralPrivateKey::generate(self.algorithm, &rng)
            .map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
        let public = private
            .compute_public_key()
            .map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
        Ok(Box::new(FixedKeyExchange {
            name: self.name,
            algorithm: self.algorithm,
            private,
            public,
        }))
    }

    fn name(&self) -> NamedGroup {
        self.name
    }
}

struct FixedKeyExchange {
    name: NamedGroup,
    algorithm: &'static agreement::Algorithm,
    private: agreement::EphemeralPrivateKey,
    public: agreement::PublicKey,
}

impl ActiveKeyExchange for FixedKeyExchange {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let peer = agreement::UnparsedPublicKey::new(self.algorithm, peer);
        agreement::agree_ephemeral(self.private, &peer, |secret| SharedSecret::from(secret))
            .map_err(|_| rustls::PeerMisbehaved::InvalidKeyShare.into())
    }

    fn pub_key(&self) -> &[u8] {
        self.public.as_ref()
    }

    fn group(&self) -> NamedGroup {
        self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_is_the_same_every_time() {
        assert_eq!(certified().0, certified().0);
    }
}

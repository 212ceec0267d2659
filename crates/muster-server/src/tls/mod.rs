//! TLS for the server: a certificate from files, or a self-signed one made at first start, and
//! session tickets whose keys survive a restart ([`tickets`]).

pub mod tickets;

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::datadir::DataDir;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS file `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("`{0}` holds no PEM certificate")]
    NoCertificate(String),
    #[error("`{0}` holds no PEM private key")]
    NoKey(String),
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    #[error("the certificate and key are not usable together: {0}")]
    Config(String),
    #[error(transparent)]
    Fs(#[from] muster_fs::FsError),
    #[error(transparent)]
    TicketKeys(#[from] tickets::TicketKeyError),
}

pub struct LoadedTls {
    pub config: Arc<ServerConfig>,
    /// `sha256:` and the hex SHA-256 of the leaf certificate's DER encoding.
    pub fingerprint: String,
    pub cert_file: String,
    pub generated: bool,
    /// Seals ticket keys kept in a store replicas share: derived from the private key, which
    /// is not kept.
    ticket_wrap: Arc<tickets::shared::KeyWrap>,
}

impl LoadedTls {
    /// Lets clients resume their TLS 1.3 sessions, also across a restart, with the ticket keys
    /// kept at `keys` in the data dir (see [`tickets`]). One ticket per connection: a worker
    /// holds one connection at a time and uses one ticket to make the next.
    pub fn with_resumption(mut self, keys: &Path) -> Result<Self, TlsError> {
        let ticketer = tickets::PersistentTicketer::open(keys, &self.fingerprint)?;
        let mut config = (*self.config).clone();
        config.ticketer = Arc::new(tickets::Tickets(Arc::new(ticketer)));
        config.send_tls13_tickets = 1;
        self.config = Arc::new(config);
        Ok(self)
    }

    /// Like [`LoadedTls::with_resumption`], with the ticket keys in `store`, which replicas
    /// serving the same certificate share: a worker failing over to another replica resumes
    /// there (see [`tickets::shared`]).
    pub async fn with_shared_resumption(
        mut self,
        store: muster_store::Store,
    ) -> Result<Self, TlsError> {
        let ticketer =
            tickets::PersistentTicketer::open_shared(store, Arc::clone(&self.ticket_wrap)).await?;
        let mut config = (*self.config).clone();
        config.ticketer = Arc::new(tickets::Tickets(Arc::new(ticketer)));
        config.send_tls13_tickets = 1;
        self.config = Arc::new(config);
        Ok(self)
    }
}

pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(cert.as_ref())))
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

pub fn load_files(cert: &Path, key: &Path) -> Result<LoadedTls, TlsError> {
    let cert_pem = read_pem(cert)?;
    let key_pem = read_pem(key)?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: cert.display().to_string(),
            source,
        })?;
    let leaf = chain
        .first()
        .ok_or_else(|| TlsError::NoCertificate(cert.display().to_string()))?;
    let fp = fingerprint(leaf);
    let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| TlsError::Read {
            path: key.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey(key.display().to_string()))?;
    let ticket_wrap = Arc::new(tickets::shared::KeyWrap::derive(key_der.secret_der(), &fp));
    let config = build(chain, key_der)?;
    Ok(LoadedTls {
        config,
        fingerprint: fp,
        cert_file: cert.display().to_string(),
        generated: false,
        ticket_wrap,
    })
}

/// Loads the data dir's self-signed certificate, making it on first start. Its names cover the
/// loopback addresses, `localhost`, this host's name and the listen host.
pub fn load_or_generate(dir: &DataDir, listen_host: &str) -> Result<LoadedTls, TlsError> {
    let (cert_path, key_path) = (dir.cert_path(), dir.key_path());
    let mut generated = false;
    if !cert_path.exists() || !key_path.exists() {
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        if let Some(host) = hostname() {
            names.push(host);
        }
        let host = listen_host.trim_start_matches('[').trim_end_matches(']');
        if !host.is_empty() && !names.iter().any(|n| n == host) && host != "0.0.0.0" && host != "::"
        {
            names.push(host.to_owned());
        }
        let certified = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        if let Some(parent) = key_path.parent() {
            muster_fs::ensure_private_dir(parent)?;
        }
        muster_fs::write_private(&key_path, certified.key_pair.serialize_pem().as_bytes())?;
        muster_fs::write_atomic(&cert_path, certified.cert.pem().as_bytes(), 0o644)?;
        generated = true;
    }
    let mut loaded = load_files(&cert_path, &key_path)?;
    loaded.generated = generated;
    Ok(loaded)
}

fn build(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = muster_client::trust::crypto_provider();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    // Our order (see `crypto_provider`), not whatever a client prefers.
    config.ignore_client_order = true;
    // HTTP/1.1 only: the control channel is a WebSocket upgrade, and the API is small.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Catches each connection's exporter secret in memory (never written anywhere), from which
    // `lean_tls` derives the channel binding workers sign.
    config.key_log = Arc::new(crate::lean_tls::binding::ExporterSecretLog);
    Ok(Arc::new(config))
}

fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

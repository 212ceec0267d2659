//! Real handshakes through the ticketer: rustls's client against `LeanTls`, the server stream
//! muster runs. A TLS 1.3 reconnect resumes, also after a restart (a new config from the same
//! key file), and every connection, resumed or not, has its own exporter value, the one the
//! server binds the worker's proof to; TLS 1.2 is never given a ticket.

use std::sync::Arc;

use muster_lean_tls::{ChannelBinding, LeanTls, binding};
use rustls::HandshakeKind;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Versions = &'static [&'static rustls::SupportedProtocolVersion];
const TLS13: Versions = &[&rustls::version::TLS13];
const TLS12: Versions = &[&rustls::version::TLS12];

/// The server config `tls` builds for `certified`, before its tickets.
fn base_config(certified: &rcgen::CertifiedKey, versions: Versions) -> rustls::ServerConfig {
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::try_from(certified.key_pair.serialize_der()).unwrap();
    let mut server =
        rustls::ServerConfig::builder_with_provider(muster_client::trust::crypto_provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
    server.key_log = Arc::new(binding::ExporterSecretLog);
    server
}

/// The server config `tls` builds for `certified`, tickets under the keys at `keys` (opened
/// afresh: a new config is a restarted server).
fn server_config(
    certified: &rcgen::CertifiedKey,
    keys: &std::path::Path,
    versions: Versions,
) -> Arc<rustls::ServerConfig> {
    let cert = certified.cert.der().clone();
    let mut server = base_config(certified, versions);
    let ticketer = super::PersistentTicketer::open(keys, &crate::tls::fingerprint(&cert)).unwrap();
    server.ticketer = Arc::new(super::Tickets(Arc::new(ticketer)));
    server.send_tls13_tickets = 1;
    Arc::new(server)
}

/// A replica's server config: tickets under the keys in `store`, shared with every replica that
/// serves `certified`.
async fn replica_config(
    certified: &rcgen::CertifiedKey,
    store: &muster_store::Store,
) -> Arc<rustls::ServerConfig> {
    let cert = certified.cert.der().clone();
    let mut server = base_config(certified, TLS13);
    let wrap = super::shared::KeyWrap::derive(
        &certified.key_pair.serialize_der(),
        &crate::tls::fingerprint(&cert),
    );
    let ticketer = super::PersistentTicketer::open_shared(store.clone(), Arc::new(wrap))
        .await
        .unwrap();
    server.ticketer = Arc::new(super::Tickets(Arc::new(ticketer)));
    server.send_tls13_tickets = 1;
    Arc::new(server)
}

/// One client config, pinned to the test certificate as a worker pins its server's: one
/// session store, as a worker's endpoint has.
fn client_config(cert: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let digest: [u8; 32] = sha2::Sha256::digest(cert.as_ref()).into();
    muster_client::Trust::Fingerprint(digest)
        .client_config()
        .unwrap()
}

/// One connection: how the client's handshake went, its exporter value, the server's binding.
async fn one_connection(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> (HandshakeKind, Option<[u8; 32]>, Option<ChannelBinding>) {
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let echo = tokio::spawn(async move {
        let mut tls = LeanTls::new(server_io, server).unwrap();
        let binding = tls.handshake().await.unwrap();
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await.unwrap();
        tls.write_all(&buf).await.unwrap();
        tls.flush().await.unwrap();
        let _ = tls.read(&mut buf).await;
        binding
    });
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(client)
        .connect(name, client_io)
        .await
        .unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    let exported = tls
        .get_ref()
        .1
        .export_keying_material([0u8; 32], binding::EXPORTER_LABEL, None)
        .ok();
    // Reading the echo also reads the session ticket that followed the handshake.
    tls.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).await.unwrap();
    tls.shutdown().await.unwrap();
    (kind, exported, echo.await.unwrap())
}

#[tokio::test]
async fn a_resumed_connection_has_its_own_binding_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("ticket-keys");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let client = client_config(certified.cert.der());
    let server = server_config(&certified, &keys, TLS13);
    let mut bindings = Vec::new();
    for (round, server, expected) in [
        ("first", Arc::clone(&server), HandshakeKind::Full),
        ("second", Arc::clone(&server), HandshakeKind::Resumed),
        (
            "after a restart",
            server_config(&certified, &keys, TLS13),
            HandshakeKind::Resumed,
        ),
        (
            "again",
            server_config(&certified, &keys, TLS13),
            HandshakeKind::Resumed,
        ),
    ] {
        let (kind, exported, binding) = one_connection(server, Arc::clone(&client)).await;
        assert_eq!(kind, expected, "{round} connection");
        let binding = binding.expect("TLS 1.3 has a binding, resumed or not");
        assert_eq!(
            Some(binding.0),
            exported,
            "{round}: the client's own exporter value"
        );
        assert!(
            !bindings.contains(&binding),
            "{round}: a resumed connection's binding is its own, so a proof signed for another connection fails on it"
        );
        bindings.push(binding);
    }
}

#[tokio::test]
async fn tls12_is_never_given_a_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("ticket-keys");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let client = client_config(certified.cert.der());
    for _ in 0..2 {
        // A server restarted each time: only a ticket could resume (its session cache is new).
        let server = server_config(&certified, &keys, TLS12);
        let (kind, _, binding) = one_connection(server, Arc::clone(&client)).await;
        assert_eq!(kind, HandshakeKind::Full);
        assert_eq!(binding, None);
    }
}

#[tokio::test]
async fn a_ticket_from_one_replica_resumes_on_another_sharing_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = muster_store::Store::open_sqlite(&dir.path().join("muster.db")).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let client = client_config(certified.cert.der());
    let a = replica_config(&certified, &store).await;
    let b = replica_config(&certified, &store).await;
    let (kind, _, _) = one_connection(a, Arc::clone(&client)).await;
    assert_eq!(kind, HandshakeKind::Full);
    let (kind, _, binding) = one_connection(Arc::clone(&b), Arc::clone(&client)).await;
    assert_eq!(kind, HandshakeKind::Resumed, "B opens the ticket A gave");
    assert!(binding.is_some());
    // The same store, another certificate (a replica serving it is another server): its
    // ticket keys are its own, so B's ticket does not resume there.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let c = replica_config(&other, &store).await;
    let mut trusting_both = (*client_config(other.cert.der())).clone();
    trusting_both.resumption = client.resumption.clone();
    let (kind, _, _) = one_connection(c, Arc::new(trusting_both)).await;
    assert_eq!(kind, HandshakeKind::Full);
}

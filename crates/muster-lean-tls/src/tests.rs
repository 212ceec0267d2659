//! The stream against rustls's own client (tokio-rustls), over in-memory pipes: both protocol
//! versions, key updates, reads split at every boundary, a slow reader, truncation, alerts, and
//! the channel binding checked against rustls's own exporter.

use std::pin::Pin;
use std::task::{Context, Poll};

use proptest::prelude::*;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

type Versions = &'static [&'static rustls::SupportedProtocolVersion];
const BOTH: Versions = rustls::DEFAULT_VERSIONS;
const TLS12: Versions = &[&rustls::version::TLS12];
const TLS13: Versions = &[&rustls::version::TLS13];

/// A server config as `tls.rs` builds it (with the exporter key log), limited to `versions`.
fn server_config(versions: Versions) -> (Arc<rustls::ServerConfig>, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::try_from(certified.key_pair.serialize_der()).unwrap();
    let provider = muster_client::trust::crypto_provider();
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server.key_log = Arc::new(binding::ExporterSecretLog);
    (Arc::new(server), cert)
}

/// Trusts exactly one certificate (the test server's), for any protocol version.
#[derive(Debug)]
struct TrustOne(CertificateDer<'static>, Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for TrustOne {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.0.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the test certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.1.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.1.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(cert: CertificateDer<'static>, versions: Versions) -> Arc<rustls::ClientConfig> {
    let provider = muster_client::trust::crypto_provider();
    let verifier = Arc::new(TrustOne(cert, Arc::clone(&provider)));
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    )
}

fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let (server, cert) = server_config(BOTH);
    (server, client_config(cert, BOTH))
}

async fn connect(
    config: Arc<rustls::ClientConfig>,
    io: DuplexStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<DuplexStream>> {
    let name = ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, io)
        .await
}

/// Reads at most `sizes[i]` bytes per read (cycling), so the stream sees records split
/// wherever the sizes fall.
struct Chunked<IO> {
    io: IO,
    sizes: Vec<usize>,
    next: usize,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Chunked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let limit = this.sizes[this.next % this.sizes.len()].max(1);
        let mut small = vec![0u8; limit.min(buf.remaining())];
        let mut small_buf = ReadBuf::new(&mut small);
        ready!(Pin::new(&mut this.io).poll_read(cx, &mut small_buf))?;
        let filled = small_buf.filled().len();
        buf.put_slice(&small[..filled]);
        this.next += 1;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Chunked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Runs an echo server on `server_io`: everything read is written back until end of stream.
/// Returns the binding and the buffers the idle stream still held before the end.
fn echo_server<IO>(
    server_io: IO,
    config: Arc<rustls::ServerConfig>,
    expect: usize,
) -> tokio::task::JoinHandle<(Option<ChannelBinding>, usize)>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut tls = LeanTls::new(server_io, config).unwrap();
        let binding = tls.handshake().await.unwrap();
        let mut buf = vec![0u8; 100_000];
        let mut total = 0;
        while total < expect {
            let n = tls.read(&mut buf).await.unwrap();
            assert!(n > 0, "early end of stream after {total} bytes");
            tls.write_all(&buf[..n]).await.unwrap();
            total += n;
        }
        tls.flush().await.unwrap();
        let held = tls.incoming.capacity() + tls.plaintext.capacity() + tls.outgoing.capacity();
        let n = tls.read(&mut buf).await.unwrap();
        assert_eq!(n, 0, "the client closed");
        (binding, held)
    })
}

/// Sends `payload` through the echo and checks it comes back whole.
async fn echo_through(
    client: tokio_rustls::client::TlsStream<DuplexStream>,
    payload: Vec<u8>,
) -> tokio_rustls::client::TlsStream<DuplexStream> {
    let expected = payload.clone();
    let (mut rd, mut wr) = tokio::io::split(client);
    let writer = tokio::spawn(async move {
        wr.write_all(&payload).await.unwrap();
        wr.flush().await.unwrap();
        wr
    });
    let mut got = vec![0u8; expected.len()];
    rd.read_exact(&mut got).await.unwrap();
    assert!(got == expected, "the echo differs");
    rd.unsplit(writer.await.unwrap())
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn round_trips_small_and_large_data_and_frees_its_buffers_when_idle() {
    let (server_config, client_config) = configs();
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let payload = pattern(3_000_001);
    let server = echo_server(server_io, server_config, payload.len());
    let mut client = connect(client_config, client_io).await.unwrap();
    client = echo_through(client, payload).await;
    client.shutdown().await.unwrap();
    let (_, held) = server.await.unwrap();
    assert_eq!(held, 0, "an idle stream holds no buffer");
}

#[tokio::test]
async fn tls12_round_trips_and_has_no_channel_binding() {
    let (server_config, cert) = server_config(BOTH);
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let payload = pattern(200_000);
    let server = echo_server(server_io, server_config, payload.len());
    let mut client = connect(client_config(cert, TLS12), client_io)
        .await
        .unwrap();
    assert_eq!(
        client.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    client = echo_through(client, payload).await;
    client.shutdown().await.unwrap();
    let (binding, _) = server.await.unwrap();
    assert_eq!(binding, None, "TLS 1.2 has no exporter secret to bind to");
}

#[tokio::test]
async fn the_channel_binding_is_the_clients_own_exporter_value() {
    for _ in 0..3 {
        let (server_config, cert) = server_config(TLS13);
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let server = echo_server(server_io, server_config, 5);
        let mut client = connect(client_config(cert, TLS13), client_io)
            .await
            .unwrap();
        let exported = client
            .get_ref()
            .1
            .export_keying_material([0u8; 32], binding::EXPORTER_LABEL, None)
            .unwrap();
        client = echo_through(client, b"hello".to_vec()).await;
        client.shutdown().await.unwrap();
        let (binding, _) = server.await.unwrap();
        assert_eq!(binding, Some(ChannelBinding(exported)));
    }
}

#[tokio::test]
async fn two_connections_have_different_bindings() {
    let (server_config, cert) = server_config(TLS13);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let server = echo_server(server_io, Arc::clone(&server_config), 1);
        let mut client = connect(client_config(cert.clone(), TLS13), client_io)
            .await
            .unwrap();
        client = echo_through(client, b"x".to_vec()).await;
        client.shutdown().await.unwrap();
        seen.push(server.await.unwrap().0.unwrap());
    }
    assert_ne!(seen[0], seen[1]);
}

#[tokio::test]
async fn a_key_update_from_the_client_is_followed() {
    let (server_config, client_config) = configs();
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let server = echo_server(server_io, server_config, 3 * 100_000);
    let mut client = connect(client_config, client_io).await.unwrap();
    for _ in 0..3 {
        client = echo_through(client, pattern(100_000)).await;
        // The next record goes out under new keys; the server must follow (and answer with its
        // own key update, which rustls asks for).
        client.get_mut().1.refresh_traffic_keys().unwrap();
    }
    client.shutdown().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn reads_split_at_every_byte_boundary_give_the_same_data() {
    for sizes in [
        vec![1],
        vec![2],
        vec![3, 1, 7],
        vec![5, 16_384, 1],
        vec![16_389],
    ] {
        let (server_config, client_config) = configs();
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let payload = pattern(40_000);
        let chunked = Chunked {
            io: server_io,
            sizes,
            next: 0,
        };
        let server = echo_server(chunked, server_config, payload.len());
        let mut client = connect(client_config, client_io).await.unwrap();
        client = echo_through(client, payload).await;
        client.shutdown().await.unwrap();
        server.await.unwrap();
    }
}

#[tokio::test]
async fn a_slow_reader_makes_the_writer_wait_instead_of_buffering_without_bound() {
    let (server_config, client_config) = configs();
    // A small pipe: the server's socket fills after a few KiB.
    let (client_io, server_io) = tokio::io::duplex(4096);
    let total = 4 * 1024 * 1024;
    let server = tokio::spawn(async move {
        let mut tls = LeanTls::new(server_io, server_config).unwrap();
        tls.handshake().await.unwrap();
        let chunk = pattern(16 * 1024);
        let mut most_pending = 0;
        let mut sent = 0;
        while sent < total {
            tls.write_all(&chunk).await.unwrap();
            sent += chunk.len();
            most_pending = most_pending.max(tls.outgoing.len() - tls.out_pos);
        }
        tls.shutdown().await.unwrap();
        most_pending
    });
    let mut client = connect(client_config, client_io).await.unwrap();
    let mut buf = [0u8; 1024];
    let mut got = 0;
    loop {
        let n = client.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n;
        tokio::task::yield_now().await;
    }
    assert_eq!(got, total);
    let most_pending = server.await.unwrap();
    // One write may land on top of a full queue: the bound plus a record or so, never the 4 MiB.
    assert!(
        most_pending <= MAX_PENDING_WRITE + 20 * 1024,
        "{most_pending} bytes were waiting for a slow reader"
    );
}

#[tokio::test]
async fn close_notify_is_a_clean_end_of_stream() {
    let (server_config, client_config) = configs();
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move {
        let mut tls = LeanTls::new(server_io, server_config).unwrap();
        tls.handshake().await.unwrap();
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.map(|_| got)
    });
    let mut client = connect(client_config, client_io).await.unwrap();
    client.write_all(b"all of it").await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(server.await.unwrap().unwrap(), b"all of it");
}

#[tokio::test]
async fn a_peer_that_vanishes_between_records_without_close_notify_is_an_end_of_stream() {
    let (server_config, client_config) = configs();
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move {
        let mut tls = LeanTls::new(server_io, server_config).unwrap();
        tls.handshake().await.unwrap();
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.unwrap();
        got
    });
    let mut client = connect(client_config, client_io).await.unwrap();
    client.write_all(b"last words").await.unwrap();
    client.flush().await.unwrap();
    drop(client);
    assert_eq!(server.await.unwrap(), b"last words");
}

#[tokio::test]
async fn a_connection_cut_in_the_middle_of_a_record_is_an_error() {
    let (server_config, client_config) = configs();
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move {
        let mut tls = LeanTls::new(server_io, server_config).unwrap();
        tls.handshake().await.unwrap();
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.map(|_| got)
    });
    let client = connect(client_config, client_io).await.unwrap();
    let (mut io, mut conn) = client.into_inner();
    // Encrypt one record by hand and send only half of it.
    std::io::Write::write_all(&mut conn.writer(), b"a record that never arrives whole").unwrap();
    let mut record = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut record).unwrap();
    }
    io.write_all(&record[..record.len() / 2]).await.unwrap();
    drop(io);
    let err = server.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
}

#[tokio::test]
async fn a_client_hello_the_server_cannot_accept_gets_a_fatal_alert_not_an_eof() {
    let (server_config, cert) = server_config(TLS13);
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move {
        let mut tls = LeanTls::new(server_io, server_config).unwrap();
        tls.handshake().await.map(|_| ())
    });
    let err = connect(client_config(cert, TLS12), client_io)
        .await
        .unwrap_err();
    let alert = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .cloned();
    assert_eq!(
        alert,
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::ProtocolVersion
        )),
        "the client saw {err}"
    );
    assert!(server.await.unwrap().is_err());
}

#[tokio::test]
async fn a_peer_that_is_not_tls_is_refused() {
    let (server_config, _) = configs();
    let (mut client_io, server_io) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move {
        let mut tls = LeanTls::new(server_io, server_config).unwrap();
        tls.handshake().await
    });
    client_io
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(server.await.unwrap().is_err());
}

/// Found by the `lean_tls` fuzz target: rustls keeps a handshake message that spans records in
/// the caller's buffer, so the alert it queues after refusing the peer must be fetched with that
/// buffer, not an empty one (rustls then indexed past the end of it and panicked).
#[tokio::test]
async fn a_refused_handshake_message_spanning_records_does_not_panic() {
    let (server_config, _) = configs();
    let (mut client_io, server_io) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move {
        let mut tls = LeanTls::new(server_io, server_config).unwrap();
        tls.handshake().await
    });
    client_io
        .write_all(&[0x16, 0x03, 0x01, 0x01].repeat(256))
        .await
        .unwrap();
    drop(client_io);
    let result = server.await;
    assert!(result.is_ok(), "the handshake panicked");
    assert!(result.unwrap().is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever sizes the socket hands the stream its bytes in, the plaintext that comes out is
    /// the plaintext that went in, in both directions.
    #[test]
    fn random_splits_of_a_session_give_the_same_plaintext(
        sizes in proptest::collection::vec(1usize..20_000, 1..40),
        writes in proptest::collection::vec(1usize..30_000, 1..12),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let (server_config, client_config) = configs();
            let (client_io, server_io) = tokio::io::duplex(1 << 16);
            let total: usize = writes.iter().sum();
            let chunked = Chunked { io: server_io, sizes, next: 0 };
            let server = echo_server(chunked, server_config, total);
            let mut client = connect(client_config, client_io).await.unwrap();
            let mut offset = 0;
            for len in writes {
                let piece: Vec<u8> = (offset..offset + len).map(|i| (i % 239) as u8).collect();
                client = echo_through(client, piece).await;
                offset += len;
            }
            client.shutdown().await.unwrap();
            server.await.unwrap();
        });
    }
}

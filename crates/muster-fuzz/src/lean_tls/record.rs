//! Recording real sessions: rustls's own client talks to [`LeanTls`] (with the fixed server
//! config), and every byte the client sends is kept. These make the `lean_tls` seeds, and the
//! tests check that a recording replays through the target into the same plaintext.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use muster_lean_tls::LeanTls;
use rustls::SupportedProtocolVersion;
use rustls::crypto::SupportedKxGroup;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

use super::{Outcome, converse, fixed_crypto};

/// A client that speaks TLS 1.2 only.
pub static TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// What the client does.
#[derive(Debug, Clone)]
pub struct Script {
    pub versions: &'static [&'static SupportedProtocolVersion],
    /// The key-exchange groups the client offers, in its order of preference.
    pub groups: Vec<&'static dyn SupportedKxGroup>,
    /// Application data, one write each.
    pub messages: Vec<Vec<u8>>,
    /// Update the traffic keys before every message after the first (TLS 1.3 only).
    pub key_update: bool,
    /// End with a close_notify; without, the client just goes.
    pub close_notify: bool,
    /// How much the server replies (the client reads it all before it writes).
    pub reply: usize,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            versions: rustls::DEFAULT_VERSIONS,
            groups: rustls::crypto::ring::default_provider().kx_groups,
            messages: vec![b"GET /api/v1/health HTTP/1.1\r\nhost: localhost\r\n\r\n".to_vec()],
            key_update: false,
            close_notify: true,
            reply: 100,
        }
    }
}

/// A recorded session.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Every byte the client sent, in order.
    pub stream: Vec<u8>,
    /// The application data in it.
    pub plaintext: Vec<u8>,
}

/// Plays `script` against the server and records what the client sent.
pub fn record(script: &Script) -> io::Result<Recorded> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let log = Arc::new(Mutex::new(Vec::new()));
        let tap = Tap {
            io: server_io,
            log: Arc::clone(&log),
        };
        let server = async move {
            let tls = LeanTls::new(tap, fixed_crypto::server_config()).map_err(io::Error::other)?;
            // The server may still be writing when the client has gone; only its bytes matter.
            let _ = converse(tls, script.reply, &mut Outcome::default(), &mut |_| {}).await;
            io::Result::Ok(())
        };
        let (_, client) = tokio::join!(server, play(script, client_io));
        client?;
        let stream = std::mem::take(&mut *log.lock().expect("the log"));
        Ok(Recorded {
            stream,
            plaintext: script.messages.concat(),
        })
    })
}

async fn play(script: &Script, io: DuplexStream) -> io::Result<()> {
    let mut provider = (*muster_client::trust::crypto_provider()).clone();
    provider.kx_groups = script.groups.clone();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(fixed_crypto::certificate())
        .map_err(io::Error::other)?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(script.versions)
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from("localhost").expect("a server name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, io)
        .await?;
    let mut reply = vec![0u8; script.reply];
    tls.read_exact(&mut reply).await?;
    for (i, message) in script.messages.iter().enumerate() {
        if script.key_update && i > 0 {
            tls.get_mut()
                .1
                .refresh_traffic_keys()
                .map_err(io::Error::other)?;
        }
        tls.write_all(message).await?;
        tls.flush().await?;
    }
    if script.close_notify {
        tls.shutdown().await?;
    }
    Ok(())
}

/// Keeps a copy of everything read through it.
struct Tap {
    io: DuplexStream,
    log: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            this.log
                .lock()
                .expect("the log")
                .extend_from_slice(&buf.filled()[before..]);
        }
        poll
    }
}

impl AsyncWrite for Tap {
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

#[cfg(test)]
mod tests {
    use super::super::{Plan, run_with};
    use super::*;

    fn replay(recorded: &Recorded, reads: Vec<u16>, writes: Vec<u8>, preread: bool) -> Outcome {
        let plan = Plan {
            preread,
            repeat: 1,
            reads,
            writes,
            reply: 100,
            stream: &recorded.stream,
        };
        let mut plaintext = Vec::new();
        let outcome = run_with(&plan.encode(), None, &mut |p| {
            plaintext.extend_from_slice(p)
        });
        assert_eq!(plaintext, recorded.plaintext, "{plan:?}");
        outcome
    }

    #[test]
    fn a_recorded_session_replays_into_the_same_plaintext_however_it_is_split() {
        let scripts = [
            Script::default(),
            Script {
                versions: TLS12_ONLY,
                ..Script::default()
            },
            Script {
                messages: vec![b"one".to_vec(), vec![7; 40_000], b"three".to_vec()],
                key_update: true,
                close_notify: false,
                ..Script::default()
            },
        ];
        for script in &scripts {
            let recorded = record(script).unwrap();
            for (reads, writes, preread) in [
                (vec![], vec![], false),
                (vec![], vec![], true),
                (vec![1], vec![1], false),
                (vec![0, 5, 0, 517], vec![0, 3], true),
                (vec![16_389, 2], vec![200], false),
            ] {
                let outcome = replay(&recorded, reads, writes, preread);
                assert!(outcome.handshaken);
                // Without a close_notify the stream still ends between records: a clean end.
                assert_eq!(outcome.error, None, "{script:?}");
            }
        }
    }
}

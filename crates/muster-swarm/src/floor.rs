//! The memory floor: the least a tokio WebSocket server can hold per idle connection with the
//! settings muster uses — rustls with a self-signed ECDSA P-256 certificate (as `muster serve`
//! makes), HTTP/1.1 ALPN, tungstenite with a 4 KiB read buffer and no write buffer. It sends
//! one welcome (so a simulated worker counts itself connected), then only reads, which answers
//! the worker's pings. muster's server memory per worker is judged against this.
//!
//! Without TLS a worker has no exporter value to sign and first asks for a nonce
//! (`GET /api/v1/challenge`); the plaintext floor answers that one request with a fixed nonce
//! (it checks no proof) and closes, so the same worker code connects to it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use muster_proto::control::{ServerMessage, Welcome};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use futures_util::{SinkExt, StreamExt};

/// What the floor prints (and writes to its ready file) once it listens.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Ready {
    pub url: String,
    pub fingerprint: Option<String>,
    pub pid: u32,
}

/// The same buffer sizes as muster's server (`control/connect.rs`).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(1024 * 1024))
}

fn tls_acceptor() -> anyhow::Result<(TlsAcceptor, String)> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .context("cannot make a self-signed certificate")?;
    let der = certified.cert.der().clone();
    let digest: [u8; 32] = Sha256::digest(der.as_ref()).into();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let provider = muster_client::trust::crypto_provider();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![der], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((
        TlsAcceptor::from(Arc::new(config)),
        muster_client::trust::format_fingerprint(&digest),
    ))
}

/// Serves until the process is stopped.
pub async fn serve(listen: &str, tls: bool, on_ready: impl FnOnce(&Ready)) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on `{listen}`"))?;
    let addr = listener.local_addr()?;
    let (acceptor, fingerprint) = if tls {
        let (a, f) = tls_acceptor()?;
        (Some(a), Some(f))
    } else {
        (None, None)
    };
    let scheme = if tls { "https" } else { "http" };
    on_ready(&Ready {
        url: format!("{scheme}://{addr}"),
        fingerprint,
        pid: std::process::id(),
    });
    let welcome: Arc<str> = Arc::from(
        serde_json::to_string(&ServerMessage::Welcome(Welcome {
            worker_id: "floor".into(),
            name: "floor".into(),
            heartbeat_ms: 5000,
            idle_timeout_ms: 15000,
            expires_at: None,
            ticket: None,
        }))?
        .as_str(),
    );
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(_) => {
                // Out of descriptors, most likely: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let welcome = Arc::clone(&welcome);
        tokio::spawn(async move {
            let mut stream = stream;
            let _ = stream.set_nodelay(true);
            match acceptor {
                Some(acceptor) => {
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
                    {
                        hold(tls, &welcome).await;
                    }
                }
                None => {
                    if !answered_challenge(&mut stream).await {
                        hold(stream, &welcome).await;
                    }
                }
            }
        });
    }
}

/// The longest request head the floor reads when answering a challenge request.
const MAX_HEAD: usize = 2 * 1024;

/// If the connection's request is `GET /api/v1/challenge`, answers it (a fixed nonce) and says
/// so; anything else is left unread, for the WebSocket handshake.
async fn answered_challenge(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncWriteExt;
    let wanted = format!("GET {} ", muster_proto::paths::CHALLENGE);
    let mut head = vec![0u8; MAX_HEAD];
    let peeked = async {
        loop {
            let n = stream.peek(&mut head).await.ok()?;
            if n == 0 {
                return None;
            }
            let seen = &head[..n];
            if seen.len() >= wanted.len() && !seen.starts_with(wanted.as_bytes()) {
                return Some(None);
            }
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(Some(end + 4));
            }
            if n == MAX_HEAD {
                return None;
            }
            // Not all of the head is here yet: wait for more rather than spin on the same bytes.
            stream.readable().await.ok()?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let Ok(Some(found)) = tokio::time::timeout(Duration::from_secs(10), peeked).await else {
        return false;
    };
    let Some(len) = found else {
        return false;
    };
    let body = serde_json::json!({ "nonce": "floor" }).to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut sink = vec![0u8; len];
    let _ = tokio::io::AsyncReadExt::read_exact(stream, &mut sink).await;
    let _ = stream.write_all(response.as_bytes()).await;
    true
}

/// Upgrades, welcomes, and reads until the client goes.
async fn hold<S>(stream: S, welcome: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(ws_config())).await
    else {
        return;
    };
    if ws.send(Message::Text(welcome.into())).await.is_err() {
        return;
    }
    while let Some(Ok(_)) = ws.next().await {}
}

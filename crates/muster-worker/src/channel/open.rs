//! Opening the control channel: where the server is and how to trust it ([`Endpoint`]), who is
//! connecting ([`Identity`]), and [`connect`]: TCP (optionally from a chosen local address, so a
//! load generator can spread over many), TLS with muster's trust options, the proof that this
//! worker holds its key — a signature over the TLS connection's exporter value, or over a server
//! nonce where there is no TLS — and the upgrade, with a refused upgrade classified.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use muster_client::Trust;
use muster_core::identity::Binding;
use muster_proto::{ErrorBody, PROTOCOL_VERSION, headers};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::classify::{self, Failure};
use crate::error::WorkerError;
use crate::identity::Prover;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The TLS and WebSocket handshakes get their own bound: a load balancer (or a frozen server)
/// can accept the TCP connection and then never answer, and without a bound the worker would
/// wait on that one attempt forever instead of retrying.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server is and how to trust it: parsed and set up once, shared by every connection
/// (a swarm shares one across thousands of simulated workers).
#[derive(Clone)]
pub struct Endpoint {
    pub base_url: String,
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    trust: Trust,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    pub fn new(url: &str, trust: &Trust) -> Result<Self, WorkerError> {
        let bad = || {
            WorkerError::config(
                format!("server URL `{url}` is malformed"),
                "use `https://host:port`, for example `https://muster.example.com:7443`",
            )
        };
        let base_url = muster_client::normalize_url(url).map_err(|_| bad())?;
        let uri: Uri = base_url.parse().map_err(|_| bad())?;
        let secure = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let host = uri
            .host()
            .ok_or_else(bad)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let tls = if secure {
            Some(trust.client_config().map_err(|e| {
                WorkerError::config(e.to_string(), "check `--ca-file` / `--ca-fingerprint`")
            })?)
        } else {
            None
        };
        Ok(Self {
            base_url,
            host,
            port,
            tls,
            trust: trust.clone(),
        })
    }

    /// These endpoints (the `--url`s of one worker, replicas of one server) with one TLS session
    /// store between them, of their own. Every `Endpoint` made by [`Endpoint::new`] keeps a store
    /// (rustls's, in memory, by server name), so a worker's next connection to the same server
    /// resumes its TLS session: no certificate to send, sign or check, while the proof of
    /// possession still signs the new connection's own exporter value. Shared, a ticket one
    /// replica gave is offered to another when the worker fails over, and replicas that share
    /// their ticket keys resume it; one that cannot decrypt it does a full handshake.
    ///
    /// A session is only stored after a handshake that passed the worker's trust (its pinned
    /// fingerprint or CA), offered only through that same trust, and only under the server
    /// name it was made with (RFC 8446 §4.6.1): replicas reached under one name (one host, a
    /// load balancer) resume each other's sessions, replicas under different names do not. A
    /// load generator that plays many workers gives each its own store with this, as each real
    /// worker process has: a store shared between workers would hand one's tickets to another.
    pub fn sharing_sessions(endpoints: &[Endpoint]) -> Vec<Endpoint> {
        let store: Arc<dyn rustls::client::ClientSessionStore> = Arc::new(
            rustls::client::ClientSessionMemoryCache::new(endpoints.len().max(1)),
        );
        // One configuration per trust, not per endpoint: rustls offers a session only through
        // the very verifier (the same `Arc`) that checked the server it came from, so a store
        // shared by configurations built one per URL would never offer anything across them.
        let mut configs: Vec<(Trust, Arc<rustls::ClientConfig>)> = Vec::new();
        endpoints
            .iter()
            .map(|endpoint| {
                let mut copy = endpoint.clone();
                if let Some(config) = &endpoint.tls {
                    let shared = match configs.iter().find(|(t, _)| *t == endpoint.trust) {
                        Some((_, shared)) => Arc::clone(shared),
                        None => {
                            let mut config = (**config).clone();
                            config.resumption =
                                rustls::client::Resumption::store(Arc::clone(&store));
                            let shared = Arc::new(config);
                            configs.push((endpoint.trust.clone(), Arc::clone(&shared)));
                            shared
                        }
                    };
                    copy.tls = Some(shared);
                }
                copy
            })
            .collect()
    }

    /// The host the URL names (without brackets around an IPv6 address) and its port.
    pub fn host_port(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    /// The TLS configuration of an `https://` URL, with the trust the worker was given.
    pub fn tls(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.tls.as_ref()
    }

    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// Whether credentials may travel to this server as they are: over TLS, or in clear text
    /// to this machine only (a loopback address or `localhost`).
    pub fn is_safe_without_tls(&self) -> bool {
        self.tls.is_some()
            || self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// A REST client for this server (the worker's enrollment, and nonces where there is no TLS).
    pub fn client(&self) -> Result<muster_client::Client, WorkerError> {
        muster_client::Client::new(&self.base_url, &self.trust, None).map_err(|e| {
            WorkerError::with_optional_hint(crate::error::Cause::Config, e.to_string(), e.hint())
        })
    }

    fn ws_url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "{scheme}://{host}:{}{}",
            self.port,
            muster_proto::paths::CONNECT
        )
    }
}

/// Who is connecting, and what it proves that with.
#[derive(Clone)]
pub struct Identity {
    pub worker_id: String,
    pub api_key: String,
    pub machine_id: String,
    pub prover: Prover,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("worker_id", &self.worker_id)
            .field("machine_id", &self.machine_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct ChannelOptions {
    /// `k=v,k=v`, sent so the server sees the worker's current labels.
    pub labels: String,
    pub max_jobs: u32,
    /// Connect from this local address (a load generator spreads over 127.0.0.x).
    pub bind: Option<IpAddr>,
    /// How this worker confines its jobs, sent so `workers show` can say.
    pub confinement: Option<muster_proto::confinement::Confinement>,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            labels: String::new(),
            max_jobs: 1,
            bind: None,
            confinement: None,
        }
    }
}

/// Small buffers: a worker's control channel carries small messages.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_message_size(Some(16 * 1024 * 1024))
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens the control channel. Refusals come back classified.
pub async fn connect(
    endpoint: &Endpoint,
    identity: &Identity,
    options: &ChannelOptions,
) -> Result<Socket, Failure> {
    let retry = |reason: String| Failure::Retry {
        reason,
        after: None,
    };
    let target = format!("{}:{}", endpoint.host, endpoint.port);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&target)
        .await
        .map_err(|e| retry(format!("cannot resolve `{}`: {e}", endpoint.host)))?
        .collect();
    let addr = addrs
        .first()
        .copied()
        .ok_or_else(|| retry(format!("`{}` has no address", endpoint.host)))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| retry(format!("cannot open a socket: {e}")))?;
    if let Some(ip) = options.bind {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| retry(format!("cannot bind to {ip}: {e}")))?;
    }
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(addr))
        .await
        .map_err(|_| retry(format!("connecting to {addr} timed out")))?
        .map_err(|e| retry(format!("cannot connect to {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);

    // TLS first, by hand: the proof signs this connection's exporter value, which only exists
    // once the TLS handshake is done and before the upgrade request is written.
    let (stream, binding) = match &endpoint.tls {
        Some(config) => {
            let tls = tls_handshake(endpoint, config, stream).await?;
            let exporter = tls
                .get_ref()
                .1
                .export_keying_material([0u8; 32], muster_proto::identity::EXPORTER_LABEL, None)
                .ok()
                .map(Binding::TlsExporter);
            (MaybeTlsStream::Rustls(tls), exporter)
        }
        None => (MaybeTlsStream::Plain(stream), None),
    };
    // No exporter (no TLS here, or TLS 1.2 to a proxy): sign a nonce the server issued instead.
    let (binding, nonce) = match binding {
        Some(binding) => (binding, None),
        None => {
            let nonce = server_nonce(endpoint).await?;
            (Binding::ServerNonce(nonce.as_bytes().to_vec()), Some(nonce))
        }
    };
    let ticket = identity.prover.tickets.current();
    let proof = identity
        .prover
        .sign_connect(&binding, &identity.worker_id, ticket.as_ref());

    let mut request = endpoint.ws_url().into_client_request().map_err(|e| {
        Failure::Stop(WorkerError::config(
            format!("cannot build the connect request: {e}"),
            "check `--url`",
        ))
    })?;
    let h = request.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""));
    h.insert(headers::PROTOCOL, HeaderValue::from(PROTOCOL_VERSION));
    h.insert(headers::WORKER_ID, value(&identity.worker_id));
    h.insert(headers::MACHINE_ID, value(&identity.machine_id));
    h.insert(headers::LABELS, value(&options.labels));
    h.insert(headers::MAX_JOBS, HeaderValue::from(options.max_jobs));
    if let Some(confinement) = &options.confinement {
        h.insert(
            muster_proto::confinement::HEADER,
            value(&confinement.to_string()),
        );
    }
    h.insert(
        headers::PUBLIC_KEY,
        value(&identity.prover.key.public_key().to_string()),
    );
    h.insert(headers::PROOF, value(&proof.to_string()));
    h.insert(
        headers::PROCESS,
        value(&identity.prover.process.to_string()),
    );
    if let Some(ticket) = &ticket {
        h.insert(headers::TICKET, value(&ticket.encode()));
    }
    if let Some(nonce) = &nonce {
        h.insert(headers::NONCE, value(nonce));
    }
    h.insert(
        "authorization",
        value(&format!("Bearer {}", identity.api_key)),
    );
    let handshake = tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config()));
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Err(_) => Err(retry(format!(
            "{addr} accepted the connection but did not complete the handshake within {} s",
            HANDSHAKE_TIMEOUT.as_secs()
        ))),
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(error)) => Err(classify_connect_error(endpoint, error)),
    }
}

/// The TLS handshake, bounded, with muster's trust options.
async fn tls_handshake(
    endpoint: &Endpoint,
    config: &Arc<rustls::ClientConfig>,
    stream: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|e| {
        Failure::Stop(WorkerError::config(
            format!("`{}` is not a host name TLS can check: {e}", endpoint.host),
            "check `--url`",
        ))
    })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, stream)).await {
        Err(_) => Err(Failure::Retry {
            reason: format!(
                "{} accepted the connection but did not complete the TLS handshake within {} s",
                endpoint.base_url,
                HANDSHAKE_TIMEOUT.as_secs()
            ),
            after: None,
        }),
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(error)) => Err(classify_tls_error(endpoint, &error)),
    }
}

/// A nonce from the server, for a proof on a connection without an exporter to bind to.
async fn server_nonce(endpoint: &Endpoint) -> Result<String, Failure> {
    let client = endpoint.client().map_err(Failure::Stop)?;
    match client.challenge().await {
        Ok(challenge) => Ok(challenge.nonce),
        Err(e) => Err(classify::from_client(&e)),
    }
}

/// A failed TLS handshake: an untrusted certificate or a server without TLS stop the worker;
/// anything else may pass.
fn classify_tls_error(endpoint: &Endpoint, error: &std::io::Error) -> Failure {
    if muster_client::trust::is_untrusted_certificate(error) {
        return Failure::Stop(classify::untrusted_certificate(&endpoint.base_url));
    }
    if muster_client::trust::is_not_tls(error) {
        return Failure::Stop(not_tls(endpoint));
    }
    Failure::Retry {
        reason: format!("the TLS handshake failed: {error}"),
        after: None,
    }
}

fn not_tls(endpoint: &Endpoint) -> WorkerError {
    WorkerError::config(
        format!(
            "`{}` is an https:// URL but the server does not speak TLS",
            endpoint.base_url
        ),
        format!(
            "use `{}` if the server runs with `--no-tls`",
            endpoint.base_url.replacen("https://", "http://", 1)
        ),
    )
}

pub(super) fn classify_connect_error(endpoint: &Endpoint, error: tungstenite::Error) -> Failure {
    if let tungstenite::Error::Http(response) = &error {
        if response.headers().contains_key("x-muster-wrong-scheme") {
            return Failure::Stop(WorkerError::config(
                format!(
                    "`{}` is a plain http:// URL but the server speaks HTTPS",
                    endpoint.base_url
                ),
                format!(
                    "use `{}`",
                    endpoint.base_url.replacen("http://", "https://", 1)
                ),
            ));
        }
        let status = response.status();
        let body = response.body().as_deref().unwrap_or_default();
        return match serde_json::from_slice::<ErrorBody>(body) {
            Ok(body) => classify::from_api(
                body.error.code,
                &body.error.message,
                body.error.hint.as_deref(),
                body.error.retry_after_ms,
            ),
            Err(_) if status.is_server_error() => Failure::Retry {
                reason: format!("the server answered HTTP {status}"),
                after: None,
            },
            Err(_) => Failure::Stop(WorkerError::config(
                format!(
                    "`{}` answered HTTP {status}: it does not look like a muster server",
                    endpoint.base_url
                ),
                "check `--url`",
            )),
        };
    }
    if muster_client::trust::is_untrusted_certificate(&error) {
        return Failure::Stop(classify::untrusted_certificate(&endpoint.base_url));
    }
    if muster_client::trust::is_not_tls(&error) {
        return Failure::Stop(not_tls(endpoint));
    }
    Failure::Retry {
        reason: format!("the connection failed: {error}"),
        after: None,
    }
}

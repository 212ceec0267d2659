//! The worker's end of the control channel: opening it, and the loop that keeps it alive.
//!
//! [`run`] is generic over any `Stream + Sink` of WebSocket messages so that its reactions — to
//! the welcome, heartbeats, silence, close codes, a shutdown — are tested in memory with tokio's
//! paused clock. [`connect`] makes the real one: TCP (optionally from a chosen local address, so
//! a load generator can spread over many), TLS with muster's trust options, and the upgrade.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use muster_client::Trust;
use muster_proto::control::{CloseCode, ServerMessage, Welcome};
use muster_proto::{ErrorBody, PROTOCOL_VERSION, headers};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::classify::{self, Failure};
use crate::error::WorkerError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The TLS and WebSocket handshakes get their own bound: a load balancer (or a frozen server)
/// can accept the TCP connection and then never answer, and without a bound the worker would
/// wait on that one attempt forever instead of retrying.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server is and how to trust it: parsed and set up once, shared by every connection
/// (a swarm shares one across thousands of simulated workers).
#[derive(Clone)]
pub struct Endpoint {
    pub base_url: String,
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
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

/// Who is connecting.
#[derive(Clone)]
pub struct Identity {
    pub worker_id: String,
    pub api_key: String,
    pub machine_id: String,
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
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            labels: String::new(),
            max_jobs: 1,
            bind: None,
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
    h.insert(
        "authorization",
        value(&format!("Bearer {}", identity.api_key)),
    );
    let connector = match &endpoint.tls {
        Some(config) => Connector::Rustls(Arc::clone(config)),
        None => Connector::Plain,
    };
    let handshake = tokio_tungstenite::client_async_tls_with_config(
        request,
        stream,
        Some(ws_config()),
        Some(connector),
    );
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Err(_) => Err(retry(format!(
            "{addr} accepted the connection but did not complete the handshake within {} s",
            HANDSHAKE_TIMEOUT.as_secs()
        ))),
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(error)) => Err(classify_connect_error(endpoint, error)),
    }
}

fn classify_connect_error(endpoint: &Endpoint, error: tungstenite::Error) -> Failure {
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
        return Failure::Stop(WorkerError::config(
            format!(
                "`{}` is an https:// URL but the server does not speak TLS",
                endpoint.base_url
            ),
            format!(
                "use `{}` if the server runs with `--no-tls`",
                endpoint.base_url.replacen("https://", "http://", 1)
            ),
        ));
    }
    Failure::Retry {
        reason: format!("the connection failed: {error}"),
        after: None,
    }
}

/// How a channel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEnd {
    /// Gone for a reason that may pass: reconnect. `after` is the server's requested delay.
    /// `welcomed` says whether the channel got as far as the welcome (it worked for a while).
    Lost {
        reason: String,
        after: Option<Duration>,
        welcomed: bool,
    },
    /// The server ended it for good.
    Stop(WorkerError),
    /// We were asked to stop.
    Shutdown,
}

/// What the loop reports to the code around it: jobs hook in here.
pub trait Events: Send {
    fn welcomed(&mut self, _welcome: &Welcome) {}
    /// A message from the server other than the welcome.
    fn message(&mut self, _message: ServerMessage) {}
    /// The channel is gone (for any reason).
    fn lost(&mut self) {}
    /// The server sent a close frame with this code and reason (the moment it was read).
    fn closed_by_server(&mut self, _code: CloseCode, _reason: &str) {}
    /// The reconnect loop starts a connection attempt.
    fn connecting(&mut self) {}
    /// The reconnect loop saw an open channel end, as `end` says.
    fn ended(&mut self, _end: &ChannelEnd) {}
    /// An attempt (to enroll or to connect) failed for a reason that may pass; the next one
    /// comes after `delay`.
    fn retrying(&mut self, _reason: &str, _delay: Duration) {}
}

/// No-op events.
pub struct Quiet;
impl Events for Quiet {}

/// Runs an open channel until it ends. Frames from `outbound` (job output and results) are sent
/// in order; `events` hears server messages, and that the channel is gone when it ends.
pub async fn run<S, E>(
    socket: S,
    shutdown: &mut watch::Receiver<bool>,
    events: &mut dyn Events,
    outbound: Option<&mut mpsc::Receiver<Message>>,
) -> ChannelEnd
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
    E: std::fmt::Display,
{
    let end = run_inner(socket, shutdown, events, outbound).await;
    events.lost();
    end
}

async fn run_inner<S, E>(
    mut socket: S,
    shutdown: &mut watch::Receiver<bool>,
    events: &mut dyn Events,
    mut outbound: Option<&mut mpsc::Receiver<Message>>,
) -> ChannelEnd
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
    E: std::fmt::Display,
{
    let lost = |reason: String, welcomed: bool| ChannelEnd::Lost {
        reason,
        after: None,
        welcomed,
    };
    // Frames left over from a previous channel belong to jobs the server has already written off.
    if let Some(rx) = outbound.as_deref_mut() {
        while rx.try_recv().is_ok() {}
    }
    // The server speaks first.
    let welcome = match tokio::time::timeout(WELCOME_TIMEOUT, socket.next()).await {
        Err(_) => return lost("the server sent no welcome".into(), false),
        Ok(None) => return lost("the server closed the connection".into(), false),
        Ok(Some(Err(e))) => return lost(format!("the connection failed: {e}"), false),
        Ok(Some(Ok(Message::Close(frame)))) => {
            report_close(events, frame.as_ref());
            return closed(frame, None, false);
        }
        Ok(Some(Ok(Message::Text(text)))) => {
            match serde_json::from_str::<ServerMessage>(text.as_str()) {
                Ok(ServerMessage::Welcome(w)) => w,
                _ => return lost("the server's first message was not a welcome".into(), false),
            }
        }
        Ok(Some(Ok(_))) => {
            return lost("the server's first message was not a welcome".into(), false);
        }
    };
    events.welcomed(&welcome);
    let heartbeat = Duration::from_millis(welcome.heartbeat_ms.max(100));
    let idle_timeout = Duration::from_millis(welcome.idle_timeout_ms.max(welcome.heartbeat_ms * 2));
    let mut last_heard = Instant::now();
    let mut reconnect_after: Option<Duration> = None;
    let ping = sleep(heartbeat);
    tokio::pin!(ping);
    let silence = sleep_until(last_heard + idle_timeout);
    tokio::pin!(silence);

    loop {
        tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    let _ = socket.send(Message::Close(None)).await;
                    return ChannelEnd::Shutdown;
                }
            }
            frame = socket.next() => {
                last_heard = Instant::now();
                silence.as_mut().reset(last_heard + idle_timeout);
                match frame {
                    None => return lost("the server closed the connection".into(), true),
                    Some(Err(e)) => return lost(format!("the connection failed: {e}"), true),
                    Some(Ok(Message::Close(frame))) => {
                        report_close(events, frame.as_ref());
                        return closed(frame, reconnect_after, true);
                    }
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerMessage>(text.as_str()) {
                        Ok(ServerMessage::Reconnect { after_ms, reason }) => {
                            tracing::info!(%reason, after_ms, "the server asked this worker to come back later");
                            reconnect_after = Some(Duration::from_millis(after_ms));
                        }
                        Ok(message) => events.message(message),
                        Err(e) => tracing::debug!(error = %e, "ignoring a message this worker does not understand"),
                    },
                    Some(Ok(_)) => {}
                }
            }
            Some(message) = next_outbound(&mut outbound) => {
                if socket.send(message).await.is_err() {
                    return lost("the connection failed while sending".into(), true);
                }
            }
            () = &mut silence => {
                return lost(format!("nothing heard from the server for {} s", idle_timeout.as_secs()), true);
            }
            () = &mut ping => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return lost("the connection failed while sending a heartbeat".into(), true);
                }
                ping.as_mut().reset(Instant::now() + heartbeat);
            }
        }
    }
}

fn report_close(events: &mut dyn Events, frame: Option<&tungstenite::protocol::CloseFrame>) {
    let (code, reason) = close_of(frame);
    events.closed_by_server(code, reason);
}

/// The close code and reason of a close frame; a close without a frame has no status.
fn close_of(frame: Option<&tungstenite::protocol::CloseFrame>) -> (CloseCode, &str) {
    match frame {
        Some(f) => (CloseCode::from(u16::from(f.code)), f.reason.as_str()),
        None => (CloseCode::NO_STATUS, ""),
    }
}

/// The next frame to send, or never if there is no outbound queue.
async fn next_outbound(outbound: &mut Option<&mut mpsc::Receiver<Message>>) -> Option<Message> {
    match outbound {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What the worker does after the server's close frame: `classify` decides.
fn closed(
    frame: Option<tungstenite::protocol::CloseFrame>,
    after: Option<Duration>,
    welcomed: bool,
) -> ChannelEnd {
    let (code, reason) = close_of(frame.as_ref());
    match classify::from_close(code, reason) {
        Failure::Stop(error) => ChannelEnd::Stop(error),
        Failure::Retry { reason, .. } => ChannelEnd::Lost {
            reason,
            after,
            welcomed,
        },
    }
}

#[cfg(test)]
mod tests {
    //! The loop against an in-memory server, with the clock paused.
    use super::*;
    use tokio::sync::mpsc;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    struct Duplex {
        rx: mpsc::UnboundedReceiver<Result<Message, String>>,
        tx: mpsc::UnboundedSender<Message>,
    }

    impl Stream for Duplex {
        type Item = Result<Message, String>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.rx.poll_recv(cx)
        }
    }

    impl Sink<Message> for Duplex {
        type Error = ();
        fn poll_ready(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), ()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn start_send(self: std::pin::Pin<&mut Self>, item: Message) -> Result<(), ()> {
            self.tx.send(item).map_err(|_| ())
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), ()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), ()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    struct Server {
        to_worker: mpsc::UnboundedSender<Result<Message, String>>,
        from_worker: mpsc::UnboundedReceiver<Message>,
    }

    fn pair() -> (Duplex, Server) {
        let (to_worker, rx) = mpsc::unbounded_channel();
        let (tx, from_worker) = mpsc::unbounded_channel();
        (
            Duplex { rx, tx },
            Server {
                to_worker,
                from_worker,
            },
        )
    }

    fn welcome() -> Message {
        let w = ServerMessage::Welcome(Welcome {
            worker_id: "w".into(),
            name: "n".into(),
            heartbeat_ms: 5000,
            idle_timeout_ms: 15000,
            expires_at: None,
        });
        Message::Text(serde_json::to_string(&w).unwrap().into())
    }

    fn close_frame(code: CloseCode, reason: &str) -> Message {
        Message::Close(Some(CloseFrame {
            code: u16::from(code).into(),
            reason: reason.into(),
        }))
    }

    async fn run_with(server_script: Vec<Message>) -> (ChannelEnd, Server) {
        let (socket, server) = pair();
        for m in server_script {
            server.to_worker.send(Ok(m)).unwrap();
        }
        let (_tx, mut shutdown) = watch::channel(false);
        let end = run(socket, &mut shutdown, &mut Quiet, None).await;
        (end, server)
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_close_codes_map_to_exit_codes() {
        for (close_code, exit_code) in [
            (CloseCode::Revoked, 5),
            (CloseCode::Expired, 6),
            (CloseCode::Superseded, 4),
            (CloseCode::Removed, 4),
            (CloseCode::Replaced, 4),
        ] {
            let (end, _) = run_with(vec![welcome(), close_frame(close_code, "x")]).await;
            match end {
                ChannelEnd::Stop(error) => {
                    assert_eq!(error.exit_code(), exit_code, "close {close_code}");
                }
                other => panic!("close {close_code}: expected a stop, got {other:?}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn going_away_reconnects_after_the_servers_delay() {
        let reconnect = ServerMessage::Reconnect {
            after_ms: 1234,
            reason: "restart".into(),
        };
        let script = vec![
            welcome(),
            Message::Text(serde_json::to_string(&reconnect).unwrap().into()),
            close_frame(CloseCode::GoingAway, "bye"),
        ];
        let (end, _) = run_with(script).await;
        assert_eq!(
            end,
            ChannelEnd::Lost {
                reason: "bye".into(),
                after: Some(Duration::from_millis(1234)),
                welcomed: true
            }
        );
    }

    fn http_answer(status: u16, wrong_scheme: bool, body: &str) -> tungstenite::Error {
        let mut response = tungstenite::http::Response::builder().status(status);
        if wrong_scheme {
            response = response.header("x-muster-wrong-scheme", "1");
        }
        let body = (!body.is_empty()).then(|| body.as_bytes().to_vec());
        tungstenite::Error::Http(Box::new(response.body(body).unwrap()))
    }

    #[test]
    fn refused_upgrades_are_classified_and_read_as_one_line_with_a_hint() {
        let trust = Trust::Fingerprint([0; 32]);
        let endpoint = Endpoint::new("https://muster.example:7443", &trust).unwrap();
        let plain = Endpoint::new("http://muster.example:7443", &trust).unwrap();
        let refusal = r#"{"error":{"code":"worker_revoked","message":"worker `w` was revoked","hint":"enroll again"}}"#;
        let cases = [
            (
                "wrong scheme",
                classify_connect_error(&plain, http_answer(400, true, "")),
            ),
            (
                "not muster",
                classify_connect_error(&endpoint, http_answer(404, false, "")),
            ),
            (
                "refused",
                classify_connect_error(&endpoint, http_answer(403, false, refusal)),
            ),
        ];
        let lines: Vec<String> = cases
            .into_iter()
            .map(|(what, failure)| match failure {
                Failure::Stop(error) => format!("{what}: (exit {}) {error}", error.exit_code()),
                Failure::Retry { reason, .. } => panic!("{what}: retried ({reason})"),
            })
            .collect();
        insta::assert_snapshot!(lines.join("\n"));
        assert!(matches!(
            classify_connect_error(&endpoint, http_answer(502, false, "")),
            Failure::Retry { .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_code_muster_does_not_send_reconnects() {
        let (end, _) = run_with(vec![welcome(), close_frame(CloseCode::Other(4999), "")]).await;
        assert_eq!(
            end,
            ChannelEnd::Lost {
                reason: "the server closed the channel (code 4999)".into(),
                after: None,
                welcomed: true
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_server_is_noticed_at_the_idle_timeout_after_heartbeats() {
        let (socket, mut server) = pair();
        server.to_worker.send(Ok(welcome())).unwrap();
        let (_tx, mut shutdown) = watch::channel(false);
        let started = Instant::now();
        let end = run(socket, &mut shutdown, &mut Quiet, None).await;
        assert!(
            matches!(end, ChannelEnd::Lost { welcomed: true, .. }),
            "{end:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(15));
        let mut pings = 0;
        while let Ok(m) = server.from_worker.try_recv() {
            assert!(matches!(m, Message::Ping(_)));
            pings += 1;
        }
        assert_eq!(pings, 2, "pings at 5 s and 10 s");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_closes_politely() {
        let (socket, mut server) = pair();
        server.to_worker.send(Ok(welcome())).unwrap();
        let (tx, mut shutdown) = watch::channel(false);
        let task = tokio::spawn(async move { run(socket, &mut shutdown, &mut Quiet, None).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(true).unwrap();
        assert_eq!(task.await.unwrap(), ChannelEnd::Shutdown);
        assert!(matches!(
            server.from_worker.recv().await,
            Some(Message::Close(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn no_welcome_is_a_lost_channel_not_a_stop() {
        let (socket, _server) = pair();
        let (_tx, mut shutdown) = watch::channel(false);
        let end = run(socket, &mut shutdown, &mut Quiet, None).await;
        assert!(
            matches!(
                end,
                ChannelEnd::Lost {
                    welcomed: false,
                    ..
                }
            ),
            "{end:?}"
        );
    }
}

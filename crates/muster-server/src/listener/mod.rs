//! Accepting connections: TLS, HTTP/1.1 with upgrades, a connection cap below the process's
//! open-file limit, and graceful shutdown.
//!
//! Near the open-file limit the connections already held are never put at risk by running out
//! of descriptors, and `accept` itself never fails for want of one. The cap is the open-file
//! limit less a reserve for the server's own files ([`FD_RESERVE`]); a connection past it is
//! closed as soon as it is accepted. Workers' control channels stop short of the cap
//! ([`Occupancy`]): past the cap less [`api_reserve`] a worker is answered `503` with a
//! `retry_after_ms` (it learns why and when to come back), while API calls are still served
//! there, so an operator's command gets through when workers fill the server. Before a TLS
//! handshake starts, a connection passes the [`gate`]: its ClientHello on a short deadline, then
//! a permit shared fairly among sources.

mod first;
mod gate;
mod health;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use muster_proto::ErrorCode;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::error::AppError;
use crate::lean_tls::{ChannelBinding, LeanTls};
use crate::sources::PerSource;
use first::{FirstAnswer, FirstRead};
use gate::HandshakeGate;
use health::Accepting;
pub use health::ListenerHealth;

/// The caller's network address, as the listener saw it.
#[derive(Debug, Clone, Copy)]
pub struct Remote(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Remote {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Remote(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0),
        ))
    }
}

/// Descriptors kept free beyond the connection cap, for the server's own files: standard
/// streams, the listeners, the runtime's epoll and eventfds, SQLite's database, WAL and
/// shared-memory files or PostgreSQL's connections (a pool, the lease's, the listener's), log
/// files, outgoing webhook and backup connections — a few dozen in all. Connections never eat
/// into it: every accepted connection counts against the cap from its accept until its socket
/// is dropped, whatever becomes of it. (Connections past the cap used to be held through a TLS
/// handshake and a polite `503`, seconds each in a reconnect storm, unbounded: they ate this
/// reserve and `accept` failed with "Too many open files".)
const FD_RESERVE: usize = 256;
/// A worker turned away because the server is full is told to come back after a random wait in
/// this range, so the turned-away do not all return at the same instant.
const BUSY_RETRY_MIN_MS: u64 = 5_000;
const BUSY_RETRY_SPREAD_MS: u64 = 25_000;

/// Connections waiting to be accepted. After a server restart a whole fleet dials back within
/// seconds; the default backlog (1024) would drop SYNs and add a second of retransmit delay to
/// thousands of them. The kernel caps this at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 16 * 1024;

/// Binds the first address that works, with a deep accept backlog.
pub fn bind(addrs: &[SocketAddr]) -> std::io::Result<TcpListener> {
    let mut last = std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        "no address to listen on",
    );
    for addr in addrs {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }?;
        socket.set_reuseaddr(true)?;
        match socket
            .bind(*addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The open-file limit of this process, and so the most connections worth accepting.
pub fn connection_cap() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes to the struct we pass.
    #[allow(unsafe_code)]
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let soft = if ok {
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    soft.saturating_sub(FD_RESERVE).max(16)
}

/// Of a connection cap of `cap`, the places workers' control channels may not take: kept for
/// API calls (an operator's `muster job run`, `workers list`, enrollments), which come and go,
/// and for the connections of workers being turned away (each holds a place through its TLS
/// handshake and `503`, at most the handshake gate's 64 at a time). A 128th of the cap, at
/// least 4 and at most 256: at the usual 20,000 files, 19,590 control channels. (A sixteenth
/// cost a full server 512 workers' places, and the fleet benchmark's 19,500 no longer fit.)
pub fn api_reserve(cap: usize) -> usize {
    (cap / 128).clamp(4, 256).min(cap / 2)
}

/// How full the listener is, as a request sees it (a request extension): a worker's control
/// channel is refused once connections reach the cap less the [`api_reserve`], so API calls
/// always find a place.
#[derive(Clone)]
pub struct Occupancy {
    open: Arc<AtomicUsize>,
    worker_cap: usize,
}

impl Occupancy {
    /// Whether a new control channel would take one of the places kept for API calls. The
    /// count includes the asking connection itself.
    pub fn workers_full(&self) -> bool {
        self.open.load(Ordering::Relaxed) > self.worker_cap
    }

    pub fn worker_cap(&self) -> usize {
        self.worker_cap
    }
}

/// Raises the soft open-file limit to the hard limit: the default soft limit (often 1024) would
/// cap the fleet long before the machine does.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: plain libc calls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[derive(Clone)]
pub struct Listener {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections held at most; one past it is closed as soon as it is accepted.
    pub cap: usize,
    /// Connections that may be workers' control channels (the cap less [`api_reserve`]).
    pub worker_cap: usize,
    pub open: Arc<AtomicUsize>,
    /// Whether the accept loop runs (for readiness).
    accepting: Arc<AtomicBool>,
    gate: Arc<HandshakeGate>,
    /// Connections of one source whose first request has begun to arrive and is not answered
    /// yet: the phase before anyone is authenticated, where a slow client could otherwise pile
    /// up connections until the cap (see [`first`]).
    first_requests: Arc<PerSource>,
    /// Connections of one source from the end of their handshake to their first answer, idle
    /// ones included (see [`first`]).
    unanswered: Arc<PerSource>,
}

/// Connections of one source whose first request is arriving or waiting for its answer. An
/// honest worker's upgrade is answered within milliseconds, so even a fleet behind one address
/// has few here at once.
const FIRST_REQUESTS_PER_SOURCE: u32 = 64;
/// Connections of one source that have not had their first answer, idle or not: room for an
/// HTTP client pool's spare connections beside its requests, and a bound on what one source can
/// hold open without ever sending a byte (hyper closes each after [`HEADER_READ_TIMEOUT`]).
pub(crate) const UNANSWERED_PER_SOURCE: u32 = 256;
/// How long a client has to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

impl Listener {
    pub fn new(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let cap = connection_cap();
        Self {
            tls,
            cap,
            worker_cap: cap - api_reserve(cap),
            open: Arc::new(AtomicUsize::new(0)),
            accepting: Arc::new(AtomicBool::new(false)),
            gate: Arc::new(HandshakeGate::default()),
            first_requests: PerSource::new(FIRST_REQUESTS_PER_SOURCE),
            unanswered: PerSource::new(UNANSWERED_PER_SOURCE),
        }
    }

    /// What readiness checks look at: whether this listener takes new connections.
    pub fn health(&self) -> ListenerHealth {
        ListenerHealth {
            accepting: Arc::clone(&self.accepting),
            open: Arc::clone(&self.open),
            cap: self.cap,
        }
    }
}

/// A connection's socket, carrying its place in the open-connection count. The count drops when
/// the socket does — for a worker, when its control channel ends, not when the HTTP upgrade
/// hands the socket over.
struct Counted {
    stream: TcpStream,
    _guard: OpenGuard,
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Counts a connection while it lives.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Listener {
    /// Accepts until `shutdown` turns true. Connections in progress are told to finish (HTTP
    /// keep-alive ends after the current request); upgraded control channels are not affected
    /// here: the server closes those itself.
    pub async fn serve(
        self,
        listener: TcpListener,
        app: Router,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let _accepting = Accepting::start(&self.accepting);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.changed() => break,
            };
            let (stream, remote) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors (or a transient error): do not spin; the connections
                    // we hold are fine.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
            let guard = OpenGuard(Arc::clone(&self.open));
            if open > self.cap {
                // Even a polite refusal would hold a descriptor (through a TLS handshake, seconds
                // in a storm) that the server's own files need: close now. Workers were already
                // answered `503` from the cap less the API's places on.
                tracing::warn!(%remote, cap = self.cap, "connection cap reached; closing a connection unanswered");
                drop((stream, guard));
                continue;
            }
            let this = self.clone();
            let app = app.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                this.handle(stream, guard, remote, app, shutdown).await;
            });
        }
    }

    fn occupancy(&self) -> Occupancy {
        Occupancy {
            open: Arc::clone(&self.open),
            worker_cap: self.worker_cap,
        }
    }

    /// The connection's place among its source's connections without a first answer, or `None`
    /// (the connection is dropped) when the source has too many; its place among the requests
    /// in progress is taken when its first request begins to arrive.
    fn first_answer(&self, remote: SocketAddr) -> Option<Arc<FirstAnswer>> {
        FirstAnswer::new(&self.unanswered, &self.first_requests, remote.ip())
    }

    async fn handle(
        &self,
        stream: TcpStream,
        guard: OpenGuard,
        remote: SocketAddr,
        app: Router,
        shutdown: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        let Some(config) = &self.tls else {
            let stream = Counted {
                stream,
                _guard: guard,
            };
            let Some(first) = self.first_answer(remote) else {
                return;
            };
            let occupancy = self.occupancy();
            serve_http(
                stream,
                Peer {
                    remote,
                    binding: None,
                    occupancy,
                },
                first,
                app,
                shutdown,
            )
            .await;
            return;
        };
        let source = remote.ip();
        // A connection whose ClientHello is all here waits for nothing from its client: it
        // takes no place among its source's connections still sending theirs.
        let hello_slot = if gate::hello_arrived(&stream) {
            None
        } else {
            match self.gate.hello_slot(source) {
                Ok(slot) => Some(slot),
                Err(refused) => {
                    tracing::debug!(%remote, "connection refused: {refused}");
                    return;
                }
            }
        };
        let mut stream = stream;
        if speaks_plain_http(&stream).await {
            refuse_plain_http(stream).await;
            return;
        }
        let hello = match gate::read_client_hello(&mut stream).await {
            Ok(hello) => hello,
            Err(refused) => {
                tracing::debug!(%remote, "TLS handshake refused: {refused}");
                return;
            }
        };
        drop(hello_slot);
        let in_flight = crate::diag::metrics().tls_handshake();
        let permit = match self.gate.permit(source).await {
            Ok(permit) => permit,
            Err(refused) => {
                tracing::debug!(%remote, "TLS handshake refused: {refused}");
                return;
            }
        };
        if client_left(&stream).await {
            tracing::debug!(%remote, "the client gave up while its handshake waited for a permit");
            return;
        }
        let stream = Counted {
            stream,
            _guard: guard,
        };
        let handshake = async {
            let mut tls = LeanTls::with_received(stream, Arc::clone(config), hello)
                .map_err(std::io::Error::other)?;
            tls.handshake().await.map(|binding| (tls, binding))
        };
        let result = tokio::time::timeout(gate::HANDSHAKE_TIMEOUT, handshake).await;
        drop(permit);
        drop(in_flight);
        match result {
            Ok(Ok((tls, binding))) => {
                crate::diag::metrics().tls_handshake_done(tls.resumed());
                let Some(first) = self.first_answer(remote) else {
                    return;
                };
                let peer = Peer {
                    remote,
                    binding,
                    occupancy: self.occupancy(),
                };
                serve_http(tls, peer, first, app, shutdown).await
            }
            Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
        }
    }
}

/// A TLS client starts with a handshake record (0x16); a plain HTTP client with a method name.
async fn speaks_plain_http(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(gate::CLIENT_HELLO_TIMEOUT, stream.peek(&mut first)).await,
        Ok(Ok(1)) if first[0].is_ascii_uppercase()
    )
}

/// Whether the client has closed its side. In a reconnect storm a client may give up (its own
/// handshake timeout) while its connection waits for a permit; a handshake then would spend a
/// permit and the CPU of a signature on nobody. Nothing is read: after its ClientHello, a TLS
/// client sends nothing until the server answers, so only an end of stream (or an error) can
/// be waiting.
async fn client_left(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    // A zero timeout still polls the peek once: it answers at once whatever is there.
    matches!(
        tokio::time::timeout(Duration::ZERO, stream.peek(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Answers a plain-HTTP request on the HTTPS port in plain HTTP, so the client can say exactly
/// what is wrong instead of reporting a garbled connection.
async fn refuse_plain_http(mut stream: TcpStream) {
    let body = AppError::bad_request(
        ErrorCode::BadRequest,
        "this server speaks HTTPS, not plain HTTP",
    )
    .with_hint("use an `https://` URL")
    .body();
    let body = serde_json::to_string(&body).unwrap_or_default();
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nx-muster-wrong-scheme: https\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// What every request on one connection carries (as request extensions).
struct Peer {
    remote: SocketAddr,
    /// Over TLS 1.3, the connection's [`ChannelBinding`].
    binding: Option<ChannelBinding>,
    occupancy: Occupancy,
}

/// Serves HTTP on one connection. Every request carries the peer's address, the listener's
/// [`Occupancy`] and, over TLS 1.3, the connection's [`ChannelBinding`] (as request extensions).
/// `first` takes the connection's place among its source's connections waiting for a first
/// answer when the first request arrives; it is given up once that request is answered.
async fn serve_http<I>(
    io: I,
    peer: Peer,
    first: Arc<FirstAnswer>,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Peer {
        remote,
        binding,
        occupancy,
    } = peer;
    let io = TokioIo::new(FirstRead::new(io, Arc::clone(&first)));
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        request.extensions_mut().insert(occupancy.clone());
        if let Some(binding) = binding {
            request.extensions_mut().insert(binding);
        }
        let answered = app.clone().oneshot(request);
        let first = Arc::clone(&first);
        async move {
            let response = answered.await;
            first.answered();
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

/// The `503` of a server with no place for the client, saying when to come back: a random wait,
/// so the turned-away do not all return at once.
pub fn full(message: &str) -> AppError {
    AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ServerBusy,
        message,
    )
    .with_hint("the worker retries by itself; add server capacity if this persists")
    .with_retry_after(Duration::from_millis(
        BUSY_RETRY_MIN_MS + rand::Rng::gen_range(&mut rand::thread_rng(), 0..BUSY_RETRY_SPREAD_MS),
    ))
}

#[cfg(test)]
mod tests;

//! A TLS server stream that holds no buffer while its connection is idle.
//!
//! rustls's buffered `ServerConnection` keeps a 4 KiB read buffer for every connection once it
//! has read from it, idle or not — the largest single cost of an idle worker. This stream drives
//! rustls's unbuffered API (`UnbufferedServerConnection`) instead and owns the buffers itself:
//! the encrypted bytes received and not yet processed, the decrypted bytes not yet read, and the
//! encrypted bytes not yet written. Each is freed as soon as it is empty, so a quiet control
//! channel costs rustls's own state and nothing more.
//!
//! The handshake is driven by [`LeanTls::handshake`] before the stream is handed to HTTP; after
//! that, reads and writes drive the connection as they go (key updates, alerts, close_notify).
//! The handshake also yields the connection's [`ChannelBinding`] (see [`binding`]).
//!
//! When rustls refuses what the peer sent it queues a fatal alert; the stream sends that alert
//! before it reports the error, so a client with a bad ClientHello reads `protocol_version` or
//! `handshake_failure` rather than a bare end of stream.
//!
//! Over 400 lines: the stream is one state machine (handshake, reads, writes, close) over one
//! set of buffers; split, each part would need the others' invariants about who may hold which
//! buffer. Its tests are in `tests.rs`.
//!
//! Its own crate (the server re-exports it as `muster_server::lean_tls`) so the `lean_tls` fuzz
//! target builds it, with the sanitizer, without the rest of the server.

pub mod binding;
#[cfg(test)]
mod tests;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use binding::ChannelBinding;

/// Bytes read from the socket at a time (on the stack; appended to the incoming buffer).
const READ_CHUNK: usize = 4096;
/// Encrypted bytes waiting for the socket before a writer is made to wait.
const MAX_PENDING_WRITE: usize = 64 * 1024;
/// Received bytes that did not make up a whole record yet; a TLS record is at most ~16.7 KiB,
/// so more than this means a peer that is not speaking TLS.
const MAX_PENDING_READ: usize = 64 * 1024;

pub struct LeanTls<IO> {
    io: IO,
    conn: UnbufferedServerConnection,
    /// Received TLS bytes not yet processed.
    incoming: Vec<u8>,
    /// Decrypted application data not yet read, from `plain_pos` on.
    plaintext: Vec<u8>,
    plain_pos: usize,
    /// Encrypted bytes not yet written, from `out_pos` on.
    outgoing: Vec<u8>,
    out_pos: usize,
    handshaken: bool,
    peer_closed: bool,
    closed: bool,
    /// During the handshake, the exporter master secret once rustls has derived it; after it,
    /// the channel binding made from it, until [`LeanTls::handshake`] hands that out.
    exporter: Exporter,
}

enum Exporter {
    None,
    Secret(Vec<u8>),
    Binding(ChannelBinding),
}

/// What driving the connection left to do.
enum Next {
    /// More bytes from the peer are needed.
    Read,
    /// The peer closed its side cleanly.
    PeerClosed,
    /// What was to be written is encrypted into `outgoing`.
    Written,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Appends what `fill` writes to `out`, growing it until it fits.
fn append<E>(
    out: &mut Vec<u8>,
    hint: usize,
    mut fill: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> io::Result<()>
where
    E: Into<Option<InsufficientSizeError>> + std::fmt::Debug,
{
    let start = out.len();
    let mut room = hint.max(64);
    loop {
        out.resize(start + room, 0);
        match fill(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(e) => {
                let debug = format!("{e:?}");
                match e.into() {
                    Some(InsufficientSizeError { required_size }) if required_size > room => {
                        room = required_size
                    }
                    _ => {
                        out.truncate(start);
                        return Err(io::Error::other(format!(
                            "cannot encode a TLS record: {debug}"
                        )));
                    }
                }
            }
        }
    }
}

/// Lets `append` see the one recoverable error of each kind.
struct Insufficient(Option<InsufficientSizeError>);

impl From<EncodeError> for Insufficient {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::InsufficientSize(size) => Insufficient(Some(size)),
            _ => Insufficient(None),
        }
    }
}

impl From<EncryptError> for Insufficient {
    fn from(e: EncryptError) -> Self {
        match e {
            EncryptError::InsufficientSize(size) => Insufficient(Some(size)),
            _ => Insufficient(None),
        }
    }
}

impl From<Insufficient> for Option<InsufficientSizeError> {
    fn from(i: Insufficient) -> Self {
        i.0
    }
}

impl std::fmt::Debug for Insufficient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(size) => write!(f, "buffer too small, {} bytes required", size.required_size),
            None => f.write_str("the record was refused"),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> LeanTls<IO> {
    pub fn new(io: IO, config: Arc<rustls::ServerConfig>) -> Result<Self, rustls::Error> {
        Self::with_received(io, config, Vec::new())
    }

    /// A stream whose peer already sent `received` (read off the socket before, such as the
    /// ClientHello the listener reads before it lets a handshake start).
    pub fn with_received(
        io: IO,
        config: Arc<rustls::ServerConfig>,
        received: Vec<u8>,
    ) -> Result<Self, rustls::Error> {
        Ok(Self {
            io,
            conn: UnbufferedServerConnection::new(config)?,
            incoming: received,
            plaintext: Vec::new(),
            plain_pos: 0,
            outgoing: Vec::new(),
            out_pos: 0,
            handshaken: false,
            peer_closed: false,
            closed: false,
            exporter: Exporter::None,
        })
    }

    /// Completes the TLS handshake. Returns the connection's channel binding: `None` for a
    /// connection that negotiated TLS 1.2, or a server config without
    /// [`binding::ExporterSecretLog`] as its key log.
    pub async fn handshake(&mut self) -> io::Result<Option<ChannelBinding>> {
        std::future::poll_fn(|cx| self.poll_handshake(cx)).await?;
        Ok(
            match std::mem::replace(&mut self.exporter, Exporter::None) {
                Exporter::Binding(binding) => Some(binding),
                Exporter::None | Exporter::Secret(_) => None,
            },
        )
    }

    /// Whether the handshake resumed a session from a ticket (no certificate was sent).
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let next = match self.process() {
                Ok(next) => next,
                Err(e) => {
                    // The alert rustls queued goes out if the socket takes it now; the error is
                    // what the caller gets either way.
                    let _ = self.poll_write_out(cx);
                    return Poll::Ready(Err(e));
                }
            };
            if self.handshaken {
                // What is left to send (session tickets) goes out with later reads and writes.
                return Poll::Ready(Ok(()));
            }
            // Our handshake messages must reach the peer before we can expect its answer.
            ready!(self.poll_write_out(cx))?;
            match next {
                Next::PeerClosed | Next::Written => {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                Next::Read => {
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
            }
        }
    }

    /// Processes what has been received until more must be read: handshake messages are encoded
    /// into `outgoing`, application data is decrypted into `plaintext`.
    fn process(&mut self) -> io::Result<Next> {
        self.drive(None)
    }

    /// Encrypts `data` (or a close_notify, for `None`) into `outgoing`, first processing
    /// whatever the connection has pending.
    fn encrypt(&mut self, data: Option<&[u8]>) -> io::Result<()> {
        match self.drive(Some(data))? {
            Next::Written => Ok(()),
            Next::Read | Next::PeerClosed => {
                Err(io::Error::other("write before the TLS handshake completed"))
            }
        }
    }

    /// Drives the connection: encodes handshake records, decrypts application data, and — when
    /// `write` is given — encrypts it as soon as the connection may send. Returns what is needed
    /// next.
    fn drive(&mut self, mut write: Option<Option<&[u8]>>) -> io::Result<Next> {
        loop {
            let was_handshaken = self.handshaken;
            let Self {
                conn,
                incoming,
                plaintext,
                outgoing,
                handshaken,
                closed,
                peer_closed,
                exporter,
                ..
            } = self;
            if !*handshaken {
                binding::start_catching();
            }
            let status = conn.process_tls_records(incoming);
            if !*handshaken && let Some(secret) = binding::stop_catching() {
                *exporter = Exporter::Secret(secret);
            }
            let mut discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(e) => {
                    incoming.drain(..discard);
                    self.queue_alert();
                    return Err(tls_error(e));
                }
            };
            let next = match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(tls_error)?;
                        discard += record.discard;
                        plaintext.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    append(outgoing, 512, |buf| {
                        encode.encode(buf).map_err(Insufficient::from)
                    })?;
                    None
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    // The records are in `outgoing`, which is written out in order before any
                    // later data: as far as the protocol is concerned they are on their way.
                    transmit.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Next::Read),
                ConnectionState::WriteTraffic(mut traffic) => {
                    *handshaken = true;
                    match write.take() {
                        Some(Some(data)) => {
                            let hint = data.len() + 64 + data.len() / 1024;
                            append(outgoing, hint, |buf| {
                                traffic.encrypt(data, buf).map_err(Insufficient::from)
                            })?;
                            Some(Next::Written)
                        }
                        Some(None) => {
                            append(outgoing, 64, |buf| {
                                traffic.queue_close_notify(buf).map_err(Insufficient::from)
                            })?;
                            Some(Next::Written)
                        }
                        None => Some(Next::Read),
                    }
                }
                // A writer may still send after the peer closed its side.
                ConnectionState::PeerClosed if write.is_some() => {
                    *peer_closed = true;
                    None
                }
                ConnectionState::PeerClosed => Some(Next::PeerClosed),
                ConnectionState::Closed if write.is_some() => {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                ConnectionState::Closed => {
                    *closed = true;
                    Some(Next::PeerClosed)
                }
                other => {
                    return Err(io::Error::other(format!("unexpected TLS state {other:?}")));
                }
            };
            incoming.drain(..discard);
            if incoming.is_empty() {
                *incoming = Vec::new();
            }
            // Data or a close_notify can follow the client's Finished in the same read, so the
            // handshake may be over before a `WriteTraffic` state ever shows.
            if !self.handshaken && !self.conn.is_handshaking() {
                self.handshaken = true;
            }
            if self.handshaken && !was_handshaken {
                self.finish_binding();
            }
            if let Some(next) = next {
                return Ok(next);
            }
        }
    }

    /// Turns the exporter secret caught during the handshake into the channel binding.
    fn finish_binding(&mut self) {
        if let Exporter::Secret(secret) = std::mem::replace(&mut self.exporter, Exporter::None)
            && let Some(suite) = self.conn.negotiated_cipher_suite()
            && let Some(binding) = binding::derive(suite, &secret)
        {
            self.exporter = Exporter::Binding(binding);
        }
    }

    /// After rustls refused the peer's records: encodes the fatal alert it queued (if any) into
    /// `outgoing`, so the peer learns why before the connection goes.
    fn queue_alert(&mut self) {
        // Only while rustls has records queued: it hands those out before it reads any input,
        // and reading input again after an error would refuse it a second time. The buffer is
        // still what is left of the peer's bytes, never a stand-in: rustls keeps a handshake
        // message that spans records in it, and indexes into it.
        while self.conn.wants_write() {
            let status = self.conn.process_tls_records(&mut self.incoming);
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    if append(&mut self.outgoing, 64, |buf| {
                        encode.encode(buf).map_err(Insufficient::from)
                    })
                    .is_err()
                    {
                        return;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                _ => return,
            }
        }
    }

    /// Reads once from the socket into `incoming`. `Ok(0)` is end of file.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.incoming.len() > MAX_PENDING_READ {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "oversized TLS record",
            )));
        }
        let mut chunk = [0u8; READ_CHUNK];
        let mut buf = ReadBuf::new(&mut chunk);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        let n = buf.filled().len();
        self.incoming.extend_from_slice(buf.filled());
        Poll::Ready(Ok(n))
    }

    /// Writes `outgoing` to the socket; frees it once written.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.outgoing = Vec::new();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for LeanTls<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.plain_pos < this.plaintext.len() {
                let available = &this.plaintext[this.plain_pos..];
                let n = available.len().min(buf.remaining());
                buf.put_slice(&available[..n]);
                this.plain_pos += n;
                if this.plain_pos == this.plaintext.len() {
                    this.plaintext = Vec::new();
                    this.plain_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            let next = match this.process() {
                Ok(next) => next,
                Err(e) => {
                    let _ = this.poll_write_out(cx);
                    return Poll::Ready(Err(e));
                }
            };
            // Anything processing produced for the peer (tickets, alerts, key updates) goes out
            // now. A socket that cannot take it yet does not stop us from reading, and one that
            // is gone does not either: what the peer sent before it went is still to be read.
            if let Poll::Ready(Err(_)) = this.poll_write_out(cx) {
                this.outgoing = Vec::new();
                this.out_pos = 0;
            }
            if this.plain_pos < this.plaintext.len() {
                continue;
            }
            match next {
                Next::PeerClosed | Next::Written => this.peer_closed = true,
                Next::Read => {
                    if ready!(this.poll_fill(cx))? == 0 {
                        if !this.incoming.is_empty() {
                            // Cut in the middle of a record: data was lost, not just unannounced.
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the peer closed the connection in the middle of a TLS record",
                            )));
                        }
                        // The peer went without a close_notify, between records: end of stream
                        // all the same (HTTP clients do this; HTTP framing tells what was cut).
                        this.peer_closed = true;
                    }
                }
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LeanTls<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.outgoing.len() - this.out_pos > MAX_PENDING_WRITE {
            ready!(this.poll_write_out(cx))?;
        }
        this.encrypt(Some(data))?;
        if let Poll::Ready(Err(e)) = this.poll_write_out(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.closed {
            this.closed = true;
            // A polite close; if the connection is already broken there is no one to tell.
            let _ = this.encrypt(None);
        }
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

//! Target `lean_tls`: the server's TLS record driver, [`LeanTls`], fed a client's bytes as they
//! might arrive off a socket.
//!
//! The input says how the bytes arrive (read sizes, reads that are not ready yet, a socket that
//! takes writes a little at a time, the stream sent several times over) and what the client
//! sent. The server side then does what the listener and HTTP do with a connection: handshake
//! (optionally with the first read already taken off the socket, as the listener takes the
//! ClientHello), write a reply, read until the end, close. It must never panic, must finish
//! within a number of polls bounded by the bytes moved (no busy loop), and — when a heap probe
//! is given — must never hold more than [`HELD_LIMIT`] however long the stream.
//!
//! The server's side of the handshake is fixed ([`fixed_crypto`]), so recorded sessions replay
//! past the handshake into the record layer.
//!
//! Input layout (see [`Plan::decode`] and [`Plan::encode`]):
//! `[flags][repeat][n reads][2 bytes per read][n writes][1 byte per write][2 bytes reply][stream…]`.

pub mod fixed_crypto;
pub mod record;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use arbitrary::Unstructured;
use muster_lean_tls::LeanTls;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// What the connection may hold (its buffers and rustls's state) however long the stream: the
/// driver's own bounds (64 KiB pending read, 64 KiB pending write) and rustls's state, with room.
pub const HELD_LIMIT: usize = 512 * 1024;

/// The longest reply the server writes.
pub const MAX_REPLY: usize = 20_000;

/// Read sizes and write capacities, at most this many of each (used in turn).
const MAX_STEPS: usize = 16;

static REPLY: [u8; MAX_REPLY] = [b'r'; MAX_REPLY];

/// How the client's bytes arrive, and what the server sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'a> {
    /// Hand the first read to the stream as already received (as the listener does with the
    /// ClientHello it reads before a handshake may start).
    pub preread: bool,
    /// The stream is sent this many times back to back (1–256): a small input, a long stream.
    pub repeat: usize,
    /// Sizes of successive reads, in turn; 0 means "not ready yet" once. Empty: 4 KiB reads.
    pub reads: Vec<u16>,
    /// How many bytes successive writes take, in turn; 0 means "not ready yet" once. Empty:
    /// everything.
    pub writes: Vec<u8>,
    /// Bytes of application data the server writes after the handshake.
    pub reply: usize,
    /// What the client sent.
    pub stream: &'a [u8],
}

impl<'a> Plan<'a> {
    /// Reads a plan from fuzzer bytes. Every input is some plan: missing bytes read as zero.
    pub fn decode(data: &'a [u8]) -> Self {
        let mut u = Unstructured::new(data);
        let mut byte = || u.arbitrary::<u8>().unwrap_or(0);
        let flags = byte();
        let repeat = usize::from(byte()) + 1;
        let n_reads = usize::from(byte()) % (MAX_STEPS + 1);
        let reads = (0..n_reads)
            .map(|_| u16::from_le_bytes([byte(), byte()]))
            .collect();
        let n_writes = usize::from(byte()) % (MAX_STEPS + 1);
        let writes = (0..n_writes).map(|_| byte()).collect();
        let reply = usize::from(u16::from_le_bytes([byte(), byte()])) % (MAX_REPLY + 1);
        Self {
            preread: flags & 1 == 1,
            repeat,
            reads,
            writes,
            reply,
            stream: u.take_rest(),
        }
    }

    /// The fuzzer bytes that decode to this plan (for seeds).
    pub fn encode(&self) -> Vec<u8> {
        assert!((1..=256).contains(&self.repeat));
        assert!(self.reads.len() <= MAX_STEPS && self.writes.len() <= MAX_STEPS);
        assert!(self.reply <= MAX_REPLY);
        let mut out = vec![u8::from(self.preread), (self.repeat - 1) as u8];
        out.push(self.reads.len() as u8);
        for size in &self.reads {
            out.extend_from_slice(&size.to_le_bytes());
        }
        out.push(self.writes.len() as u8);
        out.extend_from_slice(&self.writes);
        out.extend_from_slice(&(self.reply as u16).to_le_bytes());
        out.extend_from_slice(self.stream);
        out
    }
}

/// What the server got out of a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub handshaken: bool,
    /// Application data the server read.
    pub plaintext: usize,
    /// How the conversation ended, when it ended with an error.
    pub error: Option<io::ErrorKind>,
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    run_with(data, None, &mut |_| {});
}

/// Runs one input; checks after every poll that the connection holds at most [`HELD_LIMIT`]
/// (when `heap` tells the bytes allocated now), and hands the plaintext read to `plaintext`.
pub fn run_with(
    data: &[u8],
    heap: Option<&dyn Fn() -> usize>,
    plaintext: &mut dyn FnMut(&[u8]),
) -> Outcome {
    let plan = Plan::decode(data);
    let total = plan.stream.len() * plan.repeat;
    let mut wire = Wire::new(&plan);
    let received = if plan.preread {
        wire.take_first_read()
    } else {
        Vec::new()
    };
    let baseline = heap.map(|h| h());
    let tls = LeanTls::with_received(wire, fixed_crypto::server_config(), received)
        .expect("a server connection from a good config");
    let mut outcome = Outcome::default();
    // Every poll that returns Pending is followed by one that moves at least a byte (the wire
    // is "not ready" once at a time), so a conversation that needs more polls than this is
    // spinning without progress.
    let max_polls = 2 * (total + plan.reply) + 10_000;
    let result = {
        let conversation = converse(tls, plan.reply, &mut outcome, plaintext);
        let mut conversation = std::pin::pin!(conversation);
        let mut cx = Context::from_waker(Waker::noop());
        let mut polls = 0;
        loop {
            polls += 1;
            assert!(
                polls <= max_polls,
                "lean_tls: no progress after {max_polls} polls"
            );
            let poll = conversation.as_mut().poll(&mut cx);
            if let (Some(h), Some(base)) = (heap, baseline) {
                let held = h().saturating_sub(base);
                assert!(
                    held <= HELD_LIMIT,
                    "lean_tls: the connection holds {held} bytes, more than {HELD_LIMIT}"
                );
            }
            if let Poll::Ready(result) = poll {
                break result;
            }
        }
    };
    outcome.error = result.err().map(|e| e.kind());
    outcome
}

/// What the server side does with a connection: handshake, reply, read to the end, close.
async fn converse<IO: AsyncRead + AsyncWrite + Unpin>(
    mut tls: LeanTls<IO>,
    reply: usize,
    outcome: &mut Outcome,
    plaintext: &mut dyn FnMut(&[u8]),
) -> io::Result<()> {
    tls.handshake().await?;
    outcome.handshaken = true;
    tls.write_all(&REPLY[..reply]).await?;
    tls.flush().await?;
    let mut buf = [0u8; 4096];
    loop {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        outcome.plaintext += n;
        plaintext(&buf[..n]);
    }
    tls.shutdown().await
}

/// The client's end of the socket, as the plan says it behaves. Written bytes are counted and
/// dropped.
struct Wire<'a> {
    stream: &'a [u8],
    /// Bytes of the (repeated) stream not yet delivered.
    left: usize,
    /// Where in `stream` the next byte comes from.
    pos: usize,
    reads: &'a [u16],
    next_read: usize,
    writes: &'a [u8],
    next_write: usize,
    /// The last read (or write) answered "not ready": the next one moves bytes.
    read_waited: bool,
    write_waited: bool,
}

impl<'a> Wire<'a> {
    fn new(plan: &'a Plan<'a>) -> Self {
        Self {
            stream: plan.stream,
            left: plan.stream.len() * plan.repeat,
            pos: 0,
            reads: &plan.reads,
            next_read: 0,
            writes: &plan.writes,
            next_write: 0,
            read_waited: false,
            write_waited: false,
        }
    }

    /// The next read's bytes, taken before the stream is made.
    fn take_first_read(&mut self) -> Vec<u8> {
        let size = self.next_read_size().max(1);
        let mut out = vec![0u8; size.min(self.left)];
        self.fill(&mut out);
        out
    }

    fn next_read_size(&mut self) -> usize {
        let size = if self.reads.is_empty() {
            4096
        } else {
            self.reads[self.next_read % self.reads.len()]
        };
        self.next_read += 1;
        usize::from(size)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for byte in out.iter_mut() {
            *byte = self.stream[self.pos];
            self.pos = (self.pos + 1) % self.stream.len();
        }
        self.left -= out.len();
    }
}

impl AsyncRead for Wire<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let planned = this.reads.get(this.next_read % this.reads.len().max(1));
        if planned == Some(&0) && !this.read_waited {
            this.read_waited = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.read_waited = false;
        let size = this.next_read_size().max(1).min(buf.remaining());
        let n = size.min(this.left);
        let mut chunk = [0u8; 4096];
        let mut done = 0;
        while done < n {
            let step = (n - done).min(chunk.len());
            this.fill(&mut chunk[..step]);
            buf.put_slice(&chunk[..step]);
            done += step;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Wire<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.writes.is_empty() {
            return Poll::Ready(Ok(data.len()));
        }
        let takes = this.writes[this.next_write % this.writes.len()];
        if takes == 0 && !this.write_waited {
            this.write_waited = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.write_waited = false;
        this.next_write += 1;
        Poll::Ready(Ok(data.len().min(usize::from(takes).max(1))))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_encode_to_bytes_that_decode_to_them() {
        let stream = b"\x16\x03\x01hello";
        let plan = Plan {
            preread: true,
            repeat: 3,
            reads: vec![0, 1, 700, 65535],
            writes: vec![0, 5],
            reply: 1234,
            stream,
        };
        assert_eq!(Plan::decode(&plan.encode()), plan);
    }

    #[test]
    #[should_panic(expected = "more than")]
    fn a_connection_that_holds_more_than_the_limit_fails_the_target() {
        // A heap that grows by the limit at every poll, as a connection buffering its whole
        // stream would.
        let allocated = std::cell::Cell::new(0);
        let heap = || {
            allocated.set(allocated.get() + HELD_LIMIT);
            allocated.get()
        };
        let plan = Plan {
            preread: false,
            repeat: 1,
            // Every read is "not ready" once: one poll per byte.
            reads: vec![0],
            writes: vec![],
            reply: 0,
            stream: b"\x16\x03\x01\x00\x05hello",
        };
        run_with(&plan.encode(), Some(&heap), &mut |_| {});
    }

    #[test]
    fn garbage_ends_in_an_error_without_a_handshake() {
        let plan = Plan {
            preread: false,
            repeat: 256,
            reads: vec![0, 3],
            writes: vec![],
            reply: 0,
            stream: b"GET / HTTP/1.1\r\n\r\n",
        };
        let outcome = run_with(&plan.encode(), None, &mut |_| {});
        assert!(!outcome.handshaken);
        assert!(outcome.error.is_some());
    }
}

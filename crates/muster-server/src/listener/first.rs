//! A connection's place among its source's connections waiting for their first answer, taken
//! when its first request begins to arrive and given up once that request is answered.
//!
//! The bound is on requests in progress before anyone is authenticated (a client that trickles
//! half a request holds a descriptor, and a place, until the request deadline), not on idle
//! connections: a connection that has sent nothing since its handshake is no different from a
//! kept-alive one that has sent nothing since its last answer, and hyper's header deadline
//! closes both. Taking the place at the end of the handshake, as before, counted the spare
//! connections an ordinary HTTP client's pool opens (hyper's pool keeps a connection it started
//! for a request that another freed connection then served): a pool that kept its concurrency
//! at the bound still passed it, and the connection past it was closed just after its handshake,
//! without a word ("peer closed connection without sending TLS close_notify"), one or two of
//! every 2,000 enrollments of the fleet benchmark.
//!
//! Idle connections are still bounded per source, by a wider bound of their own
//! ([`super::UNANSWERED_PER_SOURCE`]) held from the handshake until the first answer: hyper's
//! deadline closes one after 10 s, but a single source that can finish thousands of handshakes
//! in those 10 s could otherwise hold every place up to the server's cap with connections that
//! never send a byte.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::sources::{PerSource, SourceGuard};

/// Where a connection stands with its first request.
enum Phase {
    /// Nothing received since the handshake: a place among its source's unanswered connections.
    Idle { unanswered: SourceGuard },
    /// The first request is arriving or being answered: the connection also holds a place
    /// among its source's requests in progress.
    Waiting {
        _unanswered: SourceGuard,
        _place: SourceGuard,
    },
    /// The first request was answered; later requests take no place.
    Answered,
}

/// Shared by a connection's reads (which take the place) and its service (which gives it up).
pub struct FirstAnswer {
    sources: Arc<PerSource>,
    source: IpAddr,
    phase: Mutex<Phase>,
}

impl FirstAnswer {
    /// A connection whose handshake just ended: a place among its source's `unanswered`
    /// connections, or `None` (the connection is dropped) when the source has too many.
    /// `requests` bounds those whose first request is in progress.
    pub fn new(
        unanswered: &Arc<PerSource>,
        requests: &Arc<PerSource>,
        source: IpAddr,
    ) -> Option<Arc<Self>> {
        let Some(unanswered) = unanswered.try_enter(source) else {
            tracing::debug!(%source, "too many connections from one source that have not had a first answer");
            return None;
        };
        Some(Arc::new(Self {
            sources: Arc::clone(requests),
            source,
            phase: Mutex::new(Phase::Idle { unanswered }),
        }))
    }

    /// The first request has begun to arrive: take a place, or say there is none.
    fn arriving(&self) -> io::Result<()> {
        let mut phase = self.lock();
        if matches!(*phase, Phase::Idle { .. }) {
            let Some(guard) = self.sources.try_enter(self.source) else {
                tracing::debug!(source = %self.source, "too many connections from one source waiting for their first answer");
                return Err(io::Error::other(
                    "too many connections from this source are waiting for their first answer",
                ));
            };
            let Phase::Idle { unanswered } = std::mem::replace(&mut *phase, Phase::Answered) else {
                unreachable!("matched Idle above, under the same lock")
            };
            *phase = Phase::Waiting {
                _unanswered: unanswered,
                _place: guard,
            };
        }
        Ok(())
    }

    /// The first request was answered: give the place up.
    pub fn answered(&self) {
        *self.lock() = Phase::Answered;
    }

    fn is_answered(&self) -> bool {
        matches!(*self.lock(), Phase::Answered)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection's stream that takes its [`FirstAnswer`] place when the first bytes arrive. Once
/// the first answer is given it lets go of the shared state (an upgraded control channel keeps
/// this wrapper for its whole life: a pointer, not the state).
pub struct FirstRead<IO> {
    io: IO,
    first: Option<Arc<FirstAnswer>>,
}

impl<IO> FirstRead<IO> {
    pub fn new(io: IO, first: Arc<FirstAnswer>) -> Self {
        Self {
            io,
            first: Some(first),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FirstRead<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Some(first) = &this.first {
            if first.is_answered() {
                this.first = None;
            } else if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                first.arriving()?;
            }
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FirstRead<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
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
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Connections that have sent nothing hold no place; one whose request arrives takes one
    /// (and past the bound is refused), and gives it up once answered.
    #[tokio::test]
    async fn only_a_request_arriving_takes_a_place_until_it_is_answered() {
        let sources = PerSource::new(1);
        let unanswered = PerSource::new(100);
        let source: IpAddr = "10.0.0.9".parse().unwrap();
        let open = |sources: &Arc<PerSource>| {
            let (client, server) = tokio::io::duplex(64);
            let first = FirstAnswer::new(&unanswered, sources, source).unwrap();
            (client, FirstRead::new(server, Arc::clone(&first)), first)
        };
        // Idle spares: nothing received, no place taken.
        let spares: Vec<_> = (0..3).map(|_| open(&sources)).collect();
        assert_eq!(sources.sources(), 0);

        let (mut client, mut server, first) = open(&sources);
        client.write_all(b"GET /").await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(server.read(&mut buf).await.unwrap(), 5);
        assert_eq!(sources.sources(), 1, "the arriving request holds a place");

        // The bound is 1: a second request of the same source, past it, is refused.
        let (mut other, mut other_server, _other_first) = open(&sources);
        other.write_all(b"GET /").await.unwrap();
        assert!(other_server.read(&mut buf).await.is_err());

        first.answered();
        assert_eq!(
            sources.sources(),
            0,
            "an answered request gives its place up"
        );
        // Later requests on the answered connection take none.
        client.write_all(b"GET /").await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 5);
        assert!(server.first.is_none(), "the shared state is let go");
        assert_eq!(sources.sources(), 0);
        drop(spares);
    }

    /// Idle connections have a bound of their own per source, and give their place up when
    /// answered (or dropped).
    #[test]
    fn idle_connections_are_bounded_per_source() {
        let (unanswered, requests) = (PerSource::new(3), PerSource::new(1));
        let (one, other): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let held: Vec<_> = (0..3)
            .map(|_| FirstAnswer::new(&unanswered, &requests, one).expect("under the bound"))
            .collect();
        assert!(
            FirstAnswer::new(&unanswered, &requests, one).is_none(),
            "a fourth idle connection of one source"
        );
        assert!(
            FirstAnswer::new(&unanswered, &requests, other).is_some(),
            "another source is not affected"
        );
        held[0].answered();
        assert!(
            FirstAnswer::new(&unanswered, &requests, one).is_some(),
            "an answered connection gave its place up"
        );
    }
}

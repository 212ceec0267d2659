//! The TLS handshake gate: what a connection must get through before it costs the server CPU.
//!
//! 1. **ClientHello first, on its own short deadline.** The client's first record is read in
//!    full before anything else is spent on it, within [`CLIENT_HELLO_TIMEOUT`]; a source may
//!    have at most [`HELLOS_PER_SOURCE`] connections still waiting for theirs (more are closed
//!    at once; one whose ClientHello is all here already waits for nothing and is not counted,
//!    see [`hello_arrived`]). A client that sends one byte and stalls holds a descriptor for a
//!    few seconds and nothing else.
//! 2. **A permit to handshake.** At most [`CONCURRENT_HANDSHAKES`] handshakes run at once, so a
//!    reconnect storm is worked through quickly instead of all handshakes crawling together;
//!    and one source (an IPv4 address or an IPv6 /64) holds at most [`PERMITS_PER_SOURCE`] of
//!    them, so a source that stalls its handshakes cannot starve everyone else's. Connections
//!    wait here, accepted, for at most [`PERMIT_WAIT`].
//! 3. **The handshake itself**, with the permit, within [`HANDSHAKE_TIMEOUT`]: one round trip for
//!    an honest client.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::sources::{PerSource, SourceGuard, SourceKey};

/// How long a client has to send its whole ClientHello record.
pub const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections of one source still sending their ClientHello.
pub const HELLOS_PER_SOURCE: u32 = 64;
/// TLS handshakes in progress at once. A reconnect storm brings thousands of handshakes at the
/// same moment; run all of them concurrently and each one crawls, clients time out and retry,
/// and the storm feeds itself. A small gate lets them finish in turn, quickly.
pub const CONCURRENT_HANDSHAKES: usize = 64;
/// Handshake permits one source may hold at once.
pub const PERMITS_PER_SOURCE: usize = 16;
/// How long a connection waits for a permit (in a storm, honest clients wait here).
pub const PERMIT_WAIT: Duration = Duration::from_secs(10);
/// How long the handshake may take once it has a permit.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest ClientHello record: a TLS plaintext record carries at most 2^14 bytes.
const MAX_RECORD: usize = 16 * 1024;
const RECORD_HEADER: usize = 5;
const HANDSHAKE_RECORD: u8 = 0x16;

/// Why a connection did not get through the gate.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("too many connections from this source are still sending their ClientHello")]
    TooManyHellos,
    #[error("no ClientHello within {CLIENT_HELLO_TIMEOUT:?}")]
    HelloTimeout,
    #[error("the first record is not a TLS handshake record")]
    NotTls,
    #[error("a ClientHello record of {0} bytes is larger than TLS allows")]
    Oversized(usize),
    #[error("no handshake permit within {PERMIT_WAIT:?}")]
    PermitTimeout,
    #[error("cannot read the ClientHello: {0}")]
    Io(#[from] io::Error),
}

pub struct HandshakeGate {
    hellos: Arc<PerSource>,
    permits: Arc<Semaphore>,
    shares: Arc<Shares>,
}

impl Default for HandshakeGate {
    fn default() -> Self {
        Self {
            hellos: PerSource::new(HELLOS_PER_SOURCE),
            permits: Arc::new(Semaphore::new(CONCURRENT_HANDSHAKES)),
            shares: Arc::new(Shares::default()),
        }
    }
}

/// What a connection holds while its handshake runs: dropping it frees its place.
pub struct Permit {
    _global: OwnedSemaphorePermit,
    _share: SharePermit,
}

impl HandshakeGate {
    /// Step 1: a place among the source's connections that are sending their ClientHello.
    pub fn hello_slot(&self, source: IpAddr) -> Result<SourceGuard, Refused> {
        self.hellos.try_enter(source).ok_or(Refused::TooManyHellos)
    }

    /// Step 2: a permit to handshake, waiting in line for at most [`PERMIT_WAIT`].
    pub async fn permit(&self, source: IpAddr) -> Result<Permit, Refused> {
        tokio::time::timeout(PERMIT_WAIT, async {
            let share = Shares::acquire(&self.shares, source).await;
            let global = Arc::clone(&self.permits)
                .acquire_owned()
                .await
                .expect("the handshake semaphore is never closed");
            Permit {
                _global: global,
                _share: share,
            }
        })
        .await
        .map_err(|_| Refused::PermitTimeout)
    }

    /// Handshake permits free right now.
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// Whether the client's whole first record — a TLS handshake record, its ClientHello — is
/// already in the socket's receive queue, seen without waiting and without the runtime's
/// readiness. Such a connection waits for nothing from its client, so it needs no place among
/// its source's connections still sending their ClientHello (step 1). A fleet's reconnect storm
/// showed why: every worker sends its ClientHello with its first packet, but the server reaches
/// a fresh connection late (and its readiness a runtime turn later still), so hundreds of
/// connections of one busy source sat in step 1 with their ClientHello already there, and every
/// one past the 64th was closed. A connection that has sent only part of its record (or
/// nothing) still needs a place, so the bound on stalled ClientHellos is unchanged.
pub fn hello_arrived(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let mut header = [0u8; RECORD_HEADER];
    // SAFETY: recv writes at most `header.len()` bytes into a buffer we own; MSG_PEEK leaves
    // them queued and MSG_DONTWAIT never blocks.
    #[allow(unsafe_code)]
    let peeked = unsafe {
        libc::recv(
            fd,
            header.as_mut_ptr().cast(),
            header.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if usize::try_from(peeked) != Ok(RECORD_HEADER) || header[0] != HANDSHAKE_RECORD {
        return false;
    }
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if len > MAX_RECORD {
        return false;
    }
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int, the bytes waiting in the receive queue.
    #[allow(unsafe_code)]
    let asked = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) };
    asked == 0 && usize::try_from(queued).is_ok_and(|q| q >= RECORD_HEADER + len)
}

/// Reads the client's first record (its ClientHello) in full, within [`CLIENT_HELLO_TIMEOUT`].
pub async fn read_client_hello(stream: &mut TcpStream) -> Result<Vec<u8>, Refused> {
    tokio::time::timeout(CLIENT_HELLO_TIMEOUT, async {
        let mut record = vec![0u8; RECORD_HEADER];
        stream.read_exact(&mut record).await?;
        if record[0] != HANDSHAKE_RECORD {
            return Err(Refused::NotTls);
        }
        let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
        if len > MAX_RECORD {
            return Err(Refused::Oversized(len));
        }
        record.resize(RECORD_HEADER + len, 0);
        stream.read_exact(&mut record[RECORD_HEADER..]).await?;
        Ok(record)
    })
    .await
    .map_err(|_| Refused::HelloTimeout)?
}

/// Per-source semaphores, each alive only while someone holds or waits for it.
#[derive(Default)]
struct Shares {
    by_source: Mutex<HashMap<SourceKey, Arc<Semaphore>>>,
}

/// A place in a source's share; cleans the source's entry up when it is the last.
struct SharePermit {
    permit: Option<OwnedSemaphorePermit>,
    key: SourceKey,
    shares: Arc<Shares>,
}

impl Shares {
    async fn acquire(shares: &Arc<Shares>, source: IpAddr) -> SharePermit {
        let key = SourceKey::of(source);
        let semaphore = {
            let mut map = shares.lock();
            Arc::clone(
                map.entry(key)
                    .or_insert_with(|| Arc::new(Semaphore::new(PERMITS_PER_SOURCE))),
            )
        };
        // Until it holds a permit, the guard holds no permit but still cleans up if the wait
        // is abandoned (the caller's timeout drops this future).
        let mut guard = SharePermit {
            permit: None,
            key,
            shares: Arc::clone(shares),
        };
        guard.permit = Some(
            semaphore
                .acquire_owned()
                .await
                .expect("a share semaphore is never closed"),
        );
        guard
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SourceKey, Arc<Semaphore>>> {
        self.by_source.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for SharePermit {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut map = self.shares.lock();
        // Only the map's own reference left (waiters and holders each hold one): nobody needs
        // this source's entry any more.
        if map
            .get(&self.key)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_source_gets_its_share_of_permits_and_others_still_get_theirs() {
        let gate = HandshakeGate::default();
        let greedy: IpAddr = "10.0.0.66".parse().unwrap();
        let mut held = Vec::new();
        for _ in 0..PERMITS_PER_SOURCE {
            held.push(gate.permit(greedy).await.unwrap());
        }
        // The greedy source's next one waits its turn...
        assert!(matches!(
            gate.permit(greedy).await,
            Err(Refused::PermitTimeout)
        ));
        // ...while another source goes straight through.
        let honest: IpAddr = "10.0.0.7".parse().unwrap();
        let permit = tokio::time::timeout(Duration::from_millis(1), gate.permit(honest))
            .await
            .expect("an honest source does not wait behind a greedy one");
        assert!(permit.is_ok());
        drop(permit);
        drop(held);
        assert_eq!(gate.available(), CONCURRENT_HANDSHAKES);
        assert!(
            gate.shares.lock().is_empty(),
            "no entry is left for sources with nothing in progress"
        );
    }

    /// Only a whole handshake record counts as arrived: one byte, a header, or a record short
    /// of its stated length (what a stalling client sends) does not, and neither does plain
    /// HTTP.
    #[tokio::test]
    async fn only_a_whole_client_hello_record_has_arrived() {
        use tokio::io::AsyncWriteExt;
        async fn pair() -> (TcpStream, TcpStream) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            (client, listener.accept().await.unwrap().0)
        }
        let record = |len: u16| {
            let mut r = vec![HANDSHAKE_RECORD, 3, 1];
            r.extend_from_slice(&len.to_be_bytes());
            r
        };

        let (mut client, server) = pair().await;
        assert!(!hello_arrived(&server), "nothing sent yet");
        client.write_all(&record(300)).await.unwrap();
        client.write_all(&[1; 299]).await.unwrap();
        assert!(!hello_arrived(&server), "one byte short of the record");
        client.write_all(&[1]).await.unwrap();
        // Loopback delivers at once, but no deadline is assumed: wait until it is there.
        while !hello_arrived(&server) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        let (mut client, server) = pair().await;
        client.write_all(&[HANDSHAKE_RECORD]).await.unwrap();
        assert!(!hello_arrived(&server), "the one-byte stall");

        let (mut client, server) = pair().await;
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(!hello_arrived(&server), "plain HTTP");
    }

    #[test]
    fn a_source_has_a_bounded_number_of_connections_sending_their_hello() {
        let gate = HandshakeGate::default();
        let source: IpAddr = "10.0.0.66".parse().unwrap();
        let slots: Vec<_> = (0..HELLOS_PER_SOURCE)
            .map(|_| gate.hello_slot(source).unwrap())
            .collect();
        assert!(matches!(
            gate.hello_slot(source),
            Err(Refused::TooManyHellos)
        ));
        drop(slots);
        assert!(gate.hello_slot(source).is_ok());
    }
}

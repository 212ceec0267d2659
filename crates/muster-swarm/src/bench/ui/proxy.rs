//! A TCP proxy that counts the bytes it carries, between the browser and the server.
//!
//! The browser cannot say how many bytes a live stream (`EventSource`) has received: the
//! Resource Timing entry of a request appears only when it ends, and the stream does not end. So
//! the page is loaded through this proxy and every byte each way is counted, on the wire: TLS
//! records, HTTP headers and bodies as sent (compressed where the server compressed them), every
//! connection the browser opens.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
pub struct Counts {
    /// Server → browser.
    pub down: AtomicU64,
    /// Browser → server.
    pub up: AtomicU64,
    /// Connections the browser opened.
    pub connections: AtomicU64,
}

/// Bytes each way at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub down: u64,
    pub up: u64,
    pub connections: u64,
}

impl std::ops::Sub for Snapshot {
    type Output = Snapshot;
    fn sub(self, before: Snapshot) -> Snapshot {
        Snapshot {
            down: self.down - before.down,
            up: self.up - before.up,
            connections: self.connections - before.connections,
        }
    }
}

pub struct CountingProxy {
    pub port: u16,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    /// Listens on `127.0.0.1:<free port>` and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let counts = Arc::new(Counts::default());
        let task = tokio::spawn({
            let counts = Arc::clone(&counts);
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    counts.connections.fetch_add(1, Ordering::Relaxed);
                    let counts = Arc::clone(&counts);
                    tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(upstream).await {
                            carry(client, server, &counts).await;
                        }
                    });
                }
            }
        });
        Ok(Self { port, counts, task })
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            down: self.counts.down.load(Ordering::Relaxed),
            up: self.counts.up.load(Ordering::Relaxed),
            connections: self.counts.connections.load(Ordering::Relaxed),
        }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn carry(client: TcpStream, server: TcpStream, counts: &Counts) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = pump(&mut client_read, &mut server_write, &counts.up);
    let down = pump(&mut server_read, &mut client_write, &counts.down);
    // Either side closing ends the connection.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

async fn pump(
    from: &mut (impl AsyncReadExt + Unpin),
    to: &mut (impl AsyncWriteExt + Unpin),
    count: &AtomicU64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
    let _ = to.shutdown().await;
}

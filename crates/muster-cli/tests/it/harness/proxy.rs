//! A TCP proxy between workers and the server, in the test process, that fails on demand: it can
//! cut every connection it carries (a network blip) and stop accepting new ones (the server's
//! address is unreachable) until told to start again, on the same port.
//!
//! It runs on its own small tokio runtime, so the synchronous tests drive it with plain calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

struct Shared {
    upstream: SocketAddr,
    /// Bumped to cut every open connection.
    cut: watch::Sender<u64>,
    /// Whether the proxy should listen.
    accepting: watch::Sender<bool>,
    /// Whether it is listening right now.
    listening: AtomicBool,
    /// While set, new connections are accepted and then held, silent, forever: a load balancer
    /// whose backend is gone.
    blackhole: AtomicBool,
    accepted: AtomicUsize,
    open: AtomicUsize,
}

pub struct Proxy {
    runtime: Option<tokio::runtime::Runtime>,
    port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on `127.0.0.1:<free port>` and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream,
            cut: watch::channel(0).0,
            accepting: watch::channel(true).0,
            listening: AtomicBool::new(true),
            blackhole: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
        });
        // Subscribed here, not in the task: a `stop_accepting` right after `start` must not be
        // missed by a task that has not run yet.
        let accepting = shared.accepting.subscribe();
        runtime.spawn(accept_loop(listener, port, accepting, Arc::clone(&shared)));
        Self {
            runtime: Some(runtime),
            port,
            shared,
        }
    }

    /// The URL a worker uses to reach the server through this proxy.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections open right now.
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Drops every connection it carries, on both sides, at once.
    pub fn cut(&self) {
        self.shared.cut.send_modify(|n| *n += 1);
    }

    /// Closes the listening socket: new connections are refused until [`Proxy::start_accepting`].
    /// Connections already open are left alone (combine with [`Proxy::cut`]).
    pub fn stop_accepting(&self) {
        self.shared.accepting.send_replace(false);
        self.wait_listening(false);
    }

    /// From now on, accepts connections but never forwards them nor closes them (until the
    /// proxy is dropped). Connections already open are left alone.
    pub fn blackhole(&self, on: bool) {
        self.shared.blackhole.store(on, Ordering::SeqCst);
    }

    /// Listens again, on the same port.
    pub fn start_accepting(&self) {
        self.shared.accepting.send_replace(true);
        self.wait_listening(true);
    }

    fn wait_listening(&self, want: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.shared.listening.load(Ordering::SeqCst) != want {
            assert!(
                Instant::now() < deadline,
                "the proxy did not {} listening",
                if want { "start" } else { "stop" }
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn bind_again(port: u16) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(128)
}

async fn accept_loop(
    first: TcpListener,
    port: u16,
    mut accepting: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    let mut listener = Some(first);
    loop {
        match listener.take() {
            Some(l) => {
                shared.listening.store(true, Ordering::SeqCst);
                loop {
                    tokio::select! {
                        accepted = l.accept() => {
                            if let Ok((client, _)) = accepted {
                                shared.accepted.fetch_add(1, Ordering::SeqCst);
                                tokio::spawn(forward(client, Arc::clone(&shared)));
                            }
                        }
                        changed = accepting.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            if !*accepting.borrow_and_update() {
                                break;
                            }
                        }
                    }
                }
                drop(l);
                shared.listening.store(false, Ordering::SeqCst);
            }
            None => {
                // Wait to be told to listen again, then bind the same port.
                while !*accepting.borrow_and_update() {
                    if accepting.changed().await.is_err() {
                        return;
                    }
                }
                loop {
                    match bind_again(port) {
                        Ok(l) => {
                            listener = Some(l);
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
        }
    }
}

struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn forward(mut client: TcpStream, shared: Arc<Shared>) {
    shared.open.fetch_add(1, Ordering::SeqCst);
    let _guard = OpenGuard(Arc::clone(&shared));
    if shared.blackhole.load(Ordering::SeqCst) {
        // Hold the socket open, silent, until the runtime is dropped with the proxy.
        std::future::pending::<()>().await;
        drop(client);
        return;
    }
    // Subscribe before anything else so a cut from now on is seen.
    let mut cut = shared.cut.subscribe();
    let Ok(mut server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.changed() => {}
    }
    // Dropping both streams closes both sides.
}

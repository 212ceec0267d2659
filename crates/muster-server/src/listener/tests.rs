use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::sync::{Semaphore, watch};

use super::serve_http;
use crate::sources::PerSource;

/// A router whose handlers answer only when `answer` gets a permit, and count themselves in
/// `called` first.
fn held_router(answer: Arc<Semaphore>, called: Arc<Semaphore>) -> Router {
    let handler = move || {
        let (answer, called) = (Arc::clone(&answer), Arc::clone(&called));
        async move {
            called.add_permits(1);
            answer.acquire().await.expect("open").forget();
            "ok"
        }
    };
    Router::new()
        .route("/wait", get(handler.clone()))
        .route("/wait", post(handler))
}

/// One connection of `source` served over an in-memory pipe, holding its place in `first`.
fn connection(
    first: &Arc<PerSource>,
    source: SocketAddr,
    app: &Router,
    shutdown: &watch::Receiver<bool>,
) -> Option<DuplexStream> {
    let slot = first.try_enter(source.ip())?;
    let (client, server) = tokio::io::duplex(4096);
    tokio::spawn(serve_http(
        TokioIo::new(server),
        source,
        None,
        slot,
        app.clone(),
        shutdown.clone(),
    ));
    Some(client)
}

/// After a replica's death thousands of its workers send their connect request (a GET, no body)
/// to a survivor at once, from few addresses, and wait for admission in the database. Holding
/// their places until answered closed every one past the 64th of a source after its TLS
/// handshake. A request that is all in waits for the server, not its client: it gives its place
/// up at once, while one still sending its body keeps it until answered.
#[tokio::test]
async fn a_request_that_is_all_in_gives_up_its_place_before_it_is_answered() {
    let first = PerSource::new(64);
    let source: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let (answer, called) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let app = held_router(Arc::clone(&answer), Arc::clone(&called));
    let (_stop, shutdown) = watch::channel(false);

    // Three times the bound, all waiting for their answer at once.
    let mut clients = Vec::new();
    for i in 0..192 {
        let mut client = connection(&first, source, &app, &shutdown)
            .unwrap_or_else(|| panic!("connection {i} was turned away"));
        client
            .write_all(b"GET /wait HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        clients.push(client);
        // Its handler runs: the request is in and waiting for the server.
        called.acquire().await.unwrap().forget();
    }
    assert_eq!(first.sources(), 0, "complete requests hold no place");

    // A body still on its way keeps its place until it is answered.
    let mut slow = connection(&first, source, &app, &shutdown).expect("a place");
    slow.write_all(b"POST /wait HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
        .await
        .unwrap();
    called.acquire().await.unwrap().forget();
    assert_eq!(first.sources(), 1, "a request whose body is not all in keeps its place");

    // Nothing else changed: a source still has at most 64 connections sending a request.
    let mut held = vec![slow];
    while let Some(client) = connection(&first, source, &app, &shutdown) {
        held.push(client);
    }
    assert_eq!(held.len(), 64);
    answer.add_permits(1_000);
}

/// A client that gave up while its connection waited for a handshake permit is seen to have
/// left, so no handshake is spent on it; one still waiting (nothing to read) has not.
#[tokio::test]
async fn a_client_that_gave_up_is_seen_to_have_left() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    assert!(!super::client_left(&server).await, "a client that waits has not left");
    drop(client);
    // The end of stream arrives when the kernel delivers it; no deadline here.
    while !super::client_left(&server).await {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

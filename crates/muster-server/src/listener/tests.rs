use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// A client that gave up while its connection waited for a handshake permit is seen to have
/// left, so no handshake is spent on it; one still waiting (nothing to read) has not.
#[tokio::test]
async fn a_client_that_gave_up_is_seen_to_have_left() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    assert!(
        !super::client_left(&server).await,
        "a client that waits has not left"
    );
    drop(client);
    // The end of stream arrives when the kernel delivers it; no deadline here.
    while !super::client_left(&server).await {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// At the usual 20,000 files a full server keeps few places for API calls: 19,000 workers and
/// the fleet benchmark's 500 more fit as control channels, and a tiny limit still keeps some.
#[test]
fn the_api_reserve_is_small_beside_a_full_fleet_and_never_zero() {
    let cap = 20_000 - super::FD_RESERVE;
    let workers = cap - super::api_reserve(cap);
    assert!(
        workers >= 19_500,
        "only {workers} control channels at 20,000 files"
    );
    assert!(
        super::api_reserve(cap) >= 64,
        "the handshake gate's 64 must fit"
    );
    assert_eq!(super::api_reserve(34), 4);
    assert_eq!(super::api_reserve(6), 3);
}

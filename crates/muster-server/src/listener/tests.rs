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

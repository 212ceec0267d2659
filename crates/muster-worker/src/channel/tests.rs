//! The loop against an in-memory server, with the clock paused.
use super::open::classify_connect_error;
use super::*;
use muster_client::Trust;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

struct Duplex {
    rx: mpsc::UnboundedReceiver<Result<Message, String>>,
    tx: mpsc::UnboundedSender<Message>,
}

impl Stream for Duplex {
    type Item = Result<Message, String>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Sink<Message> for Duplex {
    type Error = ();
    fn poll_ready(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), ()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn start_send(self: std::pin::Pin<&mut Self>, item: Message) -> Result<(), ()> {
        self.tx.send(item).map_err(|_| ())
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), ()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), ()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

struct Server {
    to_worker: mpsc::UnboundedSender<Result<Message, String>>,
    from_worker: mpsc::UnboundedReceiver<Message>,
}

fn pair() -> (Duplex, Server) {
    let (to_worker, rx) = mpsc::unbounded_channel();
    let (tx, from_worker) = mpsc::unbounded_channel();
    (
        Duplex { rx, tx },
        Server {
            to_worker,
            from_worker,
        },
    )
}

fn welcome() -> Message {
    let w = ServerMessage::Welcome(Welcome {
        worker_id: "w".into(),
        name: "n".into(),
        heartbeat_ms: 5000,
        idle_timeout_ms: 15000,
        expires_at: None,
        ticket: None,
    });
    Message::Text(serde_json::to_string(&w).unwrap().into())
}

fn close_frame(code: CloseCode, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: u16::from(code).into(),
        reason: reason.into(),
    }))
}

async fn run_with(server_script: Vec<Message>) -> (ChannelEnd, Server) {
    let (socket, server) = pair();
    for m in server_script {
        server.to_worker.send(Ok(m)).unwrap();
    }
    let (_tx, mut shutdown) = watch::channel(false);
    let end = run(socket, &mut shutdown, &mut Quiet, None, None).await;
    (end, server)
}

#[tokio::test(start_paused = true)]
async fn permanent_close_codes_map_to_exit_codes() {
    for (close_code, exit_code) in [
        (CloseCode::Revoked, 5),
        (CloseCode::Expired, 6),
        (CloseCode::Superseded, 4),
        (CloseCode::Removed, 4),
        (CloseCode::Replaced, 4),
    ] {
        let (end, _) = run_with(vec![welcome(), close_frame(close_code, "x")]).await;
        match end {
            ChannelEnd::Stop(error) => {
                assert_eq!(error.exit_code(), exit_code, "close {close_code}");
            }
            other => panic!("close {close_code}: expected a stop, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn going_away_reconnects_after_the_servers_delay() {
    let reconnect = ServerMessage::Reconnect {
        after_ms: 1234,
        reason: "restart".into(),
    };
    let script = vec![
        welcome(),
        Message::Text(serde_json::to_string(&reconnect).unwrap().into()),
        close_frame(CloseCode::GoingAway, "bye"),
    ];
    let (end, _) = run_with(script).await;
    assert_eq!(
        end,
        ChannelEnd::Lost {
            reason: "bye".into(),
            after: Some(Duration::from_millis(1234)),
            welcomed: true
        }
    );
}

fn http_answer(status: u16, wrong_scheme: bool, body: &str) -> tungstenite::Error {
    let mut response = tungstenite::http::Response::builder().status(status);
    if wrong_scheme {
        response = response.header("x-muster-wrong-scheme", "1");
    }
    let body = (!body.is_empty()).then(|| body.as_bytes().to_vec());
    tungstenite::Error::Http(Box::new(response.body(body).unwrap()))
}

#[test]
fn refused_upgrades_are_classified_and_read_as_one_line_with_a_hint() {
    let trust = Trust::Fingerprint([0; 32]);
    let endpoint = Endpoint::new("https://muster.example:7443", &trust).unwrap();
    let plain = Endpoint::new("http://muster.example:7443", &trust).unwrap();
    let refusal = r#"{"error":{"code":"worker_revoked","message":"worker `w` was revoked","hint":"enroll again"}}"#;
    let cases = [
        (
            "wrong scheme",
            classify_connect_error(&plain, http_answer(400, true, "")),
        ),
        (
            "not muster",
            classify_connect_error(&endpoint, http_answer(404, false, "")),
        ),
        (
            "refused",
            classify_connect_error(&endpoint, http_answer(403, false, refusal)),
        ),
    ];
    let lines: Vec<String> = cases
        .into_iter()
        .map(|(what, failure)| match failure {
            Failure::Stop(error) => format!("{what}: (exit {}) {error}", error.exit_code()),
            Failure::Retry { reason, .. } => panic!("{what}: retried ({reason})"),
        })
        .collect();
    insta::assert_snapshot!(lines.join("\n"));
    assert!(matches!(
        classify_connect_error(&endpoint, http_answer(502, false, "")),
        Failure::Retry { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_close_code_muster_does_not_send_reconnects() {
    let (end, _) = run_with(vec![welcome(), close_frame(CloseCode::Other(4999), "")]).await;
    assert_eq!(
        end,
        ChannelEnd::Lost {
            reason: "the server closed the channel (code 4999)".into(),
            after: None,
            welcomed: true
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_is_noticed_at_the_idle_timeout_after_heartbeats() {
    let (socket, mut server) = pair();
    server.to_worker.send(Ok(welcome())).unwrap();
    let (_tx, mut shutdown) = watch::channel(false);
    let started = Instant::now();
    let end = run(socket, &mut shutdown, &mut Quiet, None, None).await;
    assert!(
        matches!(end, ChannelEnd::Lost { welcomed: true, .. }),
        "{end:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(15));
    let mut pings = 0;
    while let Ok(m) = server.from_worker.try_recv() {
        assert!(matches!(m, Message::Ping(_)));
        pings += 1;
    }
    assert_eq!(pings, 2, "pings at 5 s and 10 s");
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_politely() {
    let (socket, mut server) = pair();
    server.to_worker.send(Ok(welcome())).unwrap();
    let (tx, mut shutdown) = watch::channel(false);
    let task =
        tokio::spawn(async move { run(socket, &mut shutdown, &mut Quiet, None, None).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    tx.send(true).unwrap();
    assert_eq!(task.await.unwrap(), ChannelEnd::Shutdown);
    assert!(matches!(
        server.from_worker.recv().await,
        Some(Message::Close(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn no_welcome_is_a_lost_channel_not_a_stop() {
    let (socket, _server) = pair();
    let (_tx, mut shutdown) = watch::channel(false);
    let end = run(socket, &mut shutdown, &mut Quiet, None, None).await;
    assert!(
        matches!(
            end,
            ChannelEnd::Lost {
                welcomed: false,
                ..
            }
        ),
        "{end:?}"
    );
}

//! The server side of one control channel.
//!
//! The loop is generic over any `Stream + Sink` of WebSocket messages, so its behaviour —
//! heartbeats, the idle timeout, the expiry deadline, commands from the registry — is tested
//! with in-memory channels and tokio's paused clock, not only over real sockets. (Over 400
//! lines because those tests live here, beside the loop they pin down: about half the file.)

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::future::BoxFuture;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use muster_core::Timestamp;
use muster_proto::control::{CloseCode, ServerMessage, Welcome, WorkerMessage};
use tokio::time::{Instant, sleep, sleep_until};

use crate::clock::Clock;
use crate::control::registry::{Command, Session};
use crate::diag::metrics::CutReason;

/// What a session needs to know that is not in the [`Session`] record.
#[derive(Debug, Clone)]
pub struct SessionParams {
    pub clock: Clock,
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    /// The hard deadline of a token-enrolled worker.
    pub expires_at: Option<Timestamp>,
    /// The ticket to hand the worker in its welcome (`SEQ.VALUE`).
    pub ticket: Option<String>,
}

/// Where a session hands what the worker sends (job output and job results).
pub trait Inbound: Send + Sync {
    fn message<'a>(
        &'a self,
        session: &'a Arc<Session>,
        message: WorkerMessage,
    ) -> BoxFuture<'a, ()>;
    /// A binary frame (job output). Awaited before the next frame is read: backpressure.
    fn output<'a>(&'a self, session: &'a Arc<Session>, frame: bytes::Bytes) -> BoxFuture<'a, ()>;
}

/// Ignores everything (for sessions in tests).
pub struct Discard;

impl Inbound for Discard {
    fn message<'a>(&'a self, _: &'a Arc<Session>, _: WorkerMessage) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn output<'a>(&'a self, _: &'a Arc<Session>, _: bytes::Bytes) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Why a session ended, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// We closed it with this code.
    Closed(CloseCode),
    /// The worker closed it or the socket dropped.
    PeerGone,
    /// The worker closed it saying it is stopping ("going away", 1001): its jobs stop with it.
    WorkerStopped,
    /// Nothing arrived within the idle timeout.
    Idle,
    /// A send could not complete within the idle timeout: the worker stopped reading.
    Stalled,
}

/// How a session ended, in words for a log line: `closed by the server (revoked)`.
impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Closed(code) => {
                let why = match code {
                    CloseCode::Revoked => "revoked",
                    CloseCode::Expired => "expired",
                    CloseCode::Superseded => "superseded",
                    CloseCode::Removed => "removed",
                    CloseCode::Replaced => "replaced by a newer connection",
                    CloseCode::Suspended => "suspended",
                    CloseCode::GoingAway => "the server is shutting down",
                    CloseCode::Protocol => "protocol error",
                    CloseCode::Idle => "idle",
                    CloseCode::Other(_) => "other",
                };
                write!(f, "closed by the server: {why} ({code})")
            }
            Ended::PeerGone => f.write_str("the worker closed the connection or it dropped"),
            Ended::WorkerStopped => f.write_str("the worker stopped"),
            Ended::Idle => f.write_str("nothing heard within the idle timeout"),
            Ended::Stalled => f.write_str("the worker stopped reading what the server sent"),
        }
    }
}

/// The close code a worker sends when it stops for good (WebSocket's "going away").
const WORKER_STOPPING: u16 = 1001;

/// How long to wait for the worker's answering close frame before dropping the socket.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// The loop's own state is what every idle connection costs, so the rare paths (sending a
/// message, closing) are boxed: their futures live on the heap only while they run.
pub async fn run<S>(
    mut socket: S,
    session: Arc<Session>,
    mut params: SessionParams,
    inbound: &dyn Inbound,
) -> Ended
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Unpin,
{
    // In its own boxed future, so the welcome is not part of the loop's state.
    let idle_timeout = params.idle_timeout;
    match tokio::time::timeout(
        idle_timeout,
        Box::pin(send_welcome(&mut socket, &session, &mut params)),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(())) => return Ended::PeerGone,
        Err(_) => return Ended::Stalled,
    }

    let mut last_heard = Instant::now();
    let mut last_ping = last_heard;
    let idle = sleep((params.heartbeat * 2).min(params.idle_timeout));
    tokio::pin!(idle);
    // A worker without a deadline gets a timer that never fires in practice.
    // Only a worker with a deadline carries an expiry timer (boxed: most workers have none).
    let mut expiry = params
        .expires_at
        .map(|at| Box::pin(sleep_until(params.clock.instant_at(at))));

    loop {
        tokio::select! {
            biased;
            () = session.inbox.wait() => {
                // A close overtakes whatever was queued before it: a revoked worker is not sent
                // the job starts that were waiting for it.
                if let Some((code, reason, decided)) = session.inbox.take_close() {
                    Box::pin(close_with(&mut socket, code, reason, params.idle_timeout, decided)).await;
                    return Ended::Closed(code);
                }
                for command in session.inbox.drain() {
                    let message = match command {
                        Command::Close { code: CloseCode::GoingAway, reason, .. } => {
                            // The server is going away: what the worker sent before it read the
                            // close is still taken (its jobs' output), not dropped.
                            Box::pin(close_going_away(&mut socket, &session, inbound, reason)).await;
                            return Ended::Closed(CloseCode::GoingAway);
                        }
                        Command::Close { code, reason, decided } => {
                            Box::pin(close_with(&mut socket, code, reason, params.idle_timeout, decided)).await;
                            return Ended::Closed(code);
                        }
                        Command::Send(message) => match serde_json::to_string(&message) {
                            Ok(text) => Message::Text(text.into()),
                            Err(_) => continue,
                        },
                        Command::Probe => Message::Ping(Default::default()),
                    };
                    if let Some(ended) =
                        Box::pin(send_or_close(&mut socket, &session, message, params.idle_timeout)).await
                    {
                        return ended;
                    }
                }
            }
            () = until_expiry(&mut expiry) => {
                Box::pin(close_with(&mut socket, CloseCode::Expired, "the worker's enrollment token expired".into(), params.idle_timeout, Instant::now())).await;
                return Ended::Closed(CloseCode::Expired);
            }
            frame = socket.next() => {
                match frame {
                    Some(Ok(Message::Close(Some(frame)))) if frame.code == WORKER_STOPPING => {
                        return Ended::WorkerStopped;
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ended::PeerGone,
                    Some(Ok(message)) => {
                        // Pings are answered by the WebSocket layer; any frame proves liveness.
                        last_heard = Instant::now();
                        session.saw(params.clock.now());
                        session.heard.notify_waiters();
                        match message {
                            Message::Binary(frame) => inbound.output(&session, frame).await,
                            Message::Text(text) => match serde_json::from_str::<WorkerMessage>(text.as_str()) {
                                Ok(m) => inbound.message(&session, m).await,
                                Err(e) => tracing::debug!(worker = %session.name, error = %e, "ignoring an unknown message"),
                            },
                            _ => {}
                        }
                    }
                }
            }
            () = &mut idle => {
                let now = Instant::now();
                if now.duration_since(last_heard) >= params.idle_timeout {
                    Box::pin(close_with(&mut socket, CloseCode::Idle, "no heartbeat within the idle timeout".into(), params.idle_timeout, now)).await;
                    return Ended::Idle;
                }
                // The worker pings every heartbeat interval, and its pings keep us both alive.
                // Only after twice that much silence do we prod it ourselves: pinging on the same
                // beat as the worker would double the fleet's heartbeat traffic for nothing.
                let prod_after = params.heartbeat * 2;
                let quiet_since = last_heard.max(last_ping);
                if now.duration_since(quiet_since) >= prod_after {
                    if let Some(ended) = Box::pin(send_or_close(
                        &mut socket,
                        &session,
                        Message::Ping(Default::default()),
                        params.idle_timeout,
                    ))
                    .await
                    {
                        return ended;
                    }
                    last_ping = now;
                }
                let next_ping = last_heard.max(last_ping) + prod_after;
                idle.as_mut().reset(next_ping.min(last_heard + params.idle_timeout));
            }
        }
    }
}

/// Resolves when the worker's deadline passes; never, for a worker without one.
async fn until_expiry(expiry: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match expiry {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn send_welcome<S>(
    socket: &mut S,
    session: &Session,
    params: &mut SessionParams,
) -> Result<(), ()>
where
    S: Sink<Message> + Unpin,
{
    let welcome = ServerMessage::Welcome(Welcome {
        worker_id: session.worker_id.to_string(),
        name: session.name.to_string(),
        heartbeat_ms: millis(params.heartbeat),
        idle_timeout_ms: millis(params.idle_timeout),
        expires_at: params.expires_at.map(Timestamp::to_rfc3339),
        ticket: params.ticket.take(),
    });
    send_json(socket, &welcome).await
}

async fn send_json<S>(socket: &mut S, message: &ServerMessage) -> Result<(), ()>
where
    S: Sink<Message> + Unpin,
{
    let text = serde_json::to_string(message).map_err(|_| ())?;
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|_| ())
}

/// Sends one message, bounded by `within`; a close told to the session meanwhile overtakes it.
/// `None` when it was sent; otherwise how the session ended (the worker stopped reading, the
/// socket failed, or the session was closed without waiting for the send).
async fn send_or_close<S>(
    socket: &mut S,
    session: &Session,
    message: Message,
    within: Duration,
) -> Option<Ended>
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Unpin,
{
    let sent = tokio::time::timeout(within, socket.send(message));
    tokio::pin!(sent);
    loop {
        tokio::select! {
            biased;
            () = session.inbox.wait() => {
                if let Some((code, _, _)) = session.inbox.take_close() {
                    // The socket is busy with a send the worker is not reading: no close frame
                    // can get through it, so the connection simply goes (a cut-off all the same).
                    if let Some(reason) = CutReason::of(code) {
                        crate::diag::metrics().cutoff(reason, None);
                    }
                    return Some(Ended::Closed(code));
                }
                // Something else was queued: it waits its turn in the outer loop.
                session.inbox.rearm();
            }
            result = &mut sent => {
                return match result {
                    Ok(Ok(())) => None,
                    Ok(Err(_)) => Some(Ended::PeerGone),
                    Err(_) => Some(Ended::Stalled),
                };
            }
        }
    }
}

/// Sends the close frame of a server going away, and takes whatever the worker sent before it
/// read it (job output, a job's end) until its answering close, for at most [`CLOSE_LINGER`]:
/// the worker counts those frames as sent.
async fn close_going_away<S>(
    socket: &mut S,
    session: &Arc<Session>,
    inbound: &dyn Inbound,
    reason: String,
) where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Unpin,
{
    let frame = CloseFrame {
        code: u16::from(CloseCode::GoingAway),
        reason: reason.into(),
    };
    let sent = tokio::time::timeout(CLOSE_LINGER, socket.send(Message::Close(Some(frame)))).await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(message)) = socket.next().await {
            match message {
                Message::Close(_) => break,
                Message::Binary(frame) => inbound.output(session, frame).await,
                Message::Text(text) => {
                    if let Ok(m) = serde_json::from_str::<WorkerMessage>(text.as_str()) {
                        inbound.message(session, m).await;
                    }
                }
                _ => {}
            }
        }
    })
    .await;
}

/// Sends a close frame and waits briefly for the worker's answering close, so the close reason
/// is delivered before the TCP connection goes. A worker that does not read gets no close
/// frame: the send gives up after `within` and the connection simply goes. A close by decision
/// (a cut-off) is counted, and the time from `decided` to the frame sent observed.
async fn close_with<S>(
    socket: &mut S,
    code: CloseCode,
    reason: String,
    within: Duration,
    decided: Instant,
) where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Unpin,
{
    let frame = CloseFrame {
        code: u16::from(code),
        reason: reason.into(),
    };
    let send = socket.send(Message::Close(Some(frame)));
    let sent = matches!(
        tokio::time::timeout(within.min(CLOSE_LINGER * 5), send).await,
        Ok(Ok(()))
    );
    if let Some(reason) = CutReason::of(code) {
        crate::diag::metrics().cutoff(reason, sent.then(|| decided.elapsed()));
    }
    if !sent {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    //! The loop over in-memory channels, with tokio's clock paused: deadlines and timeouts are
    //! exact, and no test sleeps for real.
    use super::*;
    use muster_core::{Name, WorkerId};
    use tokio::sync::mpsc;

    /// The worker's end of an in-memory "socket".
    struct Pipe {
        to_server: mpsc::UnboundedSender<Result<Message, axum::Error>>,
        from_server: mpsc::UnboundedReceiver<Message>,
    }

    /// The server's end: what the worker sends comes out of `rx`; what the server sends goes to
    /// `tx`.
    struct Duplex {
        rx: mpsc::UnboundedReceiver<Result<Message, axum::Error>>,
        tx: mpsc::UnboundedSender<Message>,
        /// How many more messages the worker takes before it stops reading (`None`: no limit).
        takes: Option<usize>,
    }

    impl Stream for Duplex {
        type Item = Result<Message, axum::Error>;
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
            if self.takes == Some(0) {
                // A worker that stopped reading: its socket buffer stays full.
                return std::task::Poll::Pending;
            }
            std::task::Poll::Ready(Ok(()))
        }
        fn start_send(mut self: std::pin::Pin<&mut Self>, item: Message) -> Result<(), ()> {
            if let Some(n) = self.takes.as_mut() {
                *n = n.saturating_sub(1);
            }
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

    fn pipe() -> (Duplex, Pipe) {
        let (to_server, rx) = mpsc::unbounded_channel();
        let (tx, from_server) = mpsc::unbounded_channel();
        (
            Duplex {
                rx,
                tx,
                takes: None,
            },
            Pipe {
                to_server,
                from_server,
            },
        )
    }

    fn session(clock: &Clock) -> Arc<Session> {
        Arc::new(Session::new(
            1,
            WorkerId::parse(&"ab".repeat(16)).unwrap(),
            Name::parse("w").unwrap(),
            None,
            clock.now(),
            1,
            muster_core::Labels::new(),
        ))
    }

    fn params(clock: Clock, expires_in: Option<Duration>) -> SessionParams {
        SessionParams {
            clock,
            heartbeat: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            expires_at: expires_in.map(|d| clock.now().saturating_add(d)),
            ticket: None,
        }
    }

    fn close_code(message: Option<Message>) -> Option<CloseCode> {
        match message {
            Some(Message::Close(Some(frame))) => Some(CloseCode::from(frame.code)),
            _ => None,
        }
    }

    async fn expect_welcome(pipe: &mut Pipe) {
        match pipe.from_server.recv().await {
            Some(Message::Text(text)) => {
                assert!(text.as_str().contains("\"welcome\""), "{}", text.as_str())
            }
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// A session running over an in-memory pipe, its welcome already read.
    async fn started_session(
        clock: Clock,
        expires_in: Option<Duration>,
    ) -> (Arc<Session>, Pipe, tokio::task::JoinHandle<Ended>) {
        let (socket, mut pipe) = pipe();
        let s = session(&clock);
        let task = tokio::spawn({
            let s = Arc::clone(&s);
            async move { run(socket, s, params(clock, expires_in), &Discard).await }
        });
        expect_welcome(&mut pipe).await;
        (s, pipe, task)
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_closes_exactly_at_the_deadline() {
        let clock = Clock::starting_at(Timestamp::from_unix_millis(1_000_000));
        let started = Instant::now();
        let (_, mut pipe, task) = started_session(clock, Some(Duration::from_millis(2500))).await;
        // Keep the channel alive with worker pings so only the deadline can end it.
        let keepalive = pipe.to_server.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if keepalive
                    .send(Ok(Message::Ping(Default::default())))
                    .is_err()
                {
                    break;
                }
            }
        });
        let code = loop {
            match pipe.from_server.recv().await {
                Some(Message::Close(Some(frame))) => break CloseCode::from(frame.code),
                Some(_) => continue,
                None => panic!("closed without a close frame"),
            }
        };
        assert_eq!(code, CloseCode::Expired);
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(2500),
            "not a millisecond late"
        );
        drop(pipe.to_server);
        assert_eq!(task.await.unwrap(), Ended::Closed(CloseCode::Expired));
    }

    #[tokio::test(start_paused = true)]
    async fn a_revocation_command_closes_at_once() {
        let clock = Clock::starting_at(Timestamp::from_unix_millis(0));
        let (s, mut pipe, task) = started_session(clock, None).await;
        let before = Instant::now();
        s.close(CloseCode::Revoked, "revoked");
        assert_eq!(
            close_code(pipe.from_server.recv().await),
            Some(CloseCode::Revoked)
        );
        assert_eq!(before.elapsed(), Duration::ZERO);
        pipe.to_server.send(Ok(Message::Close(None))).unwrap();
        assert_eq!(task.await.unwrap(), Ended::Closed(CloseCode::Revoked));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_worker_is_pinged_then_dropped_at_the_idle_timeout() {
        let clock = Clock::starting_at(Timestamp::from_unix_millis(0));
        let started = Instant::now();
        let (_, mut pipe, task) = started_session(clock, None).await;
        assert!(matches!(
            pipe.from_server.recv().await,
            Some(Message::Ping(_))
        ));
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(10),
            "after twice the heartbeat"
        );
        let mut pings = 1;
        let code = loop {
            match pipe.from_server.recv().await {
                Some(Message::Ping(_)) => pings += 1,
                other => break close_code(other),
            }
        };
        assert_eq!(code, Some(CloseCode::Idle));
        assert_eq!(pings, 1, "pinged once, at 10 s");
        assert_eq!(started.elapsed(), Duration::from_secs(15));
        assert_eq!(task.await.unwrap(), Ended::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_chatty_worker_is_never_pinged_and_stays() {
        let clock = Clock::starting_at(Timestamp::from_unix_millis(0));
        let (s, mut pipe, task) = started_session(clock, None).await;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            pipe.to_server
                .send(Ok(Message::Ping(Default::default())))
                .unwrap();
        }
        tokio::task::yield_now().await;
        assert!(
            pipe.from_server.try_recv().is_err(),
            "nothing sent: the worker kept the channel alive"
        );
        assert_eq!(s.last_seen(), clock.now());
        drop(pipe.to_server);
        assert_eq!(task.await.unwrap(), Ended::PeerGone);
    }

    /// A session whose worker reads the welcome and then nothing more.
    async fn session_with_a_worker_that_stops_reading(
        clock: Clock,
    ) -> (Arc<Session>, Pipe, tokio::task::JoinHandle<Ended>) {
        let (mut socket, mut pipe) = pipe();
        socket.takes = Some(1);
        let s = session(&clock);
        let task = tokio::spawn({
            let s = Arc::clone(&s);
            async move { run(socket, s, params(clock, None), &Discard).await }
        });
        expect_welcome(&mut pipe).await;
        (s, pipe, task)
    }

    fn job_start(n: u8) -> Command {
        Command::Send(ServerMessage::JobCancel {
            id: format!("{n:016x}"),
        })
    }

    /// Before: while a send to a worker that did not read was blocked, neither the idle timer
    /// nor the inbox was polled; a revoked, frozen worker stayed connected for 48 s and more.
    #[tokio::test(start_paused = true)]
    async fn a_revocation_overtakes_sends_a_worker_does_not_read() {
        let clock = Clock::starting_at(Timestamp::from_unix_millis(0));
        let (s, _pipe, task) = session_with_a_worker_that_stops_reading(clock).await;
        for n in 0..120 {
            s.inbox.push(job_start(n));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = Instant::now();
        s.close(CloseCode::Revoked, "revoked");
        assert!(!s.takes_jobs(clock.now()), "out of placement at once");
        assert_eq!(task.await.unwrap(), Ended::Closed(CloseCode::Revoked));
        assert_eq!(
            before.elapsed(),
            Duration::ZERO,
            "not a moment waiting for the sends"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_waiting_behind_queued_sends_goes_first() {
        let clock = Clock::starting_at(Timestamp::from_unix_millis(0));
        let (s, mut pipe, task) = started_session(clock, None).await;
        // Queued together: the close is handled before the job starts, which are never sent.
        s.inbox.push(job_start(1));
        s.inbox.push(job_start(2));
        s.close(CloseCode::Revoked, "revoked");
        assert_eq!(
            close_code(pipe.from_server.recv().await),
            Some(CloseCode::Revoked)
        );
        pipe.to_server.send(Ok(Message::Close(None))).unwrap();
        assert_eq!(task.await.unwrap(), Ended::Closed(CloseCode::Revoked));
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_stops_reading_is_cut_off_within_the_idle_timeout() {
        let clock = Clock::starting_at(Timestamp::from_unix_millis(0));
        let started = Instant::now();
        let (s, _pipe, task) = session_with_a_worker_that_stops_reading(clock).await;
        s.inbox.push(job_start(1));
        assert_eq!(task.await.unwrap(), Ended::Stalled);
        assert!(
            started.elapsed() <= Duration::from_secs(15),
            "ended after {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_closing_session_takes_no_job() {
        let clock = Clock::starting_at(Timestamp::from_unix_millis(0));
        let s = session(&clock);
        let job = muster_core::job::JobId::parse("00000000000000a1").unwrap();
        assert!(s.takes_jobs(clock.now()));
        s.close(CloseCode::Revoked, "revoked");
        assert!(!s.takes_jobs(clock.now()));
        assert!(!s.reserve(&job));
    }

    #[test]
    fn a_silent_session_takes_no_new_job() {
        let clock = Clock::starting_at(Timestamp::from_unix_millis(0));
        let s = Arc::try_unwrap(session(&clock))
            .ok()
            .unwrap()
            .with_staleness(Duration::from_secs(10));
        assert!(s.takes_jobs(clock.now()));
        let later = Timestamp::from_unix_millis(10_001);
        assert!(
            !s.takes_jobs(later),
            "silent for longer than two heartbeats"
        );
        s.saw(later);
        assert!(s.takes_jobs(later));
    }
}

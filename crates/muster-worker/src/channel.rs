//! The worker's end of the control channel: opening it ([`open`]), and the loop that keeps it
//! alive.
//!
//! [`run`] is generic over any `Stream + Sink` of WebSocket messages so that its reactions — to
//! the welcome, heartbeats, silence, close codes, a shutdown — are tested in memory with tokio's
//! paused clock. [`connect`] makes the real one.

mod open;

pub use open::{ChannelOptions, Endpoint, Identity, Socket, connect, ws_config};

use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use muster_proto::control::{CloseCode, ServerMessage, Welcome};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::classify::{self, Failure};
use crate::error::WorkerError;
use crate::identity::Prover;

const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// How a channel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEnd {
    /// Gone for a reason that may pass: reconnect. `after` is the server's requested delay.
    /// `welcomed` says whether the channel got as far as the welcome (it worked for a while).
    Lost {
        reason: String,
        after: Option<Duration>,
        welcomed: bool,
    },
    /// The server ended it for good.
    Stop(WorkerError),
    /// We were asked to stop.
    Shutdown,
}

/// What the loop reports to the code around it: jobs hook in here.
pub trait Events: Send {
    fn welcomed(&mut self, _welcome: &Welcome) {}
    /// A message from the server other than the welcome.
    fn message(&mut self, _message: ServerMessage) {}
    /// The channel is gone (for any reason).
    fn lost(&mut self) {}
    /// The server sent a close frame with this code and reason (the moment it was read).
    fn closed_by_server(&mut self, _code: CloseCode, _reason: &str) {}
    /// The reconnect loop starts a connection attempt to `endpoint` (one of several replicas).
    fn connecting(&mut self, _endpoint: &Endpoint) {}
    /// The reconnect loop saw an open channel end, as `end` says.
    fn ended(&mut self, _end: &ChannelEnd) {}
    /// An attempt (to enroll or to connect) failed for a reason that may pass; the next one
    /// comes after `delay`.
    fn retrying(&mut self, _reason: &str, _delay: Duration) {}
    /// What to send first on a new channel, right after the welcome and before anything from
    /// the outbound queue: the report of the jobs this worker holds, then whatever a dead
    /// channel could not send.
    fn resume(&mut self) -> Vec<Message> {
        Vec::new()
    }
    /// A frame went out on the socket (taken from the outbound queue, or from [`Events::resume`]).
    fn sent(&mut self, _message: &Message) {}
    /// A frame could not be sent: the channel died under it. Kept for the next channel, so a
    /// job's output or end is not dropped by a reconnect.
    fn unsent(&mut self, _message: Message) {}
}

/// No-op events.
pub struct Quiet;
impl Events for Quiet {}

/// Runs an open channel until it ends. Frames from `outbound` (job output and results) are sent
/// in order; `events` hears server messages, and that the channel is gone when it ends.
/// With a `prover`, the ticket the welcome carries is saved and acknowledged.
pub async fn run<S, E>(
    socket: S,
    shutdown: &mut watch::Receiver<bool>,
    events: &mut dyn Events,
    outbound: Option<&mut mpsc::Receiver<Message>>,
    prover: Option<&Prover>,
) -> ChannelEnd
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
    E: std::fmt::Display,
{
    let end = run_inner(socket, shutdown, events, outbound, prover).await;
    events.lost();
    end
}

async fn run_inner<S, E>(
    mut socket: S,
    shutdown: &mut watch::Receiver<bool>,
    events: &mut dyn Events,
    mut outbound: Option<&mut mpsc::Receiver<Message>>,
    prover: Option<&Prover>,
) -> ChannelEnd
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
    E: std::fmt::Display,
{
    let lost = |reason: String, welcomed: bool| ChannelEnd::Lost {
        reason,
        after: None,
        welcomed,
    };
    // Frames left over from a previous channel stay queued: they belong to jobs that kept
    // running while the worker had no server, and go out once this channel has resumed them.
    // The server speaks first.
    let welcome = match tokio::time::timeout(WELCOME_TIMEOUT, socket.next()).await {
        Err(_) => return lost("the server sent no welcome".into(), false),
        Ok(None) => return lost("the server closed the connection".into(), false),
        Ok(Some(Err(e))) => return lost(format!("the connection failed: {e}"), false),
        Ok(Some(Ok(Message::Close(frame)))) => {
            report_close(events, frame.as_ref());
            return closed(frame, None, false);
        }
        Ok(Some(Ok(Message::Text(text)))) => {
            match serde_json::from_str::<ServerMessage>(text.as_str()) {
                Ok(ServerMessage::Welcome(w)) => w,
                _ => return lost("the server's first message was not a welcome".into(), false),
            }
        }
        Ok(Some(Ok(_))) => {
            return lost("the server's first message was not a welcome".into(), false);
        }
    };
    events.welcomed(&welcome);
    if let (Some(prover), Some(ticket)) = (prover, welcome.ticket.as_deref())
        && let Some(saved) = Box::pin(save_ticket(prover, ticket)).await
        && socket.send(saved).await.is_err()
    {
        return lost("the connection failed while sending".into(), true);
    }
    for message in events.resume() {
        if let Err(end) = send_tracked(&mut socket, events, message).await {
            return end;
        }
    }
    let heartbeat = Duration::from_millis(welcome.heartbeat_ms.max(100));
    let idle_timeout = Duration::from_millis(welcome.idle_timeout_ms.max(welcome.heartbeat_ms * 2));
    let mut last_heard = Instant::now();
    let mut reconnect_after: Option<Duration> = None;
    let ping = sleep(heartbeat);
    tokio::pin!(ping);
    let silence = sleep_until(last_heard + idle_timeout);
    tokio::pin!(silence);

    loop {
        tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    // "Going away" (1001): the worker is stopping, and its jobs with it, so the
                    // server need not wait for it to come back with them.
                    let frame = tungstenite::protocol::CloseFrame {
                        code: tungstenite::protocol::frame::coding::CloseCode::Away,
                        reason: "the worker is stopping".into(),
                    };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    return ChannelEnd::Shutdown;
                }
            }
            frame = socket.next() => {
                last_heard = Instant::now();
                silence.as_mut().reset(last_heard + idle_timeout);
                match frame {
                    None => return lost("the server closed the connection".into(), true),
                    Some(Err(e)) => return lost(format!("the connection failed: {e}"), true),
                    Some(Ok(Message::Close(frame))) => {
                        report_close(events, frame.as_ref());
                        return closed(frame, reconnect_after, true);
                    }
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerMessage>(text.as_str()) {
                        Ok(ServerMessage::Reconnect { after_ms, reason }) => {
                            tracing::info!(%reason, after_ms, "the server asked this worker to come back later");
                            reconnect_after = Some(Duration::from_millis(after_ms));
                        }
                        Ok(message) => events.message(message),
                        Err(e) => tracing::debug!(error = %e, "ignoring a message this worker does not understand"),
                    },
                    Some(Ok(_)) => {}
                }
            }
            Some(message) = next_outbound(&mut outbound) => {
                if let Err(end) = send_tracked(&mut socket, events, message).await {
                    return end;
                }
            }
            () = &mut silence => {
                return lost(format!("nothing heard from the server for {} s", idle_timeout.as_secs()), true);
            }
            () = &mut ping => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return lost("the connection failed while sending a heartbeat".into(), true);
                }
                ping.as_mut().reset(Instant::now() + heartbeat);
            }
        }
    }
}

/// Sends a frame of a job's (output, end, report), telling `events` whether it went out, so
/// nothing is dropped between two channels.
async fn send_tracked<S>(
    socket: &mut S,
    events: &mut dyn Events,
    message: Message,
) -> Result<(), ChannelEnd>
where
    S: Sink<Message> + Unpin,
{
    // Cheap: frames hold reference-counted buffers.
    let copy = message.clone();
    if socket.send(message).await.is_err() {
        events.unsent(copy);
        return Err(ChannelEnd::Lost {
            reason: "the connection failed while sending".into(),
            after: None,
            welcomed: true,
        });
    }
    events.sent(&copy);
    Ok(())
}

/// Saves the welcome's ticket (on disk, durably, off the async threads); the message that says
/// so, or `None` if it could not be saved — then the server is not told, and the worker presents
/// its previous ticket next time, which the server still accepts.
async fn save_ticket(prover: &Prover, encoded: &str) -> Option<Message> {
    let ticket = match muster_core::tickets::Ticket::parse(encoded) {
        Ok(ticket) => ticket,
        Err(e) => {
            tracing::warn!(error = %e, "the server sent a ticket this worker cannot read");
            return None;
        }
    };
    let seq = ticket.seq;
    let tickets = std::sync::Arc::clone(&prover.tickets);
    // A store in memory (a load generator's simulated workers) saves at once: a blocking
    // thread's hand-off would cost more than the save.
    let saved = if tickets.saves_to_disk() {
        tokio::task::spawn_blocking(move || tickets.save(&ticket)).await
    } else {
        Ok(tickets.save(&ticket))
    };
    match saved {
        Ok(Ok(())) => {
            let saved = muster_proto::control::WorkerMessage::TicketSaved { seq };
            serde_json::to_string(&saved)
                .ok()
                .map(|text| Message::Text(text.into()))
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot save this worker's ticket in its state dir");
            None
        }
        Err(_) => None,
    }
}

fn report_close(events: &mut dyn Events, frame: Option<&tungstenite::protocol::CloseFrame>) {
    let (code, reason) = close_of(frame);
    events.closed_by_server(code, reason);
}

/// The close code and reason of a close frame; a close without a frame has no status.
fn close_of(frame: Option<&tungstenite::protocol::CloseFrame>) -> (CloseCode, &str) {
    match frame {
        Some(f) => (CloseCode::from(u16::from(f.code)), f.reason.as_str()),
        None => (CloseCode::NO_STATUS, ""),
    }
}

/// The next frame to send, or never if there is no outbound queue.
async fn next_outbound(outbound: &mut Option<&mut mpsc::Receiver<Message>>) -> Option<Message> {
    match outbound {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What the worker does after the server's close frame: `classify` decides.
fn closed(
    frame: Option<tungstenite::protocol::CloseFrame>,
    after: Option<Duration>,
    welcomed: bool,
) -> ChannelEnd {
    let (code, reason) = close_of(frame.as_ref());
    match classify::from_close(code, reason) {
        Failure::Stop(error) => ChannelEnd::Stop(error),
        Failure::Retry { reason, .. } => ChannelEnd::Lost {
            reason,
            after,
            welcomed,
        },
    }
}

#[cfg(test)]
mod tests;

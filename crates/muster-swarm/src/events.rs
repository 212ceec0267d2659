//! What a swarm reports: one JSON object per line on stdout, each stamped with the wall clock in
//! microseconds at the moment it happened (not when it was written).

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// The worker enrolled with its token and holds an identity.
    Enrolled { w: String, t: u64 },
    /// TCP, TLS and the WebSocket upgrade succeeded.
    Connected { w: String, t: u64 },
    /// The server's welcome arrived: the server counts this worker as connected. `url` names
    /// the server (replica) that welcomed it, when the swarm was given several.
    Welcome {
        w: String,
        t: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    /// The server sent a close frame (the moment the worker learned it was cut off).
    CloseFrame {
        w: String,
        t: u64,
        code: u16,
        reason: String,
    },
    /// The channel ended. `class` is `lost` (the worker reconnects), `stop` (permanent, `exit`
    /// is the `muster worker` exit code) or `shutdown`.
    Closed {
        w: String,
        t: u64,
        class: String,
        exit: Option<u8>,
        reason: String,
        welcomed: bool,
    },
    /// A connection or enrollment attempt failed and will be retried.
    Retry { w: String, t: u64, reason: String },
    /// A permanent refusal: this worker stops, as `muster worker` would exit with `exit`.
    GaveUp {
        w: String,
        t: u64,
        exit: u8,
        reason: String,
    },
    /// Once a second: how many workers this process runs, holds connected, and has lost for good.
    Status {
        t: u64,
        workers: usize,
        connected: usize,
        gave_up: usize,
    },
}

/// Where events go: an unbounded queue drained by one writer, so a worker never waits on stdout.
#[derive(Clone)]
pub struct Sink(mpsc::UnboundedSender<Event>);

impl Sink {
    pub fn emit(&self, event: Event) {
        // The writer only goes away at exit, when nobody needs the event any more.
        let _ = self.0.send(event);
    }
}

/// A sink and the task that writes its events to `out`, flushing whenever the queue is empty.
pub fn writer<W>(mut out: W) -> (Sink, tokio::task::JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let task = tokio::spawn(async move {
        let mut buffer = Vec::with_capacity(64 * 1024);
        while let Some(event) = rx.recv().await {
            push_line(&mut buffer, &event);
            while let Ok(more) = rx.try_recv() {
                push_line(&mut buffer, &more);
                if buffer.len() > 60 * 1024 {
                    break;
                }
            }
            if out.write_all(&buffer).await.is_err() || out.flush().await.is_err() {
                return;
            }
            buffer.clear();
        }
    });
    (Sink(tx), task)
}

fn push_line(buffer: &mut Vec<u8>, event: &Event) {
    if serde_json::to_writer(&mut *buffer, event).is_ok() {
        buffer.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_json_lines() {
        let e = Event::CloseFrame {
            w: "r-1".into(),
            t: 5,
            code: 4001,
            reason: "revoked".into(),
        };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(
            text,
            r#"{"ev":"close_frame","w":"r-1","t":5,"code":4001,"reason":"revoked"}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
    }
}

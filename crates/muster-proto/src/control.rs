//! Messages on a worker's WebSocket control channel, and the close codes that end it.
//!
//! Text frames carry JSON [`ServerMessage`]s and [`WorkerMessage`]s. Liveness uses WebSocket
//! ping/pong frames, which both sides answer without involving these types.

use serde::{Deserialize, Serialize};

/// The first message on every accepted channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Welcome {
    pub worker_id: String,
    pub name: String,
    /// How often the worker should send a ping when the channel is otherwise quiet.
    pub heartbeat_ms: u64,
    /// After this long without hearing anything, either side treats the other as gone.
    pub idle_timeout_ms: u64,
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome(Welcome),
    /// The server is going away; come back after `after_ms` (chosen per worker, spread out so a
    /// restart does not become a stampede).
    Reconnect {
        after_ms: u64,
        reason: String,
    },
    /// Run a job.
    JobStart(JobStart),
    /// Stop a running job (kill its process group).
    JobCancel {
        id: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobStart {
    pub id: String,
    pub command: Vec<String>,
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    pub timeout_ms: Option<u64>,
}

/// How a job ended on the worker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum JobExit {
    Exited { code: i32 },
    Signalled { signal: i32 },
    TimedOut,
    Cancelled,
    SpawnFailed { error: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// A job ended. Its output frames all precede this message on the channel.
    JobFinished { id: String, exit: JobExit },
}

/// Job output travels in binary frames: `[kind][8-byte job id][payload]`, so bulk output needs no
/// JSON or base64 on the hot path.
pub mod frame {
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    const HEADER: usize = 9;

    pub fn encode(kind: u8, job: [u8; 8], payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.push(kind);
        out.extend_from_slice(&job);
        out.extend_from_slice(payload);
        out
    }

    /// `(kind, job id, payload)`, or `None` for a frame that is too short or of unknown kind.
    pub fn decode(frame: &[u8]) -> Option<(u8, [u8; 8], &[u8])> {
        if frame.len() < HEADER || !matches!(frame[0], STDOUT | STDERR) {
            return None;
        }
        let mut job = [0u8; 8];
        job.copy_from_slice(&frame[1..HEADER]);
        Some((frame[0], job, &frame[HEADER..]))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn round_trip_and_rejects_garbage() {
            let f = super::encode(super::STDERR, [7; 8], b"hello");
            assert_eq!(
                super::decode(&f),
                Some((super::STDERR, [7; 8], &b"hello"[..]))
            );
            assert_eq!(super::decode(b"short"), None);
            assert_eq!(super::decode(&super::encode(9, [0; 8], b"x")), None);
        }
    }
}

/// WebSocket close codes muster uses (the 4000–4999 range is for applications). The reason text
/// says the same in words; workers act on the code.
pub mod close {
    /// The worker (or its enrollment token) was revoked. Permanent.
    pub const REVOKED: u16 = 4001;
    /// The worker's enrollment token expired. Permanent.
    pub const EXPIRED: u16 = 4002;
    /// A newer enrollment with the same name replaced this identity. Permanent.
    pub const SUPERSEDED: u16 = 4003;
    /// An admin removed this worker. Permanent.
    pub const REMOVED: u16 = 4004;
    /// Another connection with this identity took over. Permanent for the older connection.
    pub const REPLACED: u16 = 4005;
    /// The server is shutting down; reconnect (after the delay the reason carries).
    pub const GOING_AWAY: u16 = 4010;
    /// The peer broke the protocol. Reconnect.
    pub const PROTOCOL: u16 = 4020;
    /// No frame arrived within the idle timeout. Reconnect.
    pub const IDLE: u16 = 4021;
}

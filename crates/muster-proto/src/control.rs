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
    /// The worker's next ticket (`SEQ.VALUE`): it saves it, then says so with
    /// [`WorkerMessage::TicketSaved`], and presents it when it next connects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
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
    /// The ticket of the welcome is on disk (atomically, durably): the server may count on the
    /// worker presenting it from now on.
    TicketSaved { seq: u64 },
    /// Sent first on every channel, right after the welcome: the jobs this worker holds. A
    /// worker keeps running its jobs while it has no server; the server it reports them to (any
    /// replica) takes them over, and writes off as lost any job it thought ran there that is
    /// not in the report.
    Resume {
        /// Started and not yet reported as finished: their output and `JobFinished` follow on
        /// this channel.
        running: Vec<String>,
        /// Jobs whose `JobFinished` went out on an earlier channel, which may have died before
        /// the server read it (the most recent few).
        #[serde(default)]
        ended: Vec<JobEnded>,
    },
}

/// A job's end, as repeated in [`WorkerMessage::Resume`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobEnded {
    pub id: String,
    pub exit: JobExit,
}

/// Job output travels in binary frames: `[kind][8-byte job id][payload]`, so bulk output needs no
/// JSON or base64 on the hot path.
pub mod frame {
    use crate::words::OutputStream;

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

    /// The output stream a frame of this kind carries.
    pub fn stream(kind: u8) -> OutputStream {
        match kind {
            STDOUT => OutputStream::Stdout,
            STDERR => OutputStream::Stderr,
            _ => OutputStream::Unknown,
        }
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

/// A WebSocket close code, as muster reads it: one variant per code muster sends (the 4000–4999
/// range is for applications), and `Other` for any code it does not know (the standard ones, such
/// as 1000 or 1006, or one a newer server added). The close frame's reason says the same in
/// words; workers act on the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// The worker (or its enrollment token) was revoked. Permanent.
    Revoked,
    /// The worker's enrollment token expired. Permanent.
    Expired,
    /// A newer enrollment with the same name replaced this identity. Permanent.
    Superseded,
    /// An admin removed this worker. Permanent.
    Removed,
    /// Another connection with this identity took over. Permanent for the older connection.
    Replaced,
    /// This worker's identity was used from two places at once (a copied state dir): it is
    /// suspended. Permanent.
    Suspended,
    /// The server is shutting down; reconnect (after the delay the reason carries).
    GoingAway,
    /// The peer broke the protocol. Reconnect.
    Protocol,
    /// No frame arrived within the idle timeout. Reconnect.
    Idle,
    /// A code muster does not send.
    Other(u16),
}

impl CloseCode {
    /// What a closed channel without a close frame reports (RFC 6455 "no status received").
    pub const NO_STATUS: CloseCode = CloseCode::Other(1005);
}

impl From<u16> for CloseCode {
    fn from(number: u16) -> Self {
        match number {
            4001 => CloseCode::Revoked,
            4002 => CloseCode::Expired,
            4003 => CloseCode::Superseded,
            4004 => CloseCode::Removed,
            4005 => CloseCode::Replaced,
            4008 => CloseCode::Suspended,
            4010 => CloseCode::GoingAway,
            4020 => CloseCode::Protocol,
            4021 => CloseCode::Idle,
            other => CloseCode::Other(other),
        }
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        match code {
            CloseCode::Revoked => 4001,
            CloseCode::Expired => 4002,
            CloseCode::Superseded => 4003,
            CloseCode::Removed => 4004,
            CloseCode::Replaced => 4005,
            CloseCode::Suspended => 4008,
            CloseCode::GoingAway => 4010,
            CloseCode::Protocol => 4020,
            CloseCode::Idle => 4021,
            CloseCode::Other(number) => number,
        }
    }
}

impl std::fmt::Display for CloseCode {
    /// The number, as it travels.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", u16::from(*self))
    }
}

#[cfg(test)]
mod close_code_tests {
    use super::CloseCode;

    #[test]
    fn numbers_round_trip_and_unknown_ones_are_kept() {
        for number in [4001, 4002, 4003, 4004, 4005, 4008, 4010, 4020, 4021] {
            let code = CloseCode::from(number);
            assert!(!matches!(code, CloseCode::Other(_)), "{number}");
            assert_eq!(u16::from(code), number);
        }
        assert_eq!(CloseCode::from(4001), CloseCode::Revoked);
        assert_eq!(CloseCode::from(4021), CloseCode::Idle);
        for number in [1000, 1005, 1006, 4000, 4099] {
            assert_eq!(CloseCode::from(number), CloseCode::Other(number));
            assert_eq!(u16::from(CloseCode::from(number)), number);
        }
        assert_eq!(CloseCode::Expired.to_string(), "4002");
    }
}

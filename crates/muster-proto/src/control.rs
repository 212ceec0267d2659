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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// Nothing yet: jobs add their messages here.
    Noop,
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

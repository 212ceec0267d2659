//! Target `control_message`: what arrives on a control channel. The server parses a worker's
//! text frames as [`WorkerMessage`] and its binary frames with [`frame::decode`]; the worker
//! parses the server's text frames as [`ServerMessage`]. Every parse must return, never panic;
//! what parses must survive a round trip through its own encoding, and the job ids in it must
//! be checked the way the server checks them.

use muster_core::job::JobId;
use muster_proto::control::{ServerMessage, WorkerMessage, frame};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The fuzz target.
pub fn run(data: &[u8]) {
    if let Some((kind, job, payload)) = frame::decode(data) {
        assert_eq!(
            frame::encode(kind, job, payload),
            data,
            "a frame re-encodes as itself"
        );
        let id = JobId::from_bytes(job);
        assert_eq!(
            id.to_bytes(),
            job,
            "a frame's job id survives the round trip"
        );
    }
    // Text frames are UTF-8 (the WebSocket layer checks that before anyone parses them).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(WorkerMessage::JobFinished { id, .. }) = round_trip::<WorkerMessage>(text) {
        let _ = JobId::parse(&id);
    }
    if let Some(message) = round_trip::<ServerMessage>(text) {
        match message {
            ServerMessage::JobStart(start) => {
                let _ = JobId::parse(&start.id);
            }
            ServerMessage::JobCancel { id } => {
                let _ = JobId::parse(&id);
            }
            ServerMessage::Welcome(_) | ServerMessage::Reconnect { .. } => {}
        }
    }
}

/// Parses `text`; what parses must encode and parse back to the same value.
fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(
    text: &str,
) -> Option<T> {
    let value: T = serde_json::from_str(text).ok()?;
    let encoded = serde_json::to_string(&value).expect("a parsed message encodes");
    let again: T = serde_json::from_str(&encoded).expect("an encoded message parses");
    assert_eq!(again, value, "round trip of {text:?}");
    Some(value)
}

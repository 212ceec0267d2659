//! Converting stored column values to domain values, shared by every backend. A value that does
//! not parse is reported as [`StoreError::Corrupt`], never unwrapped.

use muster_core::audit::Outcome;
use muster_core::{EnrolledVia, Labels, MachineId, Name, SecretHash, Timestamp, WorkerId};

use crate::error::{StoreError, StoreResult};

pub fn labels_to_json(labels: &Labels) -> String {
    serde_json::to_string(labels.as_map()).unwrap_or_else(|_| "{}".into())
}

pub fn labels_from_json(json: &str) -> StoreResult<Labels> {
    let map: std::collections::BTreeMap<String, String> = serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("labels `{json}`: {e}")))?;
    Labels::from_pairs(map).map_err(|e| StoreError::Corrupt(format!("labels: {e}")))
}

pub fn name(value: &str) -> StoreResult<Name> {
    Name::parse(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub fn machine(value: &str) -> StoreResult<MachineId> {
    MachineId::parse(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub fn worker_id(value: &str) -> StoreResult<WorkerId> {
    WorkerId::parse(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub fn hash(value: &str) -> StoreResult<SecretHash> {
    SecretHash::from_hex(value)
        .ok_or_else(|| StoreError::Corrupt("a stored hash is not hex".into()))
}

pub fn via(value: &str) -> StoreResult<EnrolledVia> {
    EnrolledVia::parse(value).ok_or_else(|| StoreError::Corrupt(format!("enrolled_via `{value}`")))
}

pub fn outcome(value: &str) -> StoreResult<Outcome> {
    Outcome::parse(value).ok_or_else(|| StoreError::Corrupt(format!("audit outcome `{value}`")))
}

pub fn ts(value: i64) -> Timestamp {
    Timestamp::from_unix_millis(value)
}

pub fn opt_ts(value: Option<i64>) -> Option<Timestamp> {
    value.map(Timestamp::from_unix_millis)
}

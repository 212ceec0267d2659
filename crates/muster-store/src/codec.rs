//! Converting stored column values to domain values, shared by every backend. A value that does
//! not parse is reported as [`StoreError::Corrupt`], never unwrapped.

use muster_core::audit::Outcome;
use muster_core::job::EndingKind;
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

pub fn public_key(value: &str) -> StoreResult<muster_core::identity::PublicKey> {
    muster_core::identity::PublicKey::parse(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub fn ticket_hash(value: &str) -> StoreResult<muster_core::tickets::TicketHash> {
    muster_core::tickets::TicketHash::from_hex(value)
        .map_err(|e| StoreError::Corrupt(format!("ticket hash: {e}")))
}

pub fn ticket_pending(value: &str) -> StoreResult<Vec<muster_core::tickets::TicketHash>> {
    muster_core::tickets::TicketLedger::pending_from_text(value)
        .map_err(|e| StoreError::Corrupt(format!("pending tickets: {e}")))
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

pub fn event_type(value: &str) -> StoreResult<muster_core::events::EventType> {
    muster_core::events::EventType::parse(value)
        .ok_or_else(|| StoreError::Corrupt(format!("event type `{value}`")))
}

pub fn ts(value: i64) -> Timestamp {
    Timestamp::from_unix_millis(value)
}

pub fn opt_ts(value: Option<i64>) -> Option<Timestamp> {
    value.map(Timestamp::from_unix_millis)
}

pub fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

pub fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub fn job_state(value: &str) -> StoreResult<muster_core::job::JobState> {
    muster_core::job::JobState::parse(value)
        .ok_or_else(|| StoreError::Corrupt(format!("job state `{value}`")))
}

pub fn job_ending(
    word: &str,
    exit_code: Option<i32>,
    signal: Option<i64>,
) -> StoreResult<EndingKind> {
    let signal = signal.map(|s| i32::try_from(s).unwrap_or(-1));
    EndingKind::parse(word, exit_code, signal)
        .ok_or_else(|| StoreError::Corrupt(format!("job ending `{word}`")))
}

pub fn job_id(value: &str) -> StoreResult<muster_core::job::JobId> {
    muster_core::job::JobId::parse(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A job's columns, read raw and converted once, shared by every backend.
pub struct JobColumns {
    pub id: String,
    pub command: String,
    pub env: String,
    pub target_worker: Option<String>,
    pub selector: String,
    pub timeout_ms: Option<i64>,
    pub queue_deadline: i64,
    pub state: String,
    pub worker_id: Option<String>,
    pub worker_name: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub output_bytes: i64,
    pub truncated: bool,
    pub dispatcher: Option<String>,
    pub ending: Option<String>,
    pub signal: Option<i64>,
}

pub const JOB_COLUMNS: &str = "id, command, env, target_worker, selector, timeout_ms, queue_deadline, state, \
     worker_id, worker_name, created_at, started_at, finished_at, exit_code, reason, output_bytes, truncated, \
     dispatcher, ending, signal";

impl JobColumns {
    pub fn from_job(job: &muster_core::job::Job) -> Self {
        Self {
            id: job.id.to_string(),
            command: json(&job.command),
            env: json(&job.env),
            target_worker: job.selector.worker.as_ref().map(ToString::to_string),
            selector: labels_to_json(&job.selector.labels),
            timeout_ms: job
                .timeout
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            queue_deadline: job.queue_deadline.unix_millis(),
            state: job.state.as_str().to_owned(),
            worker_id: job.worker_id.as_ref().map(ToString::to_string),
            worker_name: job.worker_name.as_ref().map(ToString::to_string),
            created_at: job.created_at.unix_millis(),
            started_at: job.started_at.map(Timestamp::unix_millis),
            finished_at: job.finished_at.map(Timestamp::unix_millis),
            exit_code: job.exit_code.map(i64::from),
            reason: job.reason.clone(),
            output_bytes: i64::try_from(job.output_bytes).unwrap_or(i64::MAX),
            truncated: job.truncated,
            dispatcher: job.dispatcher.clone(),
            ending: job.ending.map(|e| e.as_str().to_owned()),
            signal: job.ending.and_then(EndingKind::signal).map(i64::from),
        }
    }

    pub fn into_job(self) -> StoreResult<muster_core::job::Job> {
        let exit_code = self.exit_code.map(|c| i32::try_from(c).unwrap_or(-1));
        let ending = self
            .ending
            .as_deref()
            .map(|word| job_ending(word, exit_code, self.signal))
            .transpose()?;
        Ok(muster_core::job::Job {
            id: job_id(&self.id)?,
            command: from_json("job command", &self.command)?,
            env: from_json("job env", &self.env)?,
            selector: muster_core::job::Selector {
                worker: self.target_worker.as_deref().map(name).transpose()?,
                labels: labels_from_json(&self.selector)?,
            },
            timeout: self
                .timeout_ms
                .map(|ms| std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            queue_deadline: ts(self.queue_deadline),
            state: job_state(&self.state)?,
            worker_id: self.worker_id.as_deref().map(worker_id).transpose()?,
            worker_name: self.worker_name.as_deref().map(name).transpose()?,
            created_at: ts(self.created_at),
            started_at: opt_ts(self.started_at),
            finished_at: opt_ts(self.finished_at),
            exit_code,
            reason: self.reason,
            ending,
            output_bytes: u64::try_from(self.output_bytes).unwrap_or(0),
            truncated: self.truncated,
            dispatcher: self.dispatcher,
        })
    }
}

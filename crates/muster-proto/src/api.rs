//! REST bodies under `/api/v1/`. (Over 400 lines: every body of the API, each a plain struct,
//! with the few helpers they share; split by resource, the re-exported words would be too.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::words::{
    AuditOutcome, Edition, EnrolledVia, JobState, LicenseState, OutputStream, TokenState,
    WorkerStatus,
};

pub type LabelMap = BTreeMap<String, String>;

/// `GET /api/v1/health`, unauthenticated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// `GET /api/v1/challenge`, unauthenticated: a nonce to sign where the connection has no TLS to
/// bind a proof to. Valid for a minute, on every replica.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Challenge {
    pub nonce: String,
}

/// `GET /api/v1/preflight`, unauthenticated: what a worker checks before it joins (`muster
/// worker doctor`). Nothing here is secret: an enrollment attempt already tells anyone whether
/// the edition lets external workers join and whether auto-enrollment is on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Preflight {
    pub version: String,
    /// The server's clock (RFC 3339, UTC, milliseconds): the clock that decides expiry.
    pub server_time: String,
    pub edition: Edition,
    /// Whether the edition and the licence let external workers join now (seats are counted
    /// only when one joins).
    pub joining_open: bool,
    /// Whether auto-enrollment with the shared secret is on: enabled, with a secret, and its
    /// window (if any) not closed by time. A limit of enrollments is checked only when a
    /// worker enrolls.
    pub auto_enrollment: bool,
}

// ---- tokens ----

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    pub name: String,
    pub duration: String,
    #[serde(default)]
    pub labels: LabelMap,
}

/// The answer to a token creation: the only time the plaintext is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub name: String,
    /// `NAME.SECRET`.
    pub token: String,
    pub expires_at: String,
    /// A worker command line for this server, ready to paste.
    pub worker_command: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenView {
    pub name: String,
    pub state: TokenState,
    pub created_at: String,
    pub expires_at: String,
    pub bound_machine: Option<String>,
    pub enrolled_at: Option<String>,
    pub revoked_at: Option<String>,
    pub labels: LabelMap,
    /// The worker enrolled with this token, when there is one.
    #[serde(default)]
    pub worker: Option<String>,
}

// ---- workers ----

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerView {
    pub id: String,
    pub name: String,
    pub status: WorkerStatus,
    pub enrolled_via: EnrolledVia,
    pub machine_id: Option<String>,
    pub labels: LabelMap,
    pub last_seen_at: Option<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// The enrollment token, for a token-enrolled worker.
    #[serde(default)]
    pub token: Option<String>,
    /// Jobs running on the worker now, and how many it may run at once (0 when not connected).
    #[serde(default)]
    pub running_jobs: u32,
    #[serde(default)]
    pub slots: u32,
    #[serde(default)]
    pub remote_addr: Option<String>,
    /// How the connected worker confines its jobs (`None` when it is not connected).
    #[serde(default)]
    pub confinement: Option<crate::confinement::Confinement>,
    /// The server replica holding the worker's control channel (`None` when not connected).
    #[serde(default)]
    pub replica: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateWorkerRequest {
    pub name: String,
    #[serde(default)]
    pub labels: LabelMap,
}

/// The answer to creating a worker by hand: the only time its API key is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedWorker {
    pub id: String,
    pub name: String,
    pub api_key: String,
    /// A worker command line for this server with this identity, ready to paste.
    #[serde(default)]
    pub worker_command: String,
}

// ---- license ----

/// The header on an admin API answer that carries a warning for the admin (a license that
/// expires soon, or a worker prepared that cannot join); the CLI prints it on stderr.
pub const WARNING_HEADER: &str = "muster-warning";

/// A warning as a header value: visible ASCII stays, every other byte (and `%`) is
/// percent-encoded, so a licensee's name in any script survives.
pub fn encode_warning(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The warning [`encode_warning`] encoded. Control characters a hostile server might send are
/// dropped: the CLI prints this on a terminal.
pub fn decode_warning(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| value.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

/// `GET|PUT|DELETE /api/v1/license`, `POST /api/v1/license/trial`: the edition and the license
/// in force.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LicenseView {
    pub edition: Edition,
    /// `valid` in Community Edition, which never expires.
    pub state: LicenseState,
    pub licensee: Option<String>,
    /// External workers allowed; `null` for no limit (0 in Community Edition).
    pub max_workers: Option<u64>,
    /// Seats taken: external workers that exist, are not revoked, and have not expired.
    pub workers_used: u64,
    pub expires_at: Option<String>,
    /// The fingerprint (PASERK id) of the key that signed the license.
    pub issuer: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub issued_at: Option<String>,
    /// When joining closes: the end of the grace period after expiry.
    #[serde(default)]
    pub grace_ends_at: Option<String>,
    /// Whether one more external worker could join right now.
    #[serde(default)]
    pub can_join: bool,
    /// What an admin should read now, if anything.
    #[serde(default)]
    pub warning: Option<String>,
    /// When this fleet's trial started and ends (or ended), if it ever started.
    #[serde(default)]
    pub trial_started_at: Option<String>,
    #[serde(default)]
    pub trial_ends_at: Option<String>,
    /// The last external worker the license turned away: when, and what it was told.
    #[serde(default)]
    pub last_refused_at: Option<String>,
    #[serde(default)]
    pub last_refused: Option<String>,
}

/// `PUT /api/v1/license`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallLicenseRequest {
    /// The license as issued: `v4.public.…`.
    pub license: String,
}

impl std::fmt::Debug for InstallLicenseRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not a secret, but long and of no use in a log.
        f.debug_struct("InstallLicenseRequest")
            .finish_non_exhaustive()
    }
}

// ---- auto-enrollment ----

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollmentStatus {
    pub enabled: bool,
    pub secret_set_at: Option<String>,
    pub enrolled_count: u64,
    /// When the enrollment window closes by itself, if one is set.
    #[serde(default)]
    pub window_closes_at: Option<String>,
    /// How many more enrollments the window allows, if it is bounded by count.
    #[serde(default)]
    pub max_enrollments: Option<u64>,
    #[serde(default)]
    pub enrollments_in_window: u64,
    #[serde(default)]
    pub name_pattern: Option<String>,
    /// Names expected to enroll; a `worker.enrolled` event for another name says
    /// `"expected": false`.
    #[serde(default)]
    pub expected_names: Option<String>,
}

/// `POST /api/v1/enrollment/enable` and `/rotate`. Exactly one of `secret` and `generate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnableEnrollmentRequest {
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub generate: bool,
    /// Switch auto-enrollment off by itself after this long (`2h`).
    #[serde(default, rename = "for")]
    pub window: Option<String>,
    #[serde(default)]
    pub max_enrollments: Option<u64>,
    #[serde(default)]
    pub name_pattern: Option<String>,
    /// Names expected to enroll (`--expect`): others enroll too, flagged on their
    /// `worker.enrolled` event.
    #[serde(default)]
    pub expect: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnableEnrollmentResponse {
    pub status: EnrollmentStatus,
    /// Present only when the server generated the secret: shown this once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_secret: Option<String>,
    /// A worker command line for this server, ready to paste: with the generated secret when
    /// there is one, else with `SECRET` to replace.
    #[serde(default)]
    pub worker_command: String,
}

// ---- audit ----

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub remote_addr: Option<String>,
    pub outcome: AuditOutcome,
    pub detail: String,
}

// ---- events and webhooks ----

/// One event, as the event stream (`GET /api/v1/events`, the SSE `data`) and webhooks (the POST
/// body) carry it. Every event is an audit record; `id` is the same wherever it is seen, so a
/// receiver deduplicates with it (a delivery may arrive twice if the server stopped between the
/// receiver's answer and recording it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// `evt_` and the audit record's sequence number.
    pub id: String,
    /// The event type (`worker.enrolled`, …), or for an audit record that is no webhook event,
    /// its action.
    #[serde(rename = "type")]
    pub kind: String,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub remote_addr: Option<String>,
    pub outcome: AuditOutcome,
    pub detail: String,
    /// On `worker.enrolled` through the auto-enrollment secret while an expected-name pattern
    /// is set: whether the name matched it. `false` is the unfamiliar worker to alert on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<bool>,
}

/// `POST /api/v1/webhooks`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateWebhookRequest {
    /// `https://…`, or `http://` to a receiver on this host (loopback).
    pub url: String,
    /// Event types to send; empty: every event.
    #[serde(default)]
    pub events: Vec<String>,
    /// The key requests are signed with (`Muster-Signature`); write-only.
    pub secret: String,
}

impl std::fmt::Debug for CreateWebhookRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateWebhookRequest")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A webhook, as listed: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    /// Empty: every event.
    pub events: Vec<String>,
    pub created_at: String,
}

/// One event's delivery to one webhook: the delivery log's line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryView {
    pub id: i64,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed` (given up after 24 hours).
    pub state: String,
    pub attempts: u32,
    pub created_at: String,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    /// The receiver's HTTP status at the last attempt, if it answered.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
}

// ---- worker enrollment ----

/// `POST /api/v1/enroll`: a machine asks for a worker identity. Exactly one of `token` and
/// `enrollment_key` (with `name`).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub machine_id: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub enrollment_key: Option<String>,
    #[serde(default)]
    pub labels: LabelMap,
    /// The worker's Ed25519 public key (base64url), and its signature over the enrollment's
    /// proof (`muster_core::identity::Proof`, purpose `enroll`, subject the token's or the
    /// worker's name), bound to the TLS connection or to `nonce`.
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub proof: Option<String>,
    /// A server nonce (`GET /api/v1/challenge`), for a server without TLS of its own.
    #[serde(default)]
    pub nonce: Option<String>,
}

impl std::fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("machine_id", &self.machine_id)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("name", &self.name)
            .field(
                "enrollment_key",
                &self.enrollment_key.as_ref().map(|_| "<redacted>"),
            )
            .field("labels", &self.labels)
            .finish()
    }
}

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollResponse {
    pub worker_id: String,
    pub name: String,
    pub api_key: String,
    pub expires_at: Option<String>,
}

impl std::fmt::Debug for EnrollResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollResponse")
            .field("worker_id", &self.worker_id)
            .field("name", &self.name)
            .field("api_key", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

// ---- jobs ----

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SubmitJobRequest {
    pub command: Vec<String>,
    #[serde(default)]
    pub worker: Option<String>,
    #[serde(default)]
    pub labels: LabelMap,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Kill the job after this long (`10m`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Fail the job if no matching worker has a free slot within this long (default 10m).
    #[serde(default)]
    pub queue_timeout: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    pub id: String,
    pub state: JobState,
    /// The worker that runs or ran it.
    pub worker: Option<String>,
    pub exit_code: Option<i32>,
    pub command: Vec<String>,
    /// Names of the extra environment variables (values are not shown: they may be secrets).
    pub env_keys: Vec<String>,
    pub selector: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Words for people: why it ended, when there is more to say than the exit code.
    pub reason: Option<String>,
    /// How it ended, for programs (`muster job run` derives its exit code from this alone);
    /// `null` until it ends, and for jobs a server could not classify.
    #[serde(default)]
    pub ending: Option<JobEnding>,
    pub timeout_ms: Option<u64>,
    pub output_bytes: u64,
    pub output_truncated: bool,
    /// Only on the answer to a submission: who could take the job at that moment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
}

/// Who could take a job when it was submitted. When a worker connected to the replica that
/// took the request matches, both count that replica's workers (the job does not wait for one
/// to connect); when none there does, both count the whole fleet, every replica's workers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Placement {
    /// Workers connected.
    pub connected: u32,
    /// Of those, the ones the job's selector matches (busy or not): 0 means it waits for a
    /// matching worker to connect.
    pub matching: u32,
}

/// One line of `GET /api/v1/jobs/{id}/output` (newline-delimited JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    /// A piece of output, in order. `data` is base64 (output need not be UTF-8).
    Output {
        seq: u64,
        stream: OutputStream,
        data: String,
        /// When the server received it (RFC 3339, UTC); absent for output stored by a server
        /// that did not record it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    /// The follower stopped reading for a while and was skipped ahead past this many pieces of
    /// live output the server does not keep (what it keeps a follower always gets).
    Skipped { chunks: u64 },
    /// Stored output stops here: the job printed more than the server keeps.
    Truncated { kept_bytes: u64 },
    /// The job has ended (or, without follow, this is all there is so far).
    End { job: Box<JobView> },
}

/// How a job ended, as a program reads it. The job's `reason` says the same in words.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum JobEnding {
    /// The command exited with this code (0: the job succeeded).
    Exited { code: i32 },
    /// The command was killed by this signal, not by muster.
    Signalled { signal: i32 },
    /// muster killed it at its `--timeout`.
    TimedOut,
    /// No matching worker had a free slot before its queue timeout; it never started.
    NoWorker,
    /// An admin cancelled it.
    Cancelled,
    /// The worker could not start the command (not found, not executable...).
    SpawnFailed,
    /// Its worker went away while it ran.
    Lost,
    /// An ending this build does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: JobState, ending: Option<JobEnding>) -> JobView {
        JobView {
            id: "0123456789abcdef".into(),
            state,
            worker: Some("w1".into()),
            exit_code: None,
            command: vec!["sleep".into(), "9".into()],
            env_keys: vec![],
            selector: "any worker".into(),
            created_at: "2026-01-02T03:04:05Z".into(),
            started_at: None,
            finished_at: None,
            reason: None,
            ending,
            timeout_ms: None,
            output_bytes: 0,
            output_truncated: false,
            placement: None,
        }
    }

    #[test]
    fn warnings_survive_a_header_in_any_script_and_lose_control_characters() {
        let text = "the license for `Müller & Søn` expires on 2027-01-15 (in 9 days); 100%";
        let encoded = encode_warning(text);
        assert!(
            encoded.bytes().all(|b| (b' '..=b'~').contains(&b)),
            "{encoded}"
        );
        assert_eq!(decode_warning(&encoded), text);
        assert_eq!(decode_warning("a%1B[31mred%0Aline"), "a[31mredline");
        assert_eq!(decode_warning("50% off %zz"), "50% off %zz");
    }

    #[test]
    fn endings_are_tagged_by_how() {
        let cases = [
            (
                JobEnding::Exited { code: 3 },
                r#"{"how":"exited","code":3}"#,
            ),
            (
                JobEnding::Signalled { signal: 9 },
                r#"{"how":"signalled","signal":9}"#,
            ),
            (JobEnding::TimedOut, r#"{"how":"timed_out"}"#),
            (JobEnding::NoWorker, r#"{"how":"no_worker"}"#),
            (JobEnding::Cancelled, r#"{"how":"cancelled"}"#),
            (JobEnding::SpawnFailed, r#"{"how":"spawn_failed"}"#),
            (JobEnding::Lost, r#"{"how":"lost"}"#),
        ];
        for (ending, text) in cases {
            assert_eq!(serde_json::to_string(&ending).unwrap(), text);
            assert_eq!(serde_json::from_str::<JobEnding>(text).unwrap(), ending);
        }
    }

    #[test]
    fn an_ending_from_a_newer_server_reads_as_unknown() {
        let ending: JobEnding =
            serde_json::from_str(r#"{"how":"preempted","by":"scheduler"}"#).unwrap();
        assert_eq!(ending, JobEnding::Unknown);
    }

    #[test]
    fn job_views_keep_their_words_and_read_without_an_ending() {
        let view = job(JobState::Cancelled, Some(JobEnding::Cancelled));
        let value = serde_json::to_value(&view).unwrap();
        assert_eq!(value["state"], "cancelled");
        assert_eq!(value["ending"]["how"], "cancelled");

        // An older server sends no `ending`; a newer one may send a state we do not know.
        let mut old = value.clone();
        old.as_object_mut().unwrap().remove("ending");
        old["state"] = "paused".into();
        let read: JobView = serde_json::from_value(old).unwrap();
        assert_eq!(read.ending, None);
        assert_eq!(read.state, JobState::Unknown);
    }

    #[test]
    fn output_events_name_their_stream() {
        let event = JobEvent::Output {
            seq: 1,
            stream: OutputStream::Stderr,
            data: "aGk=".into(),
            at: None,
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"type":"output","seq":1,"stream":"stderr","data":"aGk="}"#
        );
    }
}

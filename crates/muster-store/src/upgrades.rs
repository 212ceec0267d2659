//! Checks that a database written by an older build reads right after the newer migrations: the
//! rows as the older build wrote them (plain SQL that runs on every backend), and what each must
//! read back as. Each backend's test file writes the rows between the migrations it already had
//! and the ones it gains.

use muster_core::job::{EndingKind, JobId};

use crate::Store;

/// A job as a build before migration 5 left it, and the ending kind migration 5 must derive
/// from its words.
struct OldJob {
    id: &'static str,
    state: &'static str,
    exit_code: Option<i32>,
    reason: Option<&'static str>,
    derived: Option<EndingKind>,
}

const fn old(
    id: &'static str,
    state: &'static str,
    exit_code: Option<i32>,
    reason: Option<&'static str>,
    derived: Option<EndingKind>,
) -> OldJob {
    OldJob {
        id,
        state,
        exit_code,
        reason,
        derived,
    }
}

const JOBS_BEFORE_ENDING_KINDS: &[OldJob] = &[
    old(
        "00000000000000b1",
        "succeeded",
        Some(0),
        None,
        Some(EndingKind::Exited(0)),
    ),
    old(
        "00000000000000b2",
        "failed",
        Some(3),
        None,
        Some(EndingKind::Exited(3)),
    ),
    old(
        "00000000000000b3",
        "failed",
        None,
        Some("killed by signal 15"),
        Some(EndingKind::Signalled(15)),
    ),
    old(
        "00000000000000b4",
        "failed",
        None,
        Some("timed out after 5s"),
        Some(EndingKind::TimedOut),
    ),
    old(
        "00000000000000b5",
        "failed",
        None,
        Some("no matching worker had a free slot within 10m"),
        Some(EndingKind::QueueTimeout),
    ),
    old(
        "00000000000000b6",
        "failed",
        None,
        Some("could not start the command: No such file or directory"),
        Some(EndingKind::SpawnFailed),
    ),
    old(
        "00000000000000b7",
        "cancelled",
        None,
        Some("cancelled"),
        Some(EndingKind::Cancelled),
    ),
    old(
        "00000000000000b8",
        "lost",
        None,
        Some("the worker disconnected"),
        Some(EndingKind::Lost),
    ),
    old(
        "00000000000000b9",
        "failed",
        None,
        Some("something new"),
        None,
    ),
    old("00000000000000ba", "running", None, None, None),
    old("00000000000000bb", "queued", None, None, None),
];

/// SQL that inserts [`JOBS_BEFORE_ENDING_KINDS`] into a schema at migration 4.
pub fn jobs_before_ending_kinds() -> String {
    let quote = |s: Option<&str>| s.map_or("NULL".to_owned(), |s| format!("'{s}'"));
    JOBS_BEFORE_ENDING_KINDS
        .iter()
        .map(|job| {
            format!(
                "INSERT INTO jobs (id, command, queue_deadline, state, created_at, exit_code, reason) \
                 VALUES ('{}', '[\"true\"]', 0, '{}', 0, {}, {});\n",
                job.id,
                job.state,
                job.exit_code.map_or("NULL".to_owned(), |c| c.to_string()),
                quote(job.reason),
            )
        })
        .collect()
}

/// Asserts that every job [`jobs_before_ending_kinds`] wrote now reads with its derived kind.
pub async fn assert_ending_kinds_derived(store: &Store) {
    for old in JOBS_BEFORE_ENDING_KINDS {
        let job_id = JobId::parse(old.id).expect("id");
        let job = store
            .read(move |tx| tx.get_job(&job_id))
            .await
            .expect("read")
            .expect("the job is still there");
        assert_eq!(job.ending, old.derived, "{} {:?}", old.state, old.reason);
    }
}

//! The exit code and the line of every failure that does not need a server to happen.

use muster_client::TrustError;
use muster_proto::{ErrorCode, ErrorDetail};

use super::*;

fn ended(state: JobState, ending: Option<JobEnding>, reason: Option<&str>) -> JobView {
    JobView {
        id: "00000000000000a1".into(),
        state,
        worker: Some("ingest-01".into()),
        exit_code: match ending {
            Some(JobEnding::Exited { code }) => Some(code),
            _ => None,
        },
        command: vec!["make".into(), "test".into()],
        env_keys: vec![],
        selector: "any worker".into(),
        created_at: "2026-03-04T11:59:00Z".into(),
        started_at: None,
        finished_at: None,
        reason: reason.map(str::to_owned),
        ending,
        timeout_ms: None,
        output_bytes: 0,
        output_truncated: false,
        placement: None,
    }
}

/// What the user sees: the exit code, and the line on stderr (none for a silent failure).
fn shown(error: &CliError) -> String {
    match error.message() {
        Some(message) => format!(
            "(exit {}) {}",
            error.exit_code(),
            line(&message, error.hint().as_deref())
        ),
        None => format!("(exit {}) silent", error.exit_code()),
    }
}

#[test]
fn job_run_exits_as_its_job_ended() {
    use JobEnding::*;
    let cases = [
        (
            JobState::Succeeded,
            Some(Exited { code: 0 }),
            JobExit::Success,
        ),
        (
            JobState::Failed,
            Some(Exited { code: 3 }),
            JobExit::Command(3),
        ),
        (
            JobState::Failed,
            Some(Exited { code: 256 }),
            JobExit::Command(1),
        ),
        (
            JobState::Failed,
            Some(Exited { code: -1 }),
            JobExit::Command(255),
        ),
        (
            JobState::Failed,
            Some(Signalled { signal: 9 }),
            JobExit::Muster(137),
        ),
        (
            JobState::Failed,
            Some(Signalled { signal: 15 }),
            JobExit::Muster(143),
        ),
        (JobState::Failed, Some(TimedOut), JobExit::Muster(124)),
        (JobState::Failed, Some(NoWorker), JobExit::Muster(125)),
        (JobState::Failed, Some(SpawnFailed), JobExit::Muster(127)),
        (JobState::Cancelled, Some(Cancelled), JobExit::Muster(130)),
        (JobState::Lost, Some(Lost), JobExit::Muster(255)),
        // From a server that sends no ending (or one this build does not know), the state.
        (JobState::Succeeded, None, JobExit::Success),
        (JobState::Cancelled, Some(Unknown), JobExit::Muster(130)),
        (JobState::Lost, None, JobExit::Muster(255)),
        (JobState::Failed, None, JobExit::Unclassified),
        (JobState::Failed, Some(Unknown), JobExit::Unclassified),
        (JobState::Unknown, None, JobExit::Unclassified),
    ];
    for (state, ending, expected) in cases {
        let job = ended(state, ending, None);
        assert_eq!(JobExit::of(&job), expected, "{state} {ending:?}");
        let code = CliError::JobEnded(Box::new(job)).exit_code();
        let want = match expected {
            JobExit::Success => 0,
            JobExit::Command(c) | JobExit::Muster(c) => c,
            JobExit::Unclassified => 1,
        };
        assert_eq!(code, want, "{state} {ending:?}");
    }
}

#[test]
fn the_reason_is_for_people_only() {
    // Words that once decided the exit code decide nothing now.
    let misleading = ended(
        JobState::Failed,
        Some(JobEnding::SpawnFailed),
        Some("timed out after 5s"),
    );
    assert_eq!(JobExit::of(&misleading), JobExit::Muster(127));
}

#[test]
fn job_endings_read_as_one_line_with_a_hint() {
    use JobEnding::*;
    let cases = [
        ended(JobState::Failed, Some(Exited { code: 3 }), None),
        ended(
            JobState::Failed,
            Some(Signalled { signal: 9 }),
            Some("killed by signal 9"),
        ),
        ended(JobState::Failed, Some(TimedOut), Some("timed out after 5s")),
        ended(
            JobState::Failed,
            Some(NoWorker),
            Some("no matching worker had a free slot within 10m"),
        ),
        ended(
            JobState::Failed,
            Some(SpawnFailed),
            Some("could not start the command: No such file or directory (os error 2)"),
        ),
        ended(JobState::Cancelled, Some(Cancelled), Some("cancelled")),
        ended(
            JobState::Lost,
            Some(Lost),
            Some("the worker disconnected while the job ran"),
        ),
        ended(JobState::Lost, Some(Lost), None),
        ended(JobState::Failed, None, Some("something new")),
    ];
    let lines: Vec<String> = cases
        .into_iter()
        .map(|job| shown(&CliError::JobEnded(Box::new(job))))
        .collect();
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn local_failures_read_as_one_line_with_a_hint() {
    let refused = ErrorDetail {
        code: ErrorCode::TokenExpired,
        message: "enrollment token `short` has expired; it cannot be revoked".into(),
        hint: Some("mint a new one with `muster token create`".into()),
        retry_after_ms: None,
    };
    let errors = [
        CliError::usage(
            "`--env X` is not KEY=VALUE",
            "for example `--env LOG_LEVEL=debug`",
        ),
        CliError::failed(
            "no admin credential in `/srv/muster`",
            "pass `--admin-token`",
        ),
        CliError::Client(ClientError::Api {
            status: 409,
            detail: refused,
        }),
        CliError::Client(ClientError::Unreachable {
            url: "https://127.0.0.1:7443".into(),
            reason: "Connection refused (os error 111)".into(),
        }),
        CliError::Client(ClientError::UntrustedCertificate {
            url: "https://muster.example:7443".into(),
        }),
        CliError::Client(ClientError::BadUrl("muster.example".into())),
        CliError::Client(ClientError::Trust(TrustError::BadFingerprint(
            "sha256:zz".into(),
        ))),
        CliError::Client(ClientError::Protocol(
            "HTTP 502 without a muster error body".into(),
        )),
        CliError::Discover(DiscoverError::NoServerFile("/srv/muster".into())),
        CliError::StoppedFollowing {
            job: "00000000000000a1".into(),
        },
        CliError::Worker(WorkerError::config(
            "no server URL is configured",
            "pass `--url https://HOST:PORT` or set MUSTER_URL",
        )),
    ];
    let lines: Vec<String> = errors.iter().map(shown).collect();
    insta::assert_snapshot!(lines.join("\n"));
}

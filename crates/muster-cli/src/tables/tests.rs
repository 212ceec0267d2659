//! Every table, as printed, for a small fleet at a fixed `now`.

use muster_proto::api::{AuditOutcome, EnrolledVia, JobEnding, JobState, LabelMap, TokenState};

use super::*;

const NOW: &str = "2026-03-04T12:00:00Z";

fn now() -> Timestamp {
    Timestamp::parse_rfc3339(NOW).unwrap()
}

fn label_map(pairs: &[(&str, &str)]) -> LabelMap {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn token_view(name: &str, state: TokenState) -> TokenView {
    TokenView {
        name: name.into(),
        state,
        created_at: "2026-03-04T10:00:00.123Z".into(),
        expires_at: "2026-03-05T10:00:00.123Z".into(),
        bound_machine: None,
        enrolled_at: None,
        revoked_at: None,
        labels: LabelMap::new(),
        worker: None,
    }
}

fn some_tokens() -> Vec<TokenView> {
    let mut enrolled = token_view("ingest-01", TokenState::Enrolled);
    enrolled.bound_machine = Some("m-0123456789abcdef".into());
    enrolled.enrolled_at = Some("2026-03-04T11:59:30Z".into());
    enrolled.worker = Some("ingest-01".into());
    enrolled.labels = label_map(&[("region", "eu"), ("tier", "gold")]);
    let mut expired = token_view("old", TokenState::Expired);
    expired.expires_at = "2026-02-01T00:00:00Z".into();
    vec![token_view("fresh", TokenState::Unused), enrolled, expired]
}

fn worker_view(name: &str, status: WorkerStatus, via: EnrolledVia) -> WorkerView {
    WorkerView {
        id: "0123456789abcdef0123456789abcdef".into(),
        name: name.into(),
        status,
        enrolled_via: via,
        machine_id: Some("m-0123456789abcdef".into()),
        labels: LabelMap::new(),
        last_seen_at: Some("2026-03-04T11:58:00Z".into()),
        created_at: "2026-03-01T00:00:00Z".into(),
        expires_at: None,
        revoked_at: None,
        token: None,
        running_jobs: 0,
        slots: 0,
        remote_addr: None,
        confinement: None,
        replica: None,
    }
}

fn some_workers() -> Vec<WorkerView> {
    let mut busy = worker_view("ingest-01", WorkerStatus::Connected, EnrolledVia::Token);
    busy.running_jobs = 2;
    busy.slots = 4;
    busy.token = Some("ingest-01".into());
    busy.labels = label_map(&[("region", "eu")]);
    busy.remote_addr = Some("10.0.0.7".into());
    busy.replica = Some("3f9c0a1b7d2e4f60".into());
    busy.expires_at = Some("2026-03-05T10:00:00Z".into());
    busy.confinement = Some(Confinement::Landlock { abi: 7 });
    let mut idle = worker_view("builtin", WorkerStatus::Connected, EnrolledVia::Builtin);
    idle.slots = 2;
    let mut revoked = worker_view("edge-02", WorkerStatus::Revoked, EnrolledVia::Precreated);
    revoked.revoked_at = Some("2026-03-04T09:00:00Z".into());
    revoked.machine_id = None;
    revoked.last_seen_at = None;
    let away = worker_view("batch-7", WorkerStatus::Disconnected, EnrolledVia::Secret);
    vec![busy, idle, revoked, away]
}

fn job_view(id: &str, state: JobState) -> JobView {
    JobView {
        id: id.into(),
        state,
        worker: None,
        exit_code: None,
        command: vec!["uname".into(), "-a".into()],
        env_keys: vec![],
        selector: "any worker".into(),
        created_at: "2026-03-04T11:59:00Z".into(),
        started_at: None,
        finished_at: None,
        reason: None,
        ending: None,
        timeout_ms: None,
        output_bytes: 0,
        output_truncated: false,
        placement: None,
    }
}

fn some_jobs() -> Vec<JobView> {
    let queued = job_view("00000000000000a1", JobState::Queued);
    let mut failed = job_view("00000000000000a2", JobState::Failed);
    failed.worker = Some("ingest-01".into());
    failed.exit_code = Some(3);
    failed.ending = Some(JobEnding::Exited { code: 3 });
    failed.started_at = Some("2026-03-04T11:59:01Z".into());
    failed.finished_at = Some("2026-03-04T11:59:02Z".into());
    failed.env_keys = vec!["LOG_LEVEL".into(), "TOKEN".into()];
    failed.output_bytes = 1_234_567;
    failed.output_truncated = true;
    failed.selector = "a worker with labels region=eu".into();
    let mut long = job_view("00000000000000a3", JobState::Failed);
    long.command = vec![
        "sh".into(),
        "-c".into(),
        "for i in $(seq 1 100); do echo line $i; sleep 1; done; exit 0".into(),
    ];
    long.reason = Some("timed out after 5s".into());
    long.ending = Some(JobEnding::TimedOut);
    vec![queued, failed, long]
}

#[test]
fn token_list() {
    insta::assert_snapshot!(tokens(&some_tokens(), now()));
}

#[test]
fn token_show() {
    insta::assert_snapshot!(token(&some_tokens()[1], now()));
}

#[test]
fn workers_list() {
    insta::assert_snapshot!(workers(&some_workers(), now()));
}

#[test]
fn workers_show() {
    insta::assert_snapshot!(worker(&some_workers()[0], now()));
}

#[test]
fn workers_show_says_why_jobs_are_not_confined() {
    let mut w = some_workers().remove(1);
    w.confinement = Some(Confinement::Unconfined {
        reason: "this kernel has no Landlock".into(),
    });
    let shown = worker(&w, now());
    assert!(
        shown
            .lines()
            .any(|l| l.trim() == "confinement   none: this kernel has no Landlock"),
        "{shown}"
    );
}

#[test]
fn job_list() {
    insta::assert_snapshot!(jobs_list(&some_jobs(), now()));
}

#[test]
fn job_show() {
    insta::assert_snapshot!(job(&some_jobs()[1], now()));
}

#[test]
fn audit_log() {
    let entry = |seq, action: &str, outcome, detail: &str| AuditEntry {
        seq,
        at: "2026-03-04T11:00:00.456Z".into(),
        actor: "admin".into(),
        action: action.into(),
        target: "ingest-01".into(),
        remote_addr: (seq == 2).then(|| "127.0.0.1".into()),
        outcome,
        detail: detail.into(),
    };
    insta::assert_snapshot!(audit(&[
        entry(1, "token.create", AuditOutcome::Ok, "expires in 1d"),
        entry(2, "enroll", AuditOutcome::Refused, "token is expired"),
    ]));
}

/// Before: CR/LF and escape sequences in stored text came out raw, so an anonymous caller could
/// forge a line of `muster audit` or drive the admin's terminal. Now they print as escapes.
#[test]
fn audit_log_escapes_control_characters() {
    let forged = AuditEntry {
        seq: 3,
        at: "2026-03-04T11:00:00.456Z".into(),
        actor: "machine:m1\x1b]0;pwned\x07".into(),
        action: "enroll".into(),
        target: "a\rb".into(),
        remote_addr: Some("10.0.0.9".into()),
        outcome: AuditOutcome::Refused,
        detail:
            "refused\n2026-03-04 11:00:01  admin  token.create  x  -  ok  \x1b[2Jcleared\u{202e}"
                .into(),
    };
    let printed = audit(&[forged]);
    assert!(
        !printed
            .chars()
            .any(|c| c.is_control() && c != '\n' || c == '\u{202e}'),
        "{printed:?}"
    );
    assert_eq!(
        printed.lines().count(),
        2,
        "a header and one row: {printed}"
    );
    insta::assert_snapshot!(printed);
}

#[test]
fn job_show_escapes_a_reason_s_control_characters() {
    let mut j = some_jobs()[2].clone();
    let plain = job(&j, now()).lines().count();
    j.reason = Some("could not start\r\nstate  succeeded\x1b[1A".into());
    j.command = vec!["sh".into(), "-c".into(), "echo a\necho b".into()];
    let printed = job(&j, now());
    assert_eq!(printed.lines().count(), plain, "{printed}");
    assert!(
        printed.contains("could not start\\r\\nstate  succeeded\\x1b[1A"),
        "{printed}"
    );
    assert!(printed.contains("echo a\\necho b"), "{printed}");
    assert!(!printed.contains('\x1b'));
}

#[test]
fn enrollment_status() {
    let on = EnrollmentStatus {
        enabled: true,
        secret_set_at: Some("2026-03-04T10:00:00Z".into()),
        enrolled_count: 12,
        window_closes_at: Some("2026-03-04T14:00:00Z".into()),
        max_enrollments: Some(20),
        enrollments_in_window: 3,
        name_pattern: Some("edge-*".into()),
        expected_names: Some("edge-*".into()),
    };
    let off = EnrollmentStatus {
        enabled: false,
        secret_set_at: None,
        enrolled_count: 0,
        window_closes_at: None,
        max_enrollments: None,
        enrollments_in_window: 0,
        name_pattern: None,
        expected_names: None,
    };
    insta::assert_snapshot!(format!(
        "{}\n\n{}",
        enrollment(&on, now()),
        enrollment(&off, now())
    ));
}

fn license_view(edition: muster_proto::api::Edition) -> LicenseView {
    LicenseView {
        edition,
        state: muster_proto::api::LicenseState::Valid,
        licensee: None,
        max_workers: Some(0),
        workers_used: 0,
        expires_at: None,
        issuer: None,
        id: None,
        issued_at: None,
        grace_ends_at: None,
        can_join: false,
        warning: None,
        trial_started_at: None,
        trial_ends_at: None,
        last_refused_at: None,
        last_refused: None,
    }
}

#[test]
fn license_in_community_edition() {
    insta::assert_snapshot!(license(
        &license_view(muster_proto::api::Edition::Community),
        now()
    ));
}

#[test]
fn license_expiring_with_seats() {
    let mut l = license_view(muster_proto::api::Edition::Licensed);
    l.state = muster_proto::api::LicenseState::Expiring;
    l.licensee = Some("ACME Corp".into());
    l.max_workers = Some(50);
    l.workers_used = 12;
    l.can_join = true;
    l.id = Some("lic_0123456789abcdef".into());
    l.issued_at = Some("2025-03-04T00:00:00Z".into());
    l.expires_at = Some("2026-03-24T00:00:00Z".into());
    l.grace_ends_at = Some("2026-04-07T00:00:00Z".into());
    l.issuer = Some("k4.pid.dPyF8cyq671Q3Z7FbALwINLGx8i4KzS1-GbY1EjQ7c2Y".into());
    l.trial_started_at = Some("2025-01-01T00:00:00Z".into());
    l.trial_ends_at = Some("2025-01-31T00:00:00Z".into());
    insta::assert_snapshot!(license(&l, now()));
}

//! The aggregator alone (first of a kind recorded, the rest counted, summaries at the window's
//! end, bounded kinds), and its window task against a real store under tokio's paused clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use muster_core::Timestamp;
use muster_core::audit::Outcome;
use muster_proto::ErrorCode;

use super::*;
use crate::clock::Clock;

fn from(addr: &str) -> Option<SocketAddr> {
    Some(SocketAddr::new(addr.parse().expect("ip"), 40_000))
}

fn refused(attempt: Attempt, reason: ErrorCode, remote: Option<SocketAddr>) -> RefusedAttempt {
    RefusedAttempt {
        attempt,
        reason,
        remote,
        actor: "machine:m1".into(),
        target: "edge-01".into(),
        detail: "the auto-enrollment secret does not match".into(),
    }
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000 + ms)
}

#[test]
fn the_first_refusal_of_a_kind_is_recorded_and_the_rest_counted() {
    let refusals = Refusals::default();
    let mismatch = || {
        refused(
            Attempt::EnrollSecret,
            ErrorCode::SecretMismatch,
            from("10.0.0.1"),
        )
    };
    let first = refusals
        .count(mismatch(), at(0))
        .expect("the first is recorded");
    assert_eq!(
        (first.action.as_str(), first.target.as_str(), first.outcome),
        ("enroll.secret", "edge-01", Outcome::Refused)
    );
    assert_eq!(first.remote_addr.as_deref(), Some("10.0.0.1"));
    for _ in 0..99 {
        assert!(refusals.count(mismatch(), at(1)).is_none(), "only counted");
    }
    // Another source, another reason, another attempt: each a kind of its own.
    for other in [
        refused(
            Attempt::EnrollSecret,
            ErrorCode::SecretMismatch,
            from("10.0.0.2"),
        ),
        refused(
            Attempt::EnrollSecret,
            ErrorCode::RateLimited,
            from("10.0.0.1"),
        ),
        refused(
            Attempt::Connect,
            ErrorCode::SecretMismatch,
            from("10.0.0.1"),
        ),
    ] {
        assert!(refusals.count(other, at(2)).is_some());
    }

    let summaries = refusals.close_window(at(60_000));
    assert_eq!(
        summaries.len(),
        1,
        "only kinds refused more than once: {summaries:?}"
    );
    let summary = &summaries[0];
    assert_eq!(
        summary.detail,
        "99 more refused (secret_mismatch) from 10.0.0.1 in the last minute"
    );
    assert_eq!(
        (
            summary.actor.as_str(),
            summary.action.as_str(),
            summary.target.as_str()
        ),
        ("anonymous", "enroll.secret", "-")
    );
    assert_eq!(summary.remote_addr.as_deref(), Some("10.0.0.1"));
    assert_eq!(summary.at, at(60_000));

    // A new window: the first is recorded again, and a quiet window writes nothing.
    assert!(refusals.count(mismatch(), at(60_001)).is_some());
    assert!(refusals.close_window(at(120_000)).is_empty());
}

#[test]
fn an_ipv6_host_is_one_source_however_many_addresses_it_uses() {
    let refusals = Refusals::default();
    for i in 0..10 {
        let remote = from(&format!("2001:db8:0:1::{i:x}"));
        let recorded = refusals.count(
            refused(Attempt::Connect, ErrorCode::UnknownIdentity, remote),
            at(0),
        );
        assert_eq!(recorded.is_some(), i == 0);
    }
    let summaries = refusals.close_window(at(60_000));
    assert_eq!(summaries.len(), 1);
    assert_eq!(
        summaries[0].remote_addr.as_deref(),
        Some("2001:db8:0:1::/64")
    );
    assert!(
        summaries[0]
            .detail
            .starts_with("9 more refused (unknown_identity) from 2001:db8:0:1::/64")
    );
}

#[test]
fn kinds_are_bounded_and_the_rest_counted_per_attempt() {
    let refusals = Refusals::new(WINDOW, 3);
    let mut recorded = 0;
    for host in 1..=50u8 {
        for attempt in [Attempt::Enroll, Attempt::Connect] {
            let remote = Some(SocketAddr::from(([10, 0, 1, host], 1)));
            if refusals
                .count(refused(attempt, ErrorCode::RateLimited, remote), at(0))
                .is_some()
            {
                recorded += 1;
            }
        }
    }
    // Three kinds, then one overflow kind per attempt, each recorded once.
    assert_eq!(recorded, 3 + 2);
    assert_eq!(refusals.kinds(), 3 + 2, "memory stays bounded");
    let summaries = refusals.close_window(at(60_000));
    let overflow: Vec<_> = summaries
        .iter()
        .filter(|s| s.remote_addr.is_none())
        .collect();
    assert_eq!(overflow.len(), 2, "{summaries:?}");
    let counted: u64 = overflow
        .iter()
        .map(|s| s.detail.split(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    // 100 refusals: 3 kinds recorded at once and 2 overflow firsts; the rest counted there.
    assert_eq!(counted, 100 - 3 - 2);
    assert!(
        overflow[0].detail.contains("from other sources"),
        "{}",
        overflow[0].detail
    );
}

#[test]
fn what_a_refusal_records_is_bounded() {
    let refusals = Refusals::default();
    let mut hostile = refused(Attempt::Enroll, ErrorCode::RateLimited, from("10.0.0.9"));
    hostile.target = format!("{}\r\n", "x".repeat(70_000));
    hostile.detail = "\x1b[2J\x1b]0;pwned\x07".into();
    let event = refusals.count(hostile, at(0)).expect("first");
    assert!(event.target.chars().count() <= muster_core::audit::MAX_NAME_CHARS);
    assert!(!event.target.chars().any(char::is_control));
    assert_eq!(event.detail, "\\x1b[2J\\x1b]0;pwned\\x07");
}

#[tokio::test(start_paused = true)]
async fn a_window_s_summaries_are_written_when_it_closes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = muster_store::Store::open_sqlite(&dir.path().join("db")).expect("store");
    let clock = Clock::starting_at(at(0));
    let refusals = Arc::new(Refusals::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(crate::audit::close_windows(
        Arc::clone(&refusals),
        store.clone(),
        clock,
        stopped,
    ));
    for host in 1..=3u8 {
        for _ in 0..10 {
            let remote = Some(SocketAddr::from(([10, 0, 0, host], 1)));
            // The first of each source would be written by the caller; not here.
            let _ = refusals.count(
                refused(Attempt::Connect, ErrorCode::WorkerRevoked, remote),
                clock.now(),
            );
        }
    }
    let read = |store: &muster_store::Store| {
        let store = store.clone();
        async move {
            store
                .read(|tx| {
                    tx.list_audit(&muster_store::AuditFilter {
                        limit: 100,
                        ..Default::default()
                    })
                })
                .await
                .expect("audit")
        }
    };
    // No store I/O before the window closes: a paused clock jumps to the next timer while a
    // task waits on the store's threads. The summaries' time says when they were made.
    tokio::time::sleep(Duration::from_secs(61)).await;
    // The write is on the store's threads, in real time.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut written = read(&store).await;
    while written.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        written = read(&store).await;
    }
    assert_eq!(written.len(), 3, "one summary per source");
    assert!(written.iter().all(|r| {
        r.event
            .detail
            .starts_with("9 more refused (worker_revoked)")
    }));
    assert!(
        written.iter().all(|r| r.event.at == at(60_000)),
        "written as the window closed"
    );
    let _ = stop.send(true);
    task.await.expect("the task ends when told");
    store.close();
}

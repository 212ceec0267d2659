//! The metrics as a scrape shows them, parsed as Prometheus does.

use std::time::Duration;

use muster_core::job::JobState;
use muster_proto::control::CloseCode;

use super::*;

/// The value of the sample `name{labels}` in `text`, parsed as Prometheus does.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("parses");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn counters_move_and_render_with_their_labels() {
    let m = Metrics::new();
    let before = m.render(&Live::default());
    assert_eq!(
        sample(
            &before,
            "muster_enrollments_total",
            &[("method", "token"), ("outcome", "enrolled")]
        ),
        Some(0.0),
        "every combination is there from the start:\n{before}"
    );
    m.enrollment(EnrollMethod::Token, EnrollOutcome::Enrolled);
    m.enrollment(EnrollMethod::Secret, EnrollOutcome::RateLimited);
    m.cutoff(CutReason::Revoked, Some(Duration::from_millis(2)));
    m.cutoff(CutReason::Revoked, None);
    m.job(JobState::Queued);
    m.jobs(JobState::Lost, 3);
    m.http_request("/api/v1/tokens/{name}", 404);
    m.http_request(CONNECT_ROUTE, 101);
    let text = m.render(&Live {
        workers_connected: 7,
        jobs_queued: 2,
    });
    let expect = [
        (
            "muster_enrollments_total",
            vec![("method", "token"), ("outcome", "enrolled")],
            1.0,
        ),
        (
            "muster_enrollments_total",
            vec![("method", "secret"), ("outcome", "rate_limited")],
            1.0,
        ),
        ("muster_cutoffs_total", vec![("reason", "revoked")], 2.0),
        ("muster_cutoffs_total", vec![("reason", "idle")], 0.0),
        ("muster_cutoff_seconds_count", vec![], 1.0),
        ("muster_jobs_total", vec![("state", "queued")], 1.0),
        ("muster_jobs_total", vec![("state", "lost")], 3.0),
        (
            "muster_http_requests_total",
            vec![("route", CONNECT_ROUTE), ("status", "101")],
            1.0,
        ),
        ("muster_workers_connected", vec![], 7.0),
        ("muster_jobs_queued", vec![], 2.0),
        ("muster_tls_handshakes_in_flight", vec![], 0.0),
    ];
    for (name, labels, value) in expect {
        assert_eq!(
            sample(&text, name, &labels),
            Some(value),
            "{name} {labels:?} in:\n{text}"
        );
    }
    // prometheus-parse skips a sample whose label value holds a `}` (its regex stops at the
    // first one); Prometheus itself reads it. So this one is checked as text.
    assert!(
        text.contains(
            "\nmuster_http_requests_total{route=\"/api/v1/tokens/{name}\",status=\"404\"} 1\n"
        ),
        "{text}"
    );
}

#[test]
fn a_handshake_counts_while_it_is_under_way() {
    let m = Metrics::new();
    let guard = m.tls_handshake();
    let during = m.render(&Live::default());
    drop(guard);
    let after = m.render(&Live::default());
    assert_eq!(
        sample(&during, "muster_tls_handshakes_in_flight", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "muster_tls_handshakes_in_flight", &[]),
        Some(0.0)
    );
}

#[test]
fn only_closes_by_decision_are_cutoffs() {
    assert_eq!(CutReason::of(CloseCode::Revoked), Some(CutReason::Revoked));
    assert_eq!(CutReason::of(CloseCode::Idle), Some(CutReason::Idle));
    assert_eq!(CutReason::of(CloseCode::GoingAway), None);
    assert_eq!(CutReason::of(CloseCode::Other(4999)), None);
}

//! The audit log: newest first, filtered by action prefix and by text (matched literally), and
//! paged backwards.

use super::audit;
use crate::{AuditFilter, Store};

pub async fn audit_filters(store: Store) {
    for (action, target) in [
        ("token.create", "a"),
        ("token.revoke", "a"),
        ("worker.revoke", "b_%"),
    ] {
        let ev = audit(action, target);
        store
            .write(move |tx| tx.insert_audit(&ev))
            .await
            .expect("audit");
    }
    let all = store
        .read(|tx| {
            tx.list_audit(&AuditFilter {
                limit: 10,
                ..Default::default()
            })
        })
        .await
        .expect("list");
    assert_eq!(all.len(), 3);
    assert!(all[0].seq > all[1].seq, "newest first");
    let tokens = store
        .read(|tx| {
            tx.list_audit(&AuditFilter {
                action_prefix: Some("token.".into()),
                limit: 10,
                ..Default::default()
            })
        })
        .await
        .expect("list");
    assert_eq!(tokens.len(), 2);
    let literal = store
        .read(|tx| {
            tx.list_audit(&AuditFilter {
                contains: Some("b_%".into()),
                limit: 10,
                ..Default::default()
            })
        })
        .await
        .expect("list");
    assert_eq!(
        literal.len(),
        1,
        "LIKE wildcards in the filter are matched literally"
    );
    let before = all[0].seq;
    let paged = store
        .read(move |tx| {
            tx.list_audit(&AuditFilter {
                before_seq: Some(before),
                limit: 1,
                ..Default::default()
            })
        })
        .await
        .expect("list");
    assert_eq!(paged.len(), 1);
    assert_eq!(paged[0].seq, all[1].seq);
}

/// A worker's trail: records whose target is its name or whose actor is the worker itself,
/// newest first and paged, and not those that merely mention its name (another worker whose
/// name contains it, a detail quoting it).
pub async fn audit_by_worker(store: Store) {
    let mut events = vec![
        audit("worker.create", "edge-1"),
        audit("worker.create", "edge-10"),
        audit("token.create", "edge-1-token"),
    ];
    let mut quoted = audit("job.submit", "job-1");
    quoted.detail = "on edge-1".into();
    events.push(quoted);
    let mut own = audit("worker.report", "job-2");
    own.actor = "worker:edge-1".into();
    events.push(own);
    let mut other = audit("worker.report", "job-3");
    other.actor = "worker:edge-10".into();
    events.push(other);
    events.push(audit("worker.revoke", "edge-1"));
    for ev in events {
        store
            .write(move |tx| tx.insert_audit(&ev))
            .await
            .expect("audit");
    }
    let list = |worker: &str, before: Option<i64>, limit: u32| {
        let filter = AuditFilter {
            worker: Some(worker.into()),
            before_seq: before,
            limit,
            ..Default::default()
        };
        let store = store.clone();
        async move {
            store
                .read(move |tx| tx.list_audit(&filter))
                .await
                .expect("list")
        }
    };
    let trail = list("edge-1", None, 10).await;
    let seen: Vec<(&str, &str)> = trail
        .iter()
        .map(|r| (r.event.action.as_str(), r.event.target.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("worker.revoke", "edge-1"),
            ("worker.report", "job-2"),
            ("worker.create", "edge-1"),
        ],
        "its own records, newest first, and none that only mention it"
    );
    let first = list("edge-1", None, 2).await;
    assert_eq!(first.len(), 2);
    let rest = list("edge-1", Some(first[1].seq), 2).await;
    assert_eq!(
        rest.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [trail[2].seq],
        "the next page starts past the last one shown"
    );
    assert_eq!(list("edge-10", None, 10).await.len(), 2);
    assert!(list("nobody", None, 10).await.is_empty());
}

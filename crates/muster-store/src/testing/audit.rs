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

//! Retention: audit records and ended jobs older than a cut-off are deleted oldest first, a
//! bounded batch at a time; a job still queued or running is kept however old, and a deleted
//! job's output goes with it.

use muster_core::job::{JobId, JobState};

use super::jobs::job;
use super::{at, audit, precreated};
use crate::flows::{jobs, retention};
use crate::{AuditFilter, Store};

pub async fn audit_is_pruned_oldest_first_in_batches(store: Store) {
    for ms in [10, 20, 30, 100] {
        let mut ev = audit("token.create", &format!("t{ms}"));
        ev.at = at(ms);
        store
            .write(move |tx| tx.insert_audit(&ev))
            .await
            .expect("audit");
    }
    let prune = || store.write(|tx| retention::prune_audit(tx, at(50), 2));
    assert_eq!(prune().await.expect("prune"), 2, "a batch at most");
    assert_eq!(prune().await.expect("prune"), 1);
    assert_eq!(prune().await.expect("prune"), 0, "nothing older left");
    let left = store
        .read(|tx| {
            tx.list_audit(&AuditFilter {
                limit: 10,
                ..Default::default()
            })
        })
        .await
        .expect("list");
    assert_eq!(
        left.iter()
            .map(|r| r.event.target.as_str())
            .collect::<Vec<_>>(),
        ["t100"],
        "the newer record stays"
    );
}

pub async fn ended_jobs_are_pruned_with_their_output_and_live_ones_kept(store: Store) {
    let id = |s: &str| JobId::parse(s).expect("job id");
    for (n, created) in [("b1", 0), ("b2", 1), ("b3", 2), ("b4", 3), ("b5", 400)] {
        let j = job(&format!("00000000000000{n}"), created);
        let ev = audit("job.submit", j.id.as_str());
        store
            .write(move |tx| jobs::submit(tx, &j, &ev))
            .await
            .expect("submitted");
    }
    // b1 and b2 end early, b5 late; b3 runs and b4 waits, both since long ago.
    for (n, when) in [("b1", 10), ("b2", 20), ("b5", 500)] {
        let (jid, ev) = (id(&format!("00000000000000{n}")), audit("job.cancel", n));
        let cancelled = store
            .write(move |tx| jobs::cancel(tx, &jid, at(when), &ev))
            .await
            .expect("cancel");
        assert!(matches!(cancelled, jobs::Cancel::Dequeued(_)));
    }
    let w = precreated("runner");
    let start = vec![jobs::Assignment {
        job: id("00000000000000b3"),
        worker: w.id.clone(),
        worker_name: w.name.clone(),
        dispatcher: "replica-a".into(),
    }];
    store
        .write(move |tx| jobs::start_many(tx, &start, at(5)))
        .await
        .expect("start");
    let b1 = id("00000000000000b1");
    let out = b1.clone();
    store
        .write(move |tx| tx.append_output(&out, 1, 1, b"old output", at(6)))
        .await
        .expect("output");

    let prune = || store.write(|tx| retention::prune_jobs(tx, at(100), 1));
    assert_eq!(prune().await.expect("prune"), 1, "a batch at most");
    assert_eq!(prune().await.expect("prune"), 1);
    assert_eq!(prune().await.expect("prune"), 0, "nothing older left");

    let gone = b1.clone();
    assert!(
        store
            .read(move |tx| tx.get_job(&gone))
            .await
            .expect("get")
            .is_none()
    );
    let output = store
        .read(move |tx| tx.read_output(&b1, 0, 10))
        .await
        .expect("output");
    assert!(output.is_empty(), "the output went with its job");
    let mut left: Vec<(String, JobState)> = store
        .read(|tx| {
            tx.list_jobs(&crate::tx::JobFilter {
                limit: 10,
                ..Default::default()
            })
        })
        .await
        .expect("list")
        .into_iter()
        .map(|j| (j.id.to_string(), j.state))
        .collect();
    left.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        left,
        [
            ("00000000000000b3".to_owned(), JobState::Running),
            ("00000000000000b4".to_owned(), JobState::Queued),
            ("00000000000000b5".to_owned(), JobState::Cancelled),
        ]
    );
}

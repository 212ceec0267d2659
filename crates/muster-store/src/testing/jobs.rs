//! Jobs: a job round-trips whole, starts at most once, ends at most once, is cancelled by state,
//! is written off at its dispatcher's restart, and its output is stored in order.

use std::time::Duration;

use muster_core::Labels;
use muster_core::job::{Ending, Job, JobId, JobState, Selector};

use super::{at, audit, precreated};
use crate::Store;
use crate::flows::jobs;
use crate::tx::JobFilter;

pub fn job(id: &str, created: i64) -> Job {
    let mut job = Job::queued(
        JobId::parse(id).expect("job id"),
        vec!["echo".into(), "hi".into()],
        Selector {
            worker: None,
            labels: Labels::parse_list("pool=a").expect("labels"),
        },
        at(created),
        at(created + 600_000),
    );
    job.env = [("K".to_owned(), "secret-value".to_owned())].into();
    job.timeout = Some(Duration::from_secs(30));
    job
}

async fn submit_job(store: &Store, j: Job) {
    let ev = audit("job.submit", j.id.as_str());
    store
        .write(move |tx| jobs::submit(tx, &j, &ev))
        .await
        .expect("submitted");
}

pub async fn jobs_start_once_end_once_and_recover(store: Store) {
    for (i, id) in [
        "00000000000000a1",
        "00000000000000a2",
        "00000000000000a3",
        "00000000000000a4",
    ]
    .iter()
    .enumerate()
    {
        submit_job(&store, job(id, i as i64)).await;
    }
    let got = store
        .read(|tx| tx.get_job(&JobId::parse("00000000000000a1").expect("id")))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got, job("00000000000000a1", 0), "a job round-trips whole");
    let queued = store
        .read(|tx| tx.jobs_in_state(JobState::Queued))
        .await
        .expect("queued");
    assert_eq!(
        queued.iter().map(|j| j.id.to_string()).collect::<Vec<_>>()[0],
        "00000000000000a1",
        "oldest first"
    );

    let w = precreated("runner");
    let (wid, wname) = (w.id.clone(), w.name.clone());
    let a1 = JobId::parse("00000000000000a1").expect("id");
    let assignment = jobs::Assignment {
        job: a1.clone(),
        worker: wid.clone(),
        worker_name: wname.clone(),
        dispatcher: "replica-a".into(),
    };
    let twice = vec![assignment.clone(), assignment];
    let started = store
        .write(move |tx| jobs::start_many(tx, &twice, at(10)))
        .await
        .expect("start");
    assert_eq!(started, [true, false], "a job starts at most once");

    let id = a1.clone();
    let ended = store
        .write(move |tx| jobs::end(tx, &id, &Ending::Exited(3), at(20)))
        .await
        .expect("end")
        .expect("ended");
    assert_eq!(
        (ended.state, ended.exit_code, ended.worker_name.clone()),
        (JobState::Failed, Some(3), Some(wname.clone()))
    );
    assert_eq!(
        ended.ending,
        Some(muster_core::job::EndingKind::Exited(3)),
        "the kind is kept"
    );
    let id = a1.clone();
    let again = store
        .write(move |tx| jobs::end(tx, &id, &Ending::Lost("late".into()), at(30)))
        .await
        .expect("end");
    assert_eq!(again, None, "an ended job does not end again");

    // Cancel: queued → cancelled; running → reported; ended → reported.
    let a2 = JobId::parse("00000000000000a2").expect("id");
    let ev = audit("job.cancel", "a2");
    let id = a2.clone();
    let c = store
        .write(move |tx| jobs::cancel(tx, &id, at(40), &ev))
        .await
        .expect("cancel");
    assert!(
        matches!(c, jobs::Cancel::Dequeued(ref j)
            if j.state == JobState::Cancelled
                && j.ending == Some(muster_core::job::EndingKind::Cancelled)),
        "{c:?}"
    );
    let a3 = JobId::parse("00000000000000a3").expect("id");
    let start = vec![
        jobs::Assignment {
            job: a3.clone(),
            worker: wid.clone(),
            worker_name: wname.clone(),
            dispatcher: "replica-a".into(),
        },
        // Another replica's running job: not this replica's to write off at its restart.
        jobs::Assignment {
            job: JobId::parse("00000000000000a4").expect("id"),
            worker: wid.clone(),
            worker_name: wname.clone(),
            dispatcher: "replica-b".into(),
        },
    ];
    store
        .write(move |tx| jobs::start_many(tx, &start, at(50)))
        .await
        .expect("start");
    let ev = audit("job.cancel", "a3");
    let id = a3.clone();
    let c = store
        .write(move |tx| jobs::cancel(tx, &id, at(60), &ev))
        .await
        .expect("cancel");
    assert!(matches!(c, jobs::Cancel::Running(_)), "{c:?}");
    let ev = audit("job.cancel", "a1");
    let c = store
        .write(move |tx| jobs::cancel(tx, &a1, at(60), &ev))
        .await
        .expect("cancel");
    assert!(matches!(c, jobs::Cancel::AlreadyEnded(_)), "{c:?}");

    // Restart of replica a: it holds its running job again (the worker may still run it);
    // replica b's is not its own.
    let held = store
        .write(|tx| jobs::held_by(tx, "replica-a"))
        .await
        .expect("recover");
    assert_eq!(
        held.iter().map(|h| h.job.id.clone()).collect::<Vec<_>>(),
        std::slice::from_ref(&a3)
    );
    // Its worker never came back: lost, but only by the replica that holds it.
    let id = a3.clone();
    let not_b = store
        .write(move |tx| jobs::lose_held(tx, &id, "replica-b", "gone", at(65)))
        .await
        .expect("lose");
    assert_eq!(not_b, None, "only the holder writes a job off");
    let id = a3.clone();
    store
        .write(move |tx| jobs::lose_held(tx, &id, "replica-a", "the worker restarted", at(70)))
        .await
        .expect("lose")
        .expect("lost");
    let j3 = store
        .read(move |tx| tx.get_job(&a3))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(j3.state, JobState::Lost);
    assert!(
        j3.reason
            .as_deref()
            .unwrap_or_default()
            .contains("restarted")
    );
    let queued = store
        .read(|tx| tx.jobs_in_state(JobState::Queued))
        .await
        .expect("queued");
    assert!(queued.is_empty());
    let still = store
        .read(|tx| tx.jobs_in_state(JobState::Running))
        .await
        .expect("running");
    assert_eq!(
        still
            .iter()
            .map(|j| (j.id.to_string(), j.dispatcher.clone()))
            .collect::<Vec<_>>(),
        [("00000000000000a4".to_owned(), Some("replica-b".to_owned()))],
        "another replica's running job is left alone"
    );
    let listed = store
        .read(|tx| {
            tx.list_jobs(&JobFilter {
                state: None,
                worker: None,
                before: None,
                limit: 2,
                reverse: false,
            })
        })
        .await
        .expect("list");
    assert_eq!(
        listed.iter().map(|j| j.id.to_string()).collect::<Vec<_>>(),
        ["00000000000000a4", "00000000000000a3"]
    );
    let by_worker = store
        .read(move |tx| {
            tx.list_jobs(&JobFilter {
                state: Some(JobState::Lost),
                worker: Some(wname),
                before: None,
                limit: 10,
                reverse: false,
            })
        })
        .await
        .expect("list");
    assert_eq!(by_worker.len(), 1);
}

pub async fn job_output_is_stored_in_order(store: Store) {
    submit_job(&store, job("00000000000000b1", 0)).await;
    let id = JobId::parse("00000000000000b1").expect("id");
    let jid = id.clone();
    store
        .write(move |tx| {
            for seq in 1..=5u64 {
                tx.append_output(
                    &jid,
                    seq,
                    if seq % 2 == 0 { 2 } else { 1 },
                    format!("chunk{seq}\0").as_bytes(),
                    at(100 + i64::try_from(seq).expect("small")),
                )?;
            }
            tx.set_output_stats(&jid, 35, true)
        })
        .await
        .expect("output");
    let jid = id.clone();
    let chunks = store
        .read(move |tx| tx.read_output(&jid, 2, 2))
        .await
        .expect("read");
    assert_eq!(chunks.iter().map(|c| c.seq).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(chunks[1].stream, 2);
    assert_eq!(chunks[0].data, b"chunk3\0", "binary-safe");
    let jid = id.clone();
    let timed = store
        .read(move |tx| tx.read_timed_output(&jid, 3, 1))
        .await
        .expect("read");
    assert_eq!(timed[0].chunk, chunks[1]);
    assert_eq!(timed[0].at, Some(at(104)), "when it was received");
    let j = store
        .read(move |tx| tx.get_job(&id))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((j.output_bytes, j.truncated), (35, true));
}

/// A worker that comes back reports the jobs it holds: the reporting replica takes over those
/// still running on it (with where their output stands), the ones it did not report are lost,
/// and the ones that are not running on it any more are named so the worker stops them.
pub async fn a_reporting_worker_takes_its_jobs_over_and_loses_the_rest(store: Store) {
    let ids = [
        "00000000000000c1",
        "00000000000000c2",
        "00000000000000c3",
        "00000000000000c4",
    ];
    for (i, id) in ids.iter().enumerate() {
        submit_job(&store, job(id, i as i64)).await;
    }
    let w = precreated("runner");
    let (wid, wname) = (w.id.clone(), w.name.clone());
    let id = |n: usize| JobId::parse(ids[n]).expect("id");
    let starts: Vec<jobs::Assignment> = (0..3)
        .map(|n| jobs::Assignment {
            job: id(n),
            worker: wid.clone(),
            worker_name: wname.clone(),
            dispatcher: "replica-a".into(),
        })
        .collect();
    let c1 = id(0);
    store
        .write(move |tx| {
            jobs::start_many(tx, &starts, at(10))?;
            tx.append_output(&c1, 1, 1, b"hello ", at(11))?;
            tx.append_output(&c1, 2, 1, b"world", at(12))
        })
        .await
        .expect("start");

    // It reports c1 (running) and c4 (never started), not c2 or c3; c3 was placed on the new
    // connection after the report was written, so the caller keeps it.
    let (w2, keep3) = (wid.clone(), id(2));
    let reported = vec![id(0), id(3)];
    let resumed = store
        .write(move |tx| jobs::resume(tx, &w2, "replica-b", &reported, &|j| *j == keep3, at(20)))
        .await
        .expect("resume");
    assert_eq!(resumed.adopted.len(), 1);
    let adopted = &resumed.adopted[0];
    assert_eq!(adopted.job.id, id(0));
    assert_eq!(adopted.job.dispatcher.as_deref(), Some("replica-b"));
    assert_eq!(
        adopted.output,
        position(2, 11),
        "the next chunk follows the stored ones"
    );
    assert_eq!(
        resumed
            .lost
            .iter()
            .map(|j| (j.id.clone(), j.state))
            .collect::<Vec<_>>(),
        [(id(1), JobState::Lost)]
    );
    assert_eq!(resumed.unknown, [id(3)]);

    // The old holder can no longer write it off; the new one holds it.
    let c1 = id(0);
    let stale = store
        .write(move |tx| jobs::lose_held(tx, &c1, "replica-a", "gone", at(30)))
        .await
        .expect("lose");
    assert_eq!(stale, None);
    let c1 = id(0);
    let running = store
        .read(move |tx| tx.get_job(&c1))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(running.state, JobState::Running);
    let c3 = id(2);
    let kept = store
        .read(move |tx| tx.get_job(&c3))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(kept.state, JobState::Running, "kept by the caller");
}

fn position(last_seq: u64, stored_bytes: u64) -> crate::OutputPosition {
    crate::OutputPosition {
        last_seq,
        stored_bytes,
    }
}

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

    // Restart of replica a: its running job is lost; replica b's is not.
    let lost = store
        .write(|tx| jobs::lose_running(tx, "replica-a", at(70)))
        .await
        .expect("recover");
    assert_eq!(lost, std::slice::from_ref(&a3));
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
    let j = store
        .read(move |tx| tx.get_job(&id))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((j.output_bytes, j.truncated), (35, true));
}

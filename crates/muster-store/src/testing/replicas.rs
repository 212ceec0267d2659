//! Replicas: presence rows (the newest connection holds a worker; an older one's end clears
//! nothing), and leases (a lapsed replica is taken over once, its rows cleared, its running jobs
//! handed to the taker).

use muster_core::job::{JobId, JobState};

use super::{at, precreated};
use crate::Store;
use crate::flows::{jobs, replicas};
use crate::tx::Presence;

fn presence(worker: &muster_core::WorkerId, replica: &str, conn_id: u64) -> Presence {
    Presence {
        worker: worker.clone(),
        replica: replica.into(),
        conn_id,
        connected_at: at(5),
        running: 0,
        slots: 2,
        remote_addr: Some("127.0.0.1".into()),
    }
}

/// What a job's placement counts of the workers other replicas hold: all of them, or those with
/// every label pair asked for; the asking replica's own rows are left out (it knows its sessions).
pub async fn workers_held_elsewhere_are_counted_by_label(store: Store) {
    let mut labelled = precreated("gpu-2");
    labelled.labels = muster_core::Labels::parse_all(["pool=gpu", "zone=a"]).expect("labels");
    let mut plain = precreated("gpu-1");
    plain.labels = muster_core::Labels::parse_all(["pool=gpu"]).expect("labels");
    let here = precreated("local");
    let rows = [
        (plain.clone(), "replica-b"),
        (labelled.clone(), "replica-c"),
        (here.clone(), "replica-a"),
    ];
    store
        .write(move |tx| {
            for (worker, replica) in &rows {
                crate::flows::workers::create(tx, worker, at(0), None)?.expect("created");
                tx.put_presence(&presence(&worker.id, replica, 1))?;
            }
            Ok(())
        })
        .await
        .expect("store");
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let count = |labels: Vec<(String, String)>| {
        store.read(move |tx| tx.count_present_elsewhere("replica-a", &labels))
    };
    assert_eq!(
        count(vec![]).await.expect("count"),
        2,
        "all but replica-a's"
    );
    assert_eq!(count(vec![pair("pool", "gpu")]).await.expect("count"), 2);
    assert_eq!(
        count(vec![pair("pool", "gpu"), pair("zone", "a")])
            .await
            .expect("count"),
        1
    );
    assert_eq!(count(vec![pair("pool", "cpu")]).await.expect("count"), 0);
}

pub async fn presence_follows_the_newest_connection_and_lapsed_replicas_are_taken_over_once(
    store: Store,
) {
    let w = precreated("runner").id;
    let (a, b) = (w.clone(), w.clone());
    store
        .write(move |tx| {
            replicas::start(tx, "replica-a", at(10))?;
            replicas::start(tx, "replica-b", at(10))?;
            tx.put_presence(&presence(&a, "replica-a", 1))?;
            // The worker reconnects to replica b before a noticed the first connection ended.
            tx.put_presence(&presence(&a, "replica-b", 7))?;
            // a's late cleanup of its old connection clears nothing.
            assert!(!tx.drop_presence(&a, "replica-a", 1)?);
            tx.set_presence_running(&a, "replica-b", 7, 1)
        })
        .await
        .expect("presence");
    let shown = store
        .read(move |tx| tx.presence_of(&b))
        .await
        .expect("read")
        .expect("connected");
    assert_eq!(
        (shown.replica.as_str(), shown.conn_id, shown.running),
        ("replica-b", 7, 1)
    );

    // A job running under replica b, whose lease then lapses.
    let job = super::jobs::job("00000000000000e1", 0);
    let id = job.id.clone();
    let (wid, start) = (
        w.clone(),
        jobs::Assignment {
            job: id.clone(),
            worker: w.clone(),
            worker_name: muster_core::Name::parse("runner").expect("name"),
            dispatcher: "replica-b".into(),
        },
    );
    store
        .write(move |tx| {
            tx.insert_job(&job)?;
            jobs::start_many(tx, &[start], at(10)).map(|_| ())
        })
        .await
        .expect("setup");
    // Two replicas notice at once: one takes b over.
    let taken = store
        .write(|tx| {
            let first = replicas::beat_and_take_over(tx, "replica-a", at(20_000), at(15_000))?;
            let second = replicas::beat_and_take_over(tx, "replica-c", at(20_000), at(15_000))?;
            Ok((first, second))
        })
        .await
        .expect("take over");
    assert_eq!(taken.0.dead, ["replica-b"]);
    assert_eq!(taken.0.disconnected, 1);
    assert_eq!(
        taken
            .0
            .jobs
            .iter()
            .map(|h| h.job.id.clone())
            .collect::<Vec<JobId>>(),
        std::slice::from_ref(&id)
    );
    assert!(taken.1.dead.is_empty(), "taken over once");
    let gone = store
        .read(move |tx| tx.presence_of(&wid))
        .await
        .expect("read");
    assert_eq!(
        gone, None,
        "a dead replica's workers are not shown connected"
    );
    let job = store
        .read(move |tx| tx.get_job(&id))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (job.state, job.dispatcher.as_deref()),
        (JobState::Running, Some("replica-a"))
    );
}

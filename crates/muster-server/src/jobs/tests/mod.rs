//! The scheduler driven as the server drives it (see `fixture.rs`), with tokio's clock paused so
//! queue deadlines are exact and nothing sleeps for real. The one exception runs on several
//! threads: the race it guards against needs a dispatch round running in parallel with a
//! submission.

mod fixture;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use muster_core::audit::{AuditEvent, Outcome};
use muster_core::job::{JobState, Selector};
use muster_proto::control::{JobExit, WorkerMessage, frame};
use muster_store::flows::jobs::{self, Cancel};

use super::state::Phase;
use super::{DEFAULT_OUTPUT_CAP, Jobs, LiveEvent};
use crate::control::registry::Command;
use crate::control::session::Inbound;
use fixture::{SERVER_ID, fixture, fixture_with_cap, labels, named, settle, starts, told_to_start};
use muster_proto::control::ServerMessage;

const WAIT: Duration = Duration::from_secs(600);

#[tokio::test(start_paused = true)]
async fn a_queued_job_starts_when_a_matching_worker_connects() {
    let f = fixture();
    tokio::spawn(Arc::clone(&f.jobs).dispatch_forever());
    let job = f.submit(f.job(labels("gpu=yes"), WAIT)).await;
    assert_eq!(job.state, JobState::Queued, "nobody is connected");

    let cpu = f.connect("cpu", 4, "");
    settle().await;
    assert!(told_to_start(&cpu).is_empty(), "the labels do not match");

    let gpu = f.connect("gpu", 1, "gpu=yes");
    assert_eq!(starts(&gpu).await, std::slice::from_ref(&job.id));
    let stored = f.stored(&job.id).await;
    assert_eq!(stored.state, JobState::Running);
    assert_eq!(stored.worker_id.as_ref(), Some(&gpu.worker_id));
    assert_eq!(stored.started_at, Some(f.clock.now()));
    assert_eq!(stored.dispatcher.as_deref(), Some(SERVER_ID));
    assert!(gpu.holds(&job.id));
    f.jobs.state().check();
}

#[tokio::test(start_paused = true)]
async fn a_job_starts_at_submission_when_a_worker_has_a_free_slot() {
    let f = fixture();
    let w = f.connect("w", 1, "");
    let job = f.submit(f.job(Selector::default(), WAIT)).await;
    assert_eq!(job.state, JobState::Running, "started without queueing");
    assert_eq!(
        f.stored(&job.id).await,
        job,
        "stored as returned, in one write"
    );
    assert_eq!(job.started_at, Some(job.created_at));
    assert_eq!(job.worker_name.as_ref(), Some(&w.name));
    assert_eq!(job.dispatcher.as_deref(), Some(SERVER_ID));
    assert_eq!(told_to_start(&w), std::slice::from_ref(&job.id));
    assert_eq!(f.jobs.state().phase(&job.id), Some(Phase::Running));
}

#[tokio::test(start_paused = true)]
async fn a_job_for_a_named_worker_waits_for_that_worker_only() {
    let f = fixture();
    tokio::spawn(Arc::clone(&f.jobs).dispatch_forever());
    let idle = f.connect("idle", 8, "");
    let busy = f.connect("busy", 1, "");
    let first = f
        .submit_to(f.job(named("busy"), WAIT), Some(&busy.worker_id))
        .await;
    assert_eq!(first.worker_name.as_ref(), Some(&busy.name));
    assert_eq!(told_to_start(&busy), std::slice::from_ref(&first.id));
    let second = f
        .submit_to(f.job(named("busy"), WAIT), Some(&busy.worker_id))
        .await;
    assert_eq!(
        second.state,
        JobState::Queued,
        "busy is full; idle is not it"
    );
    settle().await;
    assert!(told_to_start(&idle).is_empty());

    // The first job ends: its slot goes to the second.
    let done = WorkerMessage::JobFinished {
        id: first.id.to_string(),
        exit: JobExit::Exited { code: 0 },
    };
    f.jobs.message(&busy, done).await;
    assert_eq!(f.stored(&first.id).await.state, JobState::Succeeded);
    assert_eq!(starts(&busy).await, [second.id]);
    assert!(told_to_start(&idle).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_job_nobody_takes_fails_exactly_at_its_queue_deadline() {
    let f = fixture();
    tokio::spawn(Arc::clone(&f.jobs).dispatch_forever());
    f.connect("cpu", 4, "");
    let job = f
        .submit(f.job(labels("gpu=yes"), Duration::from_secs(10)))
        .await;
    let mut events = f.jobs.subscribe(&job.id).expect("tracked");

    tokio::time::advance(Duration::from_millis(9_999)).await;
    settle().await;
    assert_eq!(f.stored(&job.id).await.state, JobState::Queued);
    assert_eq!(f.jobs.state().phase(&job.id), Some(Phase::Queued));

    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(matches!(events.recv().await, Some(LiveEvent::Ended)));
    let stored = f.stored(&job.id).await;
    assert_eq!(stored.state, JobState::Failed);
    assert_eq!(
        stored.reason.as_deref(),
        Some("no matching worker had a free slot within 10s")
    );
    assert_eq!(stored.finished_at, Some(job.queue_deadline));
    assert!(f.jobs.subscribe(&job.id).is_none(), "forgotten");
    f.jobs.state().check();
}

/// Regression test for c8368c9: `submit` put a job in the queue, then tracked it, under two
/// locks; a dispatch round that ran in between found an id it did not track, took it for a job
/// cancelled or started elsewhere and dropped it from the queue, and the job never started.
/// Rounds run back to back on one thread while jobs are submitted on others; then a worker with
/// a slot for each connects, and every one of them must start. (Ported to the code before that
/// fix, it failed 20 runs out of 20, with 1 to 37 of the 200 jobs dropped; it passes on the fix.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_queued_while_dispatch_rounds_run_back_to_back_is_not_dropped() {
    const JOBS: u32 = 200;
    const SUBMITTERS: u32 = 4;
    let f = Arc::new(fixture());
    let busy = Arc::new(AtomicBool::new(true));
    let rounds = tokio::spawn({
        let (jobs, busy) = (Arc::clone(&f.jobs), Arc::clone(&busy));
        async move {
            let mut rounds = 0u64;
            while busy.load(Ordering::Relaxed) {
                jobs.dispatch_round().await.unwrap();
                rounds += 1;
                tokio::task::yield_now().await;
            }
            rounds
        }
    });
    // Several submitters at once: more submissions in flight, more chances to meet a round.
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|_| {
            let f = Arc::clone(&f);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..JOBS / SUBMITTERS {
                    ids.push(f.submit(f.job(Selector::default(), WAIT)).await.id);
                }
                ids
            })
        })
        .collect();
    let mut submitted = Vec::new();
    for submitter in submitters {
        submitted.extend(submitter.await.unwrap());
    }
    busy.store(false, Ordering::Relaxed);
    assert!(rounds.await.unwrap() > 0);

    let w = f.connect("w", JOBS, "");
    f.jobs.dispatch_round().await.unwrap();
    let mut started = told_to_start(&w);
    started.sort();
    submitted.sort();
    assert!(
        started == submitted,
        "{} of the {} queued jobs started",
        started.len(),
        submitted.len()
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_submitted_while_a_round_writes_its_starts_waits_for_the_next_round() {
    let f = fixture();
    let placed = f.submit(f.job(labels("gpu=yes"), WAIT)).await;
    let gpu = f.connect("gpu", 4, "gpu=yes");
    let round = f.round_writing_the_start_of(&placed.id).await;
    // The round is writing its start; a job for another kind of worker arrives.
    let later = f.submit(f.job(labels("zone=x"), WAIT)).await;
    round.await.unwrap().unwrap();
    f.jobs.state().check();
    assert_eq!(told_to_start(&gpu), std::slice::from_ref(&placed.id));
    assert_eq!(f.jobs.state().phase(&placed.id), Some(Phase::Running));
    assert_eq!(f.jobs.state().phase(&later.id), Some(Phase::Queued));

    let zone = f.connect("zone", 1, "zone=x");
    f.jobs.dispatch_round().await.unwrap();
    assert_eq!(told_to_start(&zone), [later.id]);
}

#[tokio::test(start_paused = true)]
async fn a_worker_cut_off_loses_its_jobs_at_once_but_not_the_queued_ones() {
    let f = fixture();
    let w = f.connect("w", 1, "");
    let running = f.submit(f.job(Selector::default(), WAIT)).await;
    let queued = f.submit(f.job(Selector::default(), WAIT)).await;
    assert_eq!(queued.state, JobState::Queued, "w is full");

    f.cut_off(&w, "the worker was revoked while the job ran")
        .await;
    let lost = f.stored(&running.id).await;
    assert_eq!(lost.state, JobState::Lost);
    assert_eq!(
        lost.reason.as_deref(),
        Some("the worker was revoked while the job ran")
    );
    assert_eq!(w.running(), 0);
    assert!(f.jobs.subscribe(&running.id).is_none(), "forgotten");
    assert_eq!(f.stored(&queued.id).await.state, JobState::Queued);
    assert_eq!(f.jobs.state().phase(&queued.id), Some(Phase::Queued));
    f.jobs.state().check();
}

/// An output frame of `job`, as a worker sends it.
fn output(job: &muster_core::job::JobId, text: &'static str) -> Bytes {
    Bytes::from(frame::encode(
        frame::STDOUT,
        job.to_bytes(),
        text.as_bytes(),
    ))
}

fn resume(running: &[&muster_core::job::JobId]) -> WorkerMessage {
    WorkerMessage::Resume {
        running: running.iter().map(|id| id.to_string()).collect(),
        ended: Vec::new(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_waits_for_its_worker_and_goes_on_when_the_worker_reports_it() {
    let f = fixture();
    let w = f.connect("w", 1, "");
    let job = f.submit(f.job(Selector::default(), WAIT)).await;
    assert_eq!(job.state, JobState::Running);
    f.jobs.output(&w, output(&job.id, "before ")).await;

    f.disconnect(&w).await;
    tokio::time::advance(fixture::GRACE / 2).await;
    f.jobs.reap().await;
    assert_eq!(
        f.stored(&job.id).await.state,
        JobState::Running,
        "it waits for its worker"
    );
    // Output sent to the old session after it ended is not taken.
    f.jobs.output(&w, output(&job.id, "stale")).await;

    let back = f.reconnect(&w);
    f.jobs.message(&back, resume(&[&job.id])).await;
    assert!(back.holds(&job.id), "the new session holds it");
    f.jobs.output(&back, output(&job.id, "after")).await;
    tokio::time::advance(fixture::GRACE).await;
    f.jobs.reap().await;
    let done = WorkerMessage::JobFinished {
        id: job.id.to_string(),
        exit: JobExit::Exited { code: 0 },
    };
    f.jobs.message(&back, done).await;
    let stored = f.stored(&job.id).await;
    assert_eq!(stored.state, JobState::Succeeded, "{stored:?}");
    let id = job.id.clone();
    let chunks = f
        .store
        .read(move |tx| tx.read_output(&id, 0, 10))
        .await
        .unwrap();
    let text: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
    assert_eq!(text, b"before after");
    assert_eq!(stored.output_bytes, 12);
}

#[tokio::test(start_paused = true)]
async fn a_job_whose_worker_stays_away_is_lost_after_the_grace_period_and_stopped_if_it_returns() {
    let f = fixture();
    let w = f.connect("w", 1, "");
    let job = f.submit(f.job(Selector::default(), WAIT)).await;
    f.disconnect(&w).await;
    tokio::time::advance(fixture::GRACE).await;
    f.jobs.reap().await;
    let lost = f.stored(&job.id).await;
    assert_eq!(lost.state, JobState::Lost);
    assert!(
        lost.reason
            .as_deref()
            .unwrap_or_default()
            .contains("did not come back"),
        "{lost:?}"
    );
    assert!(f.jobs.subscribe(&job.id).is_none(), "forgotten");

    // The worker comes back with it after all: it must stop it, not run it on.
    let back = f.reconnect(&w);
    f.jobs.message(&back, resume(&[&job.id])).await;
    assert!(!back.holds(&job.id));
    let told: Vec<Command> = back.inbox.drain();
    assert_eq!(
        told,
        [Command::Send(ServerMessage::JobCancel {
            id: job.id.to_string()
        })]
    );
    assert_eq!(f.stored(&job.id).await.state, JobState::Lost);
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_comes_back_without_its_job_loses_it_at_once() {
    let f = fixture();
    let w = f.connect("w", 2, "");
    let job = f.submit(f.job(Selector::default(), WAIT)).await;
    f.disconnect(&w).await;
    let back = f.reconnect(&w);
    // Placed on the new connection before its report arrived: kept.
    let placed = f.submit(f.job(Selector::default(), WAIT)).await;
    assert!(back.holds(&placed.id));
    f.jobs.message(&back, resume(&[])).await;
    let lost = f.stored(&job.id).await;
    assert_eq!(lost.state, JobState::Lost);
    assert!(
        lost.reason
            .as_deref()
            .unwrap_or_default()
            .contains("came back without"),
        "{lost:?}"
    );
    assert_eq!(f.stored(&placed.id).await.state, JobState::Running);
    assert!(back.holds(&placed.id));
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_the_jobs_the_replica_held_wait_for_their_workers() {
    let f = fixture();
    let w = f.connect("w", 1, "");
    let job = f.submit(f.job(Selector::default(), WAIT)).await;
    f.jobs.output(&w, output(&job.id, "one ")).await;
    // A new scheduler on the same store: the server restarted.
    let again = Jobs::new(
        f.store.clone(),
        Arc::new(crate::control::registry::Registry::new()),
        f.clock,
        DEFAULT_OUTPUT_CAP,
        SERVER_ID.into(),
        fixture::GRACE,
    );
    again.recover().await.unwrap();
    assert_eq!(f.stored(&job.id).await.state, JobState::Running);
    let back = f.reconnect(&w);
    again.message(&back, resume(&[&job.id])).await;
    again.output(&back, output(&job.id, "two")).await;
    let done = WorkerMessage::JobFinished {
        id: job.id.to_string(),
        exit: JobExit::Exited { code: 0 },
    };
    again.message(&back, done).await;
    assert_eq!(f.stored(&job.id).await.state, JobState::Succeeded);
    let id = job.id.clone();
    let chunks = f
        .store
        .read(move |tx| tx.read_output(&id, 0, 10))
        .await
        .unwrap();
    assert_eq!(chunks.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_goes_away_while_its_start_is_written_loses_the_job() {
    let f = fixture();
    let job = f.submit(f.job(Selector::default(), WAIT)).await;
    let w = f.connect("w", 1, "");
    let round = f.round_writing_the_start_of(&job.id).await;
    f.disconnect(&w).await;
    round.await.unwrap().unwrap();
    assert_eq!(f.stored(&job.id).await.state, JobState::Lost);
    assert!(f.jobs.subscribe(&job.id).is_none(), "forgotten");
    assert_eq!(w.running(), 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_queued_job_takes_it_out_of_the_queue() {
    let f = fixture();
    let job = f.submit(f.job(Selector::default(), WAIT)).await;
    let mut events = f.jobs.subscribe(&job.id).expect("tracked");
    // As `ops::jobs::cancel` does: cancel in the store, then tell the scheduler.
    let (id, at) = (job.id.clone(), f.clock.now());
    let audit = AuditEvent {
        expected: None,
        at,
        actor: "admin".into(),
        action: "job.cancel".into(),
        target: id.to_string(),
        remote_addr: None,
        outcome: Outcome::Ok,
        detail: String::new(),
    };
    let cancelled = f
        .store
        .write(move |tx| jobs::cancel(tx, &id, at, &audit))
        .await
        .unwrap();
    assert!(matches!(cancelled, Cancel::Dequeued(_)), "{cancelled:?}");
    f.jobs.dequeued(&job.id);
    assert!(matches!(events.recv().await, Some(LiveEvent::Ended)));
    f.jobs.state().check();
    assert!(!f.jobs.state().has_queued());

    let w = f.connect("w", 1, "");
    f.jobs.dispatch_round().await.unwrap();
    assert!(told_to_start(&w).is_empty());
    assert_eq!(f.stored(&job.id).await.state, JobState::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn output_is_numbered_stored_up_to_the_cap_and_passed_on_whole() {
    let f = fixture_with_cap(8);
    let w = f.connect("w", 1, "");
    let job = f.submit(f.job(Selector::default(), WAIT)).await;
    let mut events = f.jobs.subscribe(&job.id).expect("tracked");
    let output = |text: &str| {
        Bytes::from(frame::encode(
            frame::STDOUT,
            job.id.to_bytes(),
            text.as_bytes(),
        ))
    };
    f.jobs.output(&w, output("hello")).await;
    f.jobs.output(&w, output(" world")).await;
    for (seq, text) in [(1, "hello"), (2, " world")] {
        match events.recv().await {
            Some(LiveEvent::Output { seq: s, data, .. }) => {
                assert_eq!((s, &data[..]), (seq, text.as_bytes()));
            }
            other => panic!("expected output, got {other:?}"),
        }
    }
    let stranger = f.connect("stranger", 1, "");
    f.jobs.output(&stranger, output("not mine")).await;

    let done = WorkerMessage::JobFinished {
        id: job.id.to_string(),
        exit: JobExit::Exited { code: 0 },
    };
    f.jobs.message(&w, done).await;
    let id = job.id.clone();
    let stored = f
        .store
        .read(move |tx| tx.read_output(&id, 0, 10))
        .await
        .unwrap();
    let kept: Vec<(u64, &[u8])> = stored.iter().map(|c| (c.seq, &c.data[..])).collect();
    assert_eq!(kept, [(1, &b"hello"[..]), (2, &b" wo"[..])]);
    let ended = f.stored(&job.id).await;
    assert_eq!(ended.state, JobState::Succeeded);
    assert_eq!((ended.output_bytes, ended.truncated), (11, true));
}

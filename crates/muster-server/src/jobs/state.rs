//! The scheduler's state: the queue, and every job this replica tracks until it ends.
//!
//! One struct, behind one lock in [`super::Jobs`], so that what it promises holds between any
//! two calls:
//!
//! - a job is in the queue exactly when it is tracked in phase [`Phase::Queued`], and at most
//!   once;
//! - a job leaves the queue only in one of its methods, which also moves it to its next phase.
//!
//! Which worker a placed job holds a slot on is kept by that worker's session
//! ([`crate::control::registry::Session::reserve`]); the dispatcher takes a reservation while
//! holding this state's lock and never the other way round.
//!
//! Just over 400 lines with its tests (about 270 without), which exercise each promise above
//! through the methods that keep it, beside them.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use muster_core::Timestamp;
use muster_core::job::{Job, JobId};
use muster_store::flows::jobs::{Assignment, Held};

use super::live::{Follower, Followers, Subscription};

/// Where a tracked job is in its life on this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// In the queue, waiting for a worker with a free slot.
    Queued,
    /// Placed on a worker; its start is being written.
    Starting,
    /// Started on a worker.
    Running,
    /// Out of the queue because its queue time is up; its end is being written.
    Expiring,
}

/// Who holds a running job on this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Not running (yet).
    Nobody,
    /// The session (connection id) of its worker.
    Session(u64),
    /// Its worker went away (or this replica restarted): it ends `lost` at `deadline` unless the
    /// worker reports it first, here or on another replica.
    Away { deadline: Timestamp },
}

/// A job that has not ended: where it is, who holds it, its output so far, its followers.
struct Tracked {
    job: Job,
    phase: Phase,
    holder: Holder,
    /// An admin cancelled it while its worker was away: the worker is told when it is back.
    cancel_on_return: bool,
    output: Output,
    followers: Followers,
}

/// Counts of a job's output, for numbering chunks and for the per-job cap.
#[derive(Debug, Default)]
struct Output {
    next_seq: u64,
    total_bytes: u64,
    stored_bytes: u64,
    truncated: bool,
}

/// One output chunk as received: its number, and how much of it to store (under the cap).
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk {
    pub seq: u64,
    pub keep: Bytes,
}

/// A running job as the store holds it, with its output counted on from where the store has it.
fn counted(held: Held) -> (Job, Output) {
    let Held { job, output } = held;
    let counted = Output {
        next_seq: output.last_seq,
        total_bytes: job.output_bytes.max(output.stored_bytes),
        stored_bytes: output.stored_bytes,
        truncated: job.truncated,
    };
    (job, counted)
}

#[derive(Default)]
pub struct SchedulerState {
    /// Queued jobs in submission order.
    queue: VecDeque<JobId>,
    jobs: HashMap<JobId, Tracked>,
}

impl SchedulerState {
    fn track(&mut self, job: Job, phase: Phase, holder: Holder) {
        let tracked = Tracked {
            job,
            phase,
            holder,
            cancel_on_return: false,
            output: Output::default(),
            followers: Followers::default(),
        };
        self.jobs.insert(tracked.job.id.clone(), tracked);
    }

    /// Tracks a running job held elsewhere until now (another replica, this one before a
    /// restart), its output counted on from where the store has it.
    fn track_held(&mut self, held: Held, holder: Holder) {
        let id = held.job.id.clone();
        let (job, counted) = counted(held);
        self.track(job, Phase::Running, holder);
        if let Some(tracked) = self.jobs.get_mut(&id) {
            tracked.output = counted;
        }
    }

    /// After a restart: a job this replica held, waiting for its worker until `deadline`.
    pub fn track_away(&mut self, held: Held, deadline: Timestamp) {
        if !self.jobs.contains_key(&held.job.id) {
            self.track_held(held, Holder::Away { deadline });
        }
    }

    /// Its worker reported the job on session `conn`: that session holds it now. Returns
    /// whether an admin cancelled it while the worker was away.
    pub fn attach(&mut self, held: Held, conn: u64) -> bool {
        match self.jobs.get_mut(&held.job.id) {
            Some(tracked) if tracked.phase == Phase::Running => {
                tracked.holder = Holder::Session(conn);
                std::mem::take(&mut tracked.cancel_on_return)
            }
            Some(tracked) => {
                // A stale entry: queued here (the start another replica made was not heard
                // yet), or being placed by a round that will find it started. The store says
                // its worker runs it, and the worker reported it on `conn`: it runs here now.
                // Left as it was, a round could forget it (and release the session's hold, so
                // the worker's end was dropped) or a take-over could count it away and lose it.
                let was_queued = tracked.phase == Phase::Queued;
                let (job, output) = counted(held);
                tracked.job = job;
                tracked.output = output;
                tracked.phase = Phase::Running;
                tracked.holder = Holder::Session(conn);
                if was_queued {
                    self.prune_queue();
                }
                false
            }
            None => {
                self.track_held(held, Holder::Session(conn));
                false
            }
        }
    }

    /// Session `conn` ended: the job waits for its worker until `deadline`. False (nothing
    /// changes) if another session holds it now (the worker came back first) or it is not
    /// running here.
    pub fn detach(&mut self, id: &JobId, conn: u64, deadline: Timestamp) -> bool {
        match self.jobs.get_mut(id) {
            Some(tracked) if tracked.holder == Holder::Session(conn) => {
                tracked.holder = Holder::Away { deadline };
                true
            }
            _ => false,
        }
    }

    /// Jobs whose worker stayed away past their deadline.
    pub fn overdue(&self, now: Timestamp) -> Vec<JobId> {
        self.jobs
            .iter()
            .filter(|(_, t)| matches!(t.holder, Holder::Away { deadline } if deadline <= now))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// An admin cancelled a running job: true if its worker is away (it is told when it is
    /// back).
    pub fn cancel_when_back(&mut self, id: &JobId) -> bool {
        match self.jobs.get_mut(id) {
            Some(tracked) if matches!(tracked.holder, Holder::Away { .. }) => {
                tracked.cancel_on_return = true;
                true
            }
            _ => false,
        }
    }

    /// Tracks a queued job and puts it at the back of the queue, in one step: a dispatch round
    /// never sees it queued but not tracked. False, and nothing changes, if the job is tracked
    /// already (a replica hears of its own jobs from the store too).
    pub fn enqueue(&mut self, job: Job) -> bool {
        if self.jobs.contains_key(&job.id) {
            return false;
        }
        self.queue.push_back(job.id.clone());
        self.track(job, Phase::Queued, Holder::Nobody);
        true
    }

    /// Tracks a job that started at submission on session `conn`, without ever being queued.
    pub fn track_running(&mut self, job: Job, conn: u64) {
        self.track(job, Phase::Running, Holder::Session(conn));
    }

    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Queued jobs, in order.
    pub fn queued(&self) -> impl Iterator<Item = &Job> {
        self.queue
            .iter()
            .filter_map(|id| self.jobs.get(id).map(|t| &t.job))
    }

    /// The earliest queue deadline: when a dispatch round must run even if nothing else happens.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.queued().map(|job| job.queue_deadline).min()
    }

    /// Takes jobs out of the queue in one pass: each of `starting` to [`Phase::Starting`], with
    /// the job as [`Job::start`] leaves it under its assignment, and each of `expiring` to
    /// [`Phase::Expiring`]. For each assignment, in order, the started job, or `None` if the job
    /// was not queued any more (nothing changed for it). For the expiring, the jobs taken.
    pub fn take(
        &mut self,
        starting: &[Assignment],
        expiring: &[JobId],
        at: Timestamp,
    ) -> (Vec<Option<Job>>, Vec<Job>) {
        let mut started = Vec::with_capacity(starting.len());
        for assignment in starting {
            let job = self.queued_mut(&assignment.job).and_then(|tracked| {
                let mut job = tracked.job.clone();
                match assignment.start(&mut job, at) {
                    Ok(()) => {
                        tracked.phase = Phase::Starting;
                        Some(job)
                    }
                    Err(refused) => {
                        // Cannot happen to a queued job; kept queued, and said, if it does.
                        tracing::error!(error = %refused, "a queued job did not start");
                        None
                    }
                }
            });
            started.push(job);
        }
        let mut expired = Vec::with_capacity(expiring.len());
        for id in expiring {
            if let Some(tracked) = self.queued_mut(id) {
                tracked.phase = Phase::Expiring;
                expired.push(tracked.job.clone());
            }
        }
        self.prune_queue();
        (started, expired)
    }

    /// A start was written: the job runs, held by session `conn`. False if it is not starting
    /// here any more (it ended, or was forgotten, meanwhile).
    pub fn started(&mut self, job: Job, conn: u64) -> bool {
        match self.jobs.get_mut(&job.id) {
            Some(tracked) if tracked.phase == Phase::Starting => {
                tracked.job = job;
                tracked.phase = Phase::Running;
                tracked.holder = Holder::Session(conn);
                true
            }
            _ => false,
        }
    }

    /// Starts that were not written go back to the front of the queue, in their order.
    pub fn unstart(&mut self, ids: &[JobId]) {
        for id in ids.iter().rev() {
            if let Some(tracked) = self.jobs.get_mut(id)
                && tracked.phase == Phase::Starting
            {
                tracked.phase = Phase::Queued;
                self.queue.push_front(id.clone());
            }
        }
    }

    /// A round placed `id` and found it already started in the store (cancelled, started by
    /// another replica — or adopted here meanwhile, when its worker reported it). Forgets it
    /// unless it runs here now; returns the session that holds it if one does, whose hold the
    /// round must then leave alone.
    pub fn settle_unstarted(&mut self, id: &JobId) -> Option<u64> {
        match self.jobs.get(id) {
            Some(tracked) if tracked.phase == Phase::Running => match tracked.holder {
                Holder::Session(conn) => Some(conn),
                Holder::Nobody | Holder::Away { .. } => None,
            },
            _ => {
                self.forget(id);
                None
            }
        }
    }

    /// Stops tracking a job (it ended, or another replica has it), out of the queue too, and
    /// tells its followers here. False if it was not tracked.
    pub fn forget(&mut self, id: &JobId) -> bool {
        let Some(tracked) = self.jobs.remove(id) else {
            return false;
        };
        if tracked.phase == Phase::Queued {
            self.queue.retain(|queued| queued != id);
        }
        tracked.followers.end();
        true
    }

    /// A new follower of a tracked job's live output, from its next chunk on.
    pub fn subscribe(&mut self, id: &JobId) -> Option<Subscription> {
        let tracked = self.jobs.get_mut(id)?;
        Some(tracked.followers.subscribe(tracked.output.next_seq + 1))
    }

    /// Numbers an output chunk of a tracked job and keeps what fits under `cap` bytes stored.
    pub fn record_output(&mut self, id: &JobId, data: &Bytes, cap: u64) -> Option<Chunk> {
        let output = &mut self.jobs.get_mut(id)?.output;
        output.next_seq += 1;
        output.total_bytes += data.len() as u64;
        let room = cap.saturating_sub(output.stored_bytes);
        let keep = data.slice(..usize::try_from(room).unwrap_or(usize::MAX).min(data.len()));
        output.stored_bytes += keep.len() as u64;
        if keep.len() < data.len() {
            output.truncated = true;
        }
        Some(Chunk {
            seq: output.next_seq,
            keep,
        })
    }

    /// A tracked job's followers here, to deliver its output to outside the lock.
    pub fn followers(&self, id: &JobId) -> Vec<Follower> {
        self.jobs
            .get(id)
            .map(|t| t.followers.to_deliver())
            .unwrap_or_default()
    }

    /// All the output a tracked job sent, and whether some was not stored.
    pub fn output_stats(&self, id: &JobId) -> Option<(u64, bool)> {
        let output = &self.jobs.get(id)?.output;
        Some((output.total_bytes, output.truncated))
    }

    /// A tracked job's run time limit.
    pub fn timeout(&self, id: &JobId) -> Option<Duration> {
        self.jobs.get(id)?.job.timeout
    }

    fn queued_mut(&mut self, id: &JobId) -> Option<&mut Tracked> {
        self.jobs
            .get_mut(id)
            .filter(|tracked| tracked.phase == Phase::Queued)
    }

    /// Drops from the queue, in one pass, every job whose phase moved on.
    fn prune_queue(&mut self) {
        let jobs = &self.jobs;
        self.queue
            .retain(|id| jobs.get(id).is_some_and(|t| t.phase == Phase::Queued));
    }

    /// Checks the promises in the module doc (for tests).
    #[cfg(test)]
    pub fn check(&self) {
        let mut seen = std::collections::HashSet::new();
        for id in &self.queue {
            assert!(seen.insert(id), "{id} is queued twice");
            assert_eq!(
                self.jobs.get(id).map(|t| t.phase),
                Some(Phase::Queued),
                "{id} is queued, so it is tracked as queued"
            );
        }
        for (id, tracked) in &self.jobs {
            if tracked.phase == Phase::Queued {
                assert!(
                    seen.contains(id),
                    "{id} is tracked as queued, so it is queued"
                );
            }
        }
    }

    /// A tracked job's phase (for tests).
    #[cfg(test)]
    pub fn phase(&self, id: &JobId) -> Option<Phase> {
        self.jobs.get(id).map(|t| t.phase)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use muster_core::job::{JobState, Selector};
    use muster_core::{Name, WorkerId};

    use super::*;
    use crate::jobs::LiveEvent;

    fn job(n: u8) -> Job {
        Job::queued(
            id(n),
            vec!["true".into()],
            Selector::default(),
            Timestamp::from_unix_millis(1_000),
            Timestamp::from_unix_millis(60_000),
        )
    }

    fn id(n: u8) -> JobId {
        JobId::parse(&format!("{n:016x}")).unwrap()
    }

    /// A job still queued here when its worker reports it running (another replica started it,
    /// and this one had not heard yet): it runs here, held by the reporting session, out of the
    /// queue; a round that placed it meanwhile and finds it started leaves it alone. Before, it
    /// stayed queued: the round forgot it and released the session's hold (the worker's end was
    /// dropped and the job stayed `running` for good), or a take-over counted it away and it
    /// ended `lost` with its worker connected.
    #[test]
    fn a_job_queued_here_and_reported_by_its_worker_runs_here() {
        let mut state = queued(2);
        let mut running = job(1);
        to_w(1)
            .start(&mut running, Timestamp::from_unix_millis(2_000))
            .unwrap();
        let held = Held {
            job: running,
            output: muster_store::OutputPosition {
                last_seq: 3,
                stored_bytes: 10,
            },
        };
        assert!(!state.attach(held, 7));
        state.check();
        assert_eq!(order(&state), vec![id(2)], "out of the queue");
        assert_eq!(
            state.settle_unstarted(&id(1)),
            Some(7),
            "held by the session"
        );
        assert!(state.jobs.contains_key(&id(1)), "still tracked");
        // A job nobody adopted is forgotten as before.
        assert_eq!(state.settle_unstarted(&id(2)), None);
        assert!(!state.jobs.contains_key(&id(2)));
        state.check();
    }

    fn to_w(n: u8) -> Assignment {
        Assignment {
            job: id(n),
            worker: WorkerId::parse(&"ab".repeat(16)).unwrap(),
            worker_name: Name::parse("w").unwrap(),
            dispatcher: "replica-a".into(),
        }
    }

    /// A state with jobs 1..=n queued in order.
    fn queued(n: u8) -> SchedulerState {
        let mut state = SchedulerState::default();
        for i in 1..=n {
            assert!(state.enqueue(job(i)));
        }
        state.check();
        state
    }

    fn order(state: &SchedulerState) -> Vec<JobId> {
        state.queued().map(|j| j.id.clone()).collect()
    }

    const AT: Timestamp = Timestamp::from_unix_millis(2_000);

    #[test]
    fn a_job_is_queued_once_however_often_it_is_heard_of() {
        let mut state = queued(2);
        assert!(!state.enqueue(job(1)), "already tracked");
        state.track_running(job(3), 1);
        assert!(!state.enqueue(job(3)), "tracked as running");
        state.check();
        assert_eq!(order(&state), [id(1), id(2)]);
    }

    #[test]
    fn taking_a_round_moves_jobs_out_of_the_queue_and_keeps_the_order_of_the_rest() {
        let mut state = queued(5);
        let (started, expired) = state.take(&[to_w(2), to_w(4)], &[id(1)], AT);
        state.check();
        assert_eq!(order(&state), [id(3), id(5)]);
        let started: Vec<Job> = started.into_iter().map(Option::unwrap).collect();
        assert_eq!(started[0].state, JobState::Running, "through Job::start");
        assert_eq!(started[1].started_at, Some(AT));
        assert_eq!(expired, [job(1)]);
        assert_eq!(state.phase(&id(2)), Some(Phase::Starting));
        assert_eq!(state.phase(&id(1)), Some(Phase::Expiring));
        assert_eq!(state.next_deadline(), Some(job(3).queue_deadline));

        assert!(state.started(started[0].clone(), 1));
        assert_eq!(state.phase(&id(2)), Some(Phase::Running));
        assert!(
            !state.started(started[0].clone(), 1),
            "a start is confirmed once"
        );
        state.check();
    }

    #[test]
    fn a_job_not_queued_any_more_is_not_taken() {
        let mut state = queued(2);
        state.forget(&id(1));
        let (started, expired) = state.take(&[to_w(1), to_w(2)], &[id(1)], AT);
        assert!(started[0].is_none() && started[1].is_some());
        assert!(expired.is_empty());
        let (again, _) = state.take(&[to_w(2)], &[], AT);
        assert_eq!(again, [None], "starting already");
        state.check();
    }

    #[test]
    fn starts_that_were_not_written_go_back_to_the_front_in_order() {
        let mut state = queued(4);
        state.take(&[to_w(2), to_w(3)], &[], AT);
        state.unstart(&[id(2), id(3)]);
        state.check();
        assert_eq!(order(&state), [id(2), id(3), id(1), id(4)]);
        assert_eq!(
            state.queued().next().map(|j| j.state),
            Some(JobState::Queued)
        );
    }

    #[test]
    fn forgetting_a_job_takes_it_out_of_the_queue_and_tells_its_followers() {
        let mut state = queued(3);
        let mut events = state.subscribe(&id(2)).unwrap();
        assert!(state.forget(&id(2)));
        assert!(matches!(
            events.recv().now_or_never(),
            Some(Some(LiveEvent::Ended))
        ));
        assert!(!state.forget(&id(2)));
        assert!(state.subscribe(&id(2)).is_none());
        state.check();
        assert_eq!(order(&state), [id(1), id(3)]);
    }

    #[test]
    fn output_past_the_cap_is_counted_but_not_kept() {
        let mut state = queued(1);
        let chunk = |state: &mut SchedulerState, text: &'static str| {
            state.record_output(&id(1), &Bytes::from_static(text.as_bytes()), 8)
        };
        let first = chunk(&mut state, "hello").unwrap();
        assert_eq!((first.seq, &first.keep[..]), (1, &b"hello"[..]));
        assert_eq!(state.output_stats(&id(1)), Some((5, false)));
        let second = chunk(&mut state, " world").unwrap();
        assert_eq!((second.seq, &second.keep[..]), (2, &b" wo"[..]));
        let third = chunk(&mut state, "!").unwrap();
        assert_eq!((third.seq, third.keep.len()), (3, 0));
        assert_eq!(state.output_stats(&id(1)), Some((12, true)));
        assert!(state.record_output(&id(9), &Bytes::new(), 8).is_none());
    }
}

//! Placement: which queued jobs go to which worker now, and which have waited too long.
//!
//! [`plan`] is a pure function of the queue (in order, with each job's selector and queue
//! deadline), the workers' names, labels, running jobs and slots, and `now`, so every rule is a
//! unit test. Each job goes where [`muster_core::job::place`] says (the least loaded matching
//! worker with a free slot); the slots it fills count for the jobs after it in the same round.
//! The dispatcher (`dispatch.rs`) applies the plan: it reserves the slots in the sessions
//! themselves, which may have filled meanwhile, and then writes the starts.

use muster_core::job::{Candidate, Job, JobId, place};
use muster_core::{Labels, Name, Timestamp};

/// One round's decisions, each list in queue order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Jobs to start, each with its worker's index in the `workers` given to [`plan`].
    pub placed: Vec<(JobId, usize)>,
    /// Jobs whose queue deadline has come: they end `failed` without running.
    pub expired: Vec<JobId>,
}

/// A connected worker as placement sees it: plain data, borrowed from its session, with its
/// running jobs counted once at the start of the round.
#[derive(Debug, Clone, Copy)]
pub struct Worker<'a> {
    pub name: &'a Name,
    pub labels: &'a Labels,
    pub running: u32,
    pub slots: u32,
}

impl Candidate for Worker<'_> {
    fn name(&self) -> &Name {
        self.name
    }

    fn labels(&self) -> &Labels {
        self.labels
    }

    fn running(&self) -> u32 {
        self.running
    }

    fn slots(&self) -> u32 {
        self.slots
    }
}

/// Decides one round. A job whose queue deadline is `now` or earlier expires, even if a worker
/// is free; every other job is placed if a matching worker has a free slot, and otherwise
/// waits. Jobs are considered in queue order, so an earlier job gets the first pick, but a job
/// that cannot be placed does not hold back the ones behind it.
pub fn plan<'a>(
    queue: impl IntoIterator<Item = &'a Job>,
    workers: &[Worker<'_>],
    now: Timestamp,
) -> Plan {
    // The slots this round fills count for the jobs after it.
    let mut loads = workers.to_vec();
    // With every slot taken, only deadlines matter: no need to match each job against the fleet.
    let mut free: u64 = loads
        .iter()
        .map(|w| u64::from(w.slots.saturating_sub(w.running)))
        .sum();
    let mut plan = Plan::default();
    for job in queue {
        if now >= job.queue_deadline {
            plan.expired.push(job.id.clone());
            continue;
        }
        if free == 0 {
            continue;
        }
        let target = place(&job.selector, &loads);
        let Some(index) = target.and_then(|t| loads.iter().position(|w| std::ptr::eq(w, t))) else {
            continue;
        };
        loads[index].running += 1;
        free -= 1;
        plan.placed.push((job.id.clone(), index));
    }
    plan
}

#[cfg(test)]
mod tests {
    use muster_core::job::Selector;

    use super::*;

    /// A worker's name, labels, running jobs and slots.
    type Spec = (Name, Labels, u32, u32);

    fn worker(name: &str, labels: &str, running: u32, slots: u32) -> Spec {
        (
            Name::parse(name).unwrap(),
            Labels::parse_list(labels).unwrap(),
            running,
            slots,
        )
    }

    const NOW: i64 = 1_000_000;

    /// Job number `n`, for any worker with `labels` (or only `named`), waiting until `NOW + wait`.
    fn job(n: u8, named: Option<&str>, labels: &str, wait: i64) -> Job {
        let selector = Selector {
            worker: named.map(|w| Name::parse(w).unwrap()),
            labels: Labels::parse_list(labels).unwrap(),
        };
        Job::queued(
            JobId::parse(&format!("{n:016x}")).unwrap(),
            vec!["true".into()],
            selector,
            Timestamp::from_unix_millis(NOW - 1_000),
            Timestamp::from_unix_millis(NOW + wait),
        )
    }

    fn any(n: u8) -> Job {
        job(n, None, "", 60_000)
    }

    /// The plan, as (job number, worker name) pairs and expired job numbers.
    fn decide(queue: &[Job], fleet: &[Spec]) -> (Vec<(u64, String)>, Vec<u64>) {
        let workers: Vec<Worker<'_>> = fleet
            .iter()
            .map(|(name, labels, running, slots)| Worker {
                name,
                labels,
                running: *running,
                slots: *slots,
            })
            .collect();
        let plan = plan(queue, &workers, Timestamp::from_unix_millis(NOW));
        let number = |id: &JobId| u64::from_str_radix(id.as_str(), 16).unwrap();
        (
            plan.placed
                .iter()
                .map(|(id, i)| (number(id), fleet[*i].0.as_str().to_owned()))
                .collect(),
            plan.expired.iter().map(number).collect(),
        )
    }

    fn placed(pairs: &[(u64, &str)]) -> Vec<(u64, String)> {
        pairs.iter().map(|(n, w)| (*n, (*w).to_owned())).collect()
    }

    #[test]
    fn jobs_are_placed_in_queue_order_on_the_least_loaded_worker() {
        let fleet = [worker("a", "", 1, 2), worker("b", "", 0, 2)];
        let queue = [any(1), any(2), any(3), any(4)];
        let (started, expired) = decide(&queue, &fleet);
        // b is emptier; then both are half full and a comes first by name; then only b has room.
        assert_eq!(started, placed(&[(1, "b"), (2, "a"), (3, "b")]));
        assert!(expired.is_empty());
    }

    #[test]
    fn several_jobs_in_one_round_fill_the_free_slots_and_no_more() {
        let fleet = [worker("a", "", 0, 3), worker("b", "", 2, 3)];
        let queue: Vec<Job> = (1..=6).map(any).collect();
        let (started, _) = decide(&queue, &fleet);
        assert_eq!(started.len(), 4, "3 free on a, 1 on b: {started:?}");
        let on = |w: &str| started.iter().filter(|(_, n)| n == w).count();
        assert_eq!((on("a"), on("b")), (3, 1));
        let numbers: Vec<u64> = started.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 2, 3, 4], "the first four in the queue");
    }

    #[test]
    fn a_full_worker_and_a_worker_without_the_labels_get_nothing() {
        let fleet = [worker("full", "gpu=yes", 2, 2), worker("cpu", "", 0, 4)];
        let queue = [job(1, None, "gpu=yes", 60_000), any(2)];
        let (started, expired) = decide(&queue, &fleet);
        assert_eq!(started, placed(&[(2, "cpu")]), "job 1 waits for a GPU slot");
        assert!(expired.is_empty());
    }

    #[test]
    fn a_job_for_a_named_worker_goes_there_or_waits_without_blocking_the_queue() {
        let fleet = [
            worker("a", "", 0, 4),
            worker("b", "", 3, 4),
            worker("c", "", 1, 1),
        ];
        let queue = [
            job(1, Some("b"), "", 60_000),
            job(2, Some("c"), "", 60_000),
            any(3),
        ];
        let (started, _) = decide(&queue, &fleet);
        // Job 1 goes to b though a is emptier; c is full, so job 2 waits and job 3 still goes.
        assert_eq!(started, placed(&[(1, "b"), (3, "a")]));
    }

    #[test]
    fn a_job_expires_at_its_queue_deadline_even_with_a_worker_free() {
        let fleet = [worker("a", "", 0, 4)];
        let queue = [
            job(1, None, "", -1),
            job(2, None, "", 0),
            job(3, None, "", 1),
        ];
        let (started, expired) = decide(&queue, &fleet);
        assert_eq!(expired, [1, 2], "at the deadline or past it");
        assert_eq!(
            started,
            placed(&[(3, "a")]),
            "one millisecond to spare is enough"
        );
    }

    #[test]
    fn deadlines_pass_while_every_slot_is_taken() {
        let fleet = [worker("a", "", 1, 1)];
        let queue = [any(1), job(2, None, "", 0), any(3)];
        let (started, expired) = decide(&queue, &fleet);
        assert!(started.is_empty());
        assert_eq!(expired, [2]);
    }

    #[test]
    fn a_job_whose_worker_went_away_waits_then_expires() {
        // The named worker's session ended: it is not among the workers of this round.
        let queue = [job(1, Some("gone"), "", 30_000)];
        let fleet = [worker("a", "", 0, 4)];
        assert_eq!(decide(&queue, &fleet), (vec![], vec![]), "it waits");
        assert_eq!(
            decide(&queue, &[]),
            (vec![], vec![]),
            "with nobody connected too"
        );
        let late = [job(1, Some("gone"), "", 0)];
        assert_eq!(
            decide(&late, &fleet),
            (vec![], vec![1]),
            "until its deadline"
        );
    }
}

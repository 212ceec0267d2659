//! Jobs: what runs where, the job state machine, and placement.
//!
//! ```text
//! queued ──► running ──► succeeded | failed | cancelled | lost
//!   │
//!   └──► cancelled | failed (no matching worker in time)
//! ```
//!
//! A job runs at most once: `running` is entered only through [`Job::start`] (in memory) and one
//! conditional update (in the store), and a job whose worker goes away mid-run ends `lost` — it
//! is never put back in the queue.
//!
//! Over 400 lines only with its tests (about 370 without): every edge of the state machine is
//! tested next to where it is written, as in `token.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::labels::Labels;
use crate::name::Name;
use crate::time::Timestamp;
use crate::worker::WorkerId;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "job id `{0}` is malformed: job ids are 16 hexadecimal digits, as `muster job list` shows them"
)]
pub struct JobIdError(String);

impl JobId {
    pub fn generate<R: rand::RngCore + rand::CryptoRng>(rng: &mut R) -> Self {
        let mut buf = [0u8; 8];
        rng.fill_bytes(&mut buf);
        Self(hex::encode(buf))
    }

    pub fn parse(input: &str) -> Result<Self, JobIdError> {
        let ok = input.len() == 16 && input.bytes().all(|b| b.is_ascii_hexdigit());
        if ok {
            Ok(Self(input.to_ascii_lowercase()))
        } else {
            Err(JobIdError(crate::name::shorten(input)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 8 raw bytes, as carried in binary output frames.
    pub fn to_bytes(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        if let Ok(bytes) = hex::decode(&self.0) {
            out.copy_from_slice(&bytes[..8.min(bytes.len())]);
        }
        out
    }

    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(hex::encode(bytes))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Lost,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Lost => "lost",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        JobState::ALL.into_iter().find(|s| s.as_str() == input)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }

    /// The edges of the job state machine.
    pub fn can_become(self, next: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, next),
            (Queued, Running)
                | (Queued, Cancelled)
                | (Queued, Failed)
                | (Running, Succeeded)
                | (Running, Failed)
                | (Running, Cancelled)
                | (Running, Lost)
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a job may run: a named worker, or any worker whose labels include these.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    pub worker: Option<Name>,
    pub labels: Labels,
}

impl Selector {
    pub fn matches(&self, name: &Name, labels: &Labels) -> bool {
        self.worker.as_ref().is_none_or(|w| w == name) && labels.is_superset_of(&self.labels)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.worker, self.labels.is_empty()) {
            (Some(w), true) => write!(f, "worker `{w}`"),
            (Some(w), false) => write!(f, "worker `{w}` with labels {}", self.labels),
            (None, false) => write!(f, "a worker with labels {}", self.labels),
            (None, true) => f.write_str("any worker"),
        }
    }
}

/// A worker that could take a job, as the scheduler sees it.
pub trait Candidate {
    fn name(&self) -> &Name;
    fn labels(&self) -> &Labels;
    fn running(&self) -> u32;
    fn slots(&self) -> u32;
}

/// Picks where a job goes: among matching candidates with a free slot, the least loaded (by the
/// fraction of slots in use, then by running jobs, then by name for determinism).
pub fn place<'a, C: Candidate + 'a>(
    selector: &Selector,
    candidates: impl IntoIterator<Item = &'a C>,
) -> Option<&'a C> {
    candidates
        .into_iter()
        .filter(|c| c.running() < c.slots() && selector.matches(c.name(), c.labels()))
        .min_by(|a, b| {
            let load = |c: &C| u64::from(c.running()) * 1_000_000 / u64::from(c.slots().max(1));
            load(a)
                .cmp(&load(b))
                .then(a.running().cmp(&b.running()))
                .then(a.name().cmp(b.name()))
        })
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    /// Killed by a signal it did not ask for.
    Signalled(i32),
    TimedOut(Duration),
    Cancelled,
    /// The command could not be started (not found, not executable...).
    SpawnFailed(String),
    /// The worker went away mid-run (disconnected, revoked, expired, server restart).
    Lost(String),
    /// No matching worker had a free slot before the queue timeout.
    QueueTimeout(Duration),
}

impl Ending {
    pub fn state(&self) -> JobState {
        match self {
            Ending::Exited(0) => JobState::Succeeded,
            Ending::Exited(_)
            | Ending::Signalled(_)
            | Ending::TimedOut(_)
            | Ending::SpawnFailed(_)
            | Ending::QueueTimeout(_) => JobState::Failed,
            Ending::Cancelled => JobState::Cancelled,
            Ending::Lost(_) => JobState::Lost,
        }
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Ending::Exited(code) => Some(*code),
            _ => None,
        }
    }

    /// What the store keeps of this ending for programs to decide on (the words go in `reason`).
    pub fn kind(&self) -> EndingKind {
        match self {
            Ending::Exited(code) => EndingKind::Exited(*code),
            Ending::Signalled(signal) => EndingKind::Signalled(*signal),
            Ending::TimedOut(_) => EndingKind::TimedOut,
            Ending::Cancelled => EndingKind::Cancelled,
            Ending::SpawnFailed(_) => EndingKind::SpawnFailed,
            Ending::Lost(_) => EndingKind::Lost,
            Ending::QueueTimeout(_) => EndingKind::QueueTimeout,
        }
    }

    /// Words for the record's `reason`, when there is more to say than the exit code.
    pub fn reason(&self) -> Option<String> {
        match self {
            Ending::Exited(_) => None,
            Ending::Signalled(sig) => Some(format!("killed by signal {sig}")),
            Ending::TimedOut(d) => Some(format!(
                "timed out after {}",
                humantime::format_duration(*d)
            )),
            Ending::Cancelled => Some("cancelled".into()),
            Ending::SpawnFailed(why) => Some(format!("could not start the command: {why}")),
            Ending::Lost(why) => Some(why.clone()),
            Ending::QueueTimeout(d) => Some(format!(
                "no matching worker had a free slot within {}",
                humantime::format_duration(*d)
            )),
        }
    }
}

/// How a job ended, without the words: what is stored with an ended job so that programs (the
/// exit code of `muster job run`) decide on a kind, never on the `reason` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndingKind {
    Exited(i32),
    Signalled(i32),
    TimedOut,
    Cancelled,
    SpawnFailed,
    Lost,
    QueueTimeout,
}

impl EndingKind {
    /// The kind's word, as stored (the code and the signal are stored beside it).
    pub fn as_str(self) -> &'static str {
        match self {
            EndingKind::Exited(_) => "exited",
            EndingKind::Signalled(_) => "signalled",
            EndingKind::TimedOut => "timed_out",
            EndingKind::Cancelled => "cancelled",
            EndingKind::SpawnFailed => "spawn_failed",
            EndingKind::Lost => "lost",
            EndingKind::QueueTimeout => "no_worker",
        }
    }

    /// Reads a stored kind back: its word, with the exit code or the signal it needs.
    pub fn parse(word: &str, exit_code: Option<i32>, signal: Option<i32>) -> Option<Self> {
        Some(match word {
            "exited" => EndingKind::Exited(exit_code?),
            "signalled" => EndingKind::Signalled(signal?),
            "timed_out" => EndingKind::TimedOut,
            "cancelled" => EndingKind::Cancelled,
            "spawn_failed" => EndingKind::SpawnFailed,
            "lost" => EndingKind::Lost,
            "no_worker" => EndingKind::QueueTimeout,
            _ => return None,
        })
    }

    pub fn signal(self) -> Option<i32> {
        match self {
            EndingKind::Signalled(signal) => Some(signal),
            _ => None,
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub command: Vec<String>,
    /// Extra environment. Values may be secrets: views show only the keys.
    pub env: BTreeMap<String, String>,
    pub selector: Selector,
    pub timeout: Option<Duration>,
    pub queue_deadline: Timestamp,
    pub state: JobState,
    pub worker_id: Option<WorkerId>,
    pub worker_name: Option<Name>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    /// How it ended, once it has (`None` also for a job that ended before kinds were stored and
    /// whose kind could not be told from its words).
    pub ending: Option<EndingKind>,
    pub output_bytes: u64,
    pub truncated: bool,
    /// The server replica that started it: after a restart, a replica writes off only the jobs
    /// it was running itself.
    pub dispatcher: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobSpecError {
    #[error("no command given; put it after `--`, like `muster job run -- uname -a`")]
    NoCommand,
    #[error("the command has {0} arguments; the most is 4096")]
    TooManyArguments(usize),
    #[error("the command and its arguments are larger than 256 KiB")]
    TooLarge,
    #[error(
        "environment variable name `{0}` is not valid; use letters, digits and `_`, not starting with a digit"
    )]
    BadEnvName(String),
    #[error("an argument or environment value contains a NUL byte")]
    NulByte,
}

/// A change of state the job state machine does not allow (see [`JobState::can_become`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job `{id}` is {from}; it cannot become {to}")]
pub struct TransitionError {
    pub id: JobId,
    pub from: JobState,
    pub to: JobState,
}

impl Job {
    /// A new job, as submitted: queued, with no extra environment and no run time limit (set
    /// `env` and `timeout` on the result), waiting for a worker until `queue_deadline`.
    pub fn queued(
        id: JobId,
        command: Vec<String>,
        selector: Selector,
        created_at: Timestamp,
        queue_deadline: Timestamp,
    ) -> Self {
        Self {
            id,
            command,
            env: BTreeMap::new(),
            selector,
            timeout: None,
            queue_deadline,
            state: JobState::Queued,
            worker_id: None,
            worker_name: None,
            created_at,
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: None,
            output_bytes: 0,
            truncated: false,
            dispatcher: None,
            ending: None,
        }
    }

    /// `queued → running` on `worker`, started by the server replica `dispatcher` at `at`: the
    /// only way a job starts, whether the scheduler found a free slot at submission or placed it
    /// from the queue later. Refused, leaving the job as it was, unless the job is queued.
    pub fn start(
        &mut self,
        worker: WorkerId,
        worker_name: Name,
        dispatcher: String,
        at: Timestamp,
    ) -> Result<(), TransitionError> {
        if !self.state.can_become(JobState::Running) {
            return Err(TransitionError {
                id: self.id.clone(),
                from: self.state,
                to: JobState::Running,
            });
        }
        self.state = JobState::Running;
        self.worker_id = Some(worker);
        self.worker_name = Some(worker_name);
        self.started_at = Some(at);
        self.dispatcher = Some(dispatcher);
        Ok(())
    }

    /// Checks a submitted command and environment.
    pub fn validate_spec(
        command: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<(), JobSpecError> {
        if command.is_empty() || command[0].is_empty() {
            return Err(JobSpecError::NoCommand);
        }
        if command.len() > 4096 {
            return Err(JobSpecError::TooManyArguments(command.len()));
        }
        let size: usize = command.iter().map(String::len).sum::<usize>()
            + env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if size > 256 * 1024 {
            return Err(JobSpecError::TooLarge);
        }
        if command.iter().chain(env.values()).any(|s| s.contains('\0')) {
            return Err(JobSpecError::NulByte);
        }
        for key in env.keys() {
            let ok = !key.is_empty()
                && !key.as_bytes()[0].is_ascii_digit()
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(JobSpecError::BadEnvName(crate::name::shorten(key)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct C {
        name: Name,
        labels: Labels,
        running: u32,
        slots: u32,
    }

    impl Candidate for C {
        fn name(&self) -> &Name {
            &self.name
        }
        fn labels(&self) -> &Labels {
            &self.labels
        }
        fn running(&self) -> u32 {
            self.running
        }
        fn slots(&self) -> u32 {
            self.slots
        }
    }

    fn c(name: &str, labels: &str, running: u32, slots: u32) -> C {
        C {
            name: Name::parse(name).unwrap(),
            labels: Labels::parse_list(labels).unwrap(),
            running,
            slots,
        }
    }

    #[test]
    fn placement_picks_the_least_loaded_match_with_a_free_slot() {
        let fleet = [
            c("a", "gpu=yes", 1, 2),
            c("b", "gpu=yes", 1, 4),
            c("c", "gpu=no", 0, 4),
            c("d", "gpu=yes", 4, 4),
        ];
        let gpu = Selector {
            worker: None,
            labels: Labels::parse_list("gpu=yes").unwrap(),
        };
        assert_eq!(place(&gpu, &fleet).map(|c| c.name.as_str()), Some("b"));
        let named = Selector {
            worker: Some(Name::parse("d").unwrap()),
            labels: Labels::new(),
        };
        assert!(place(&named, &fleet).is_none(), "d is full");
        let any = Selector::default();
        assert_eq!(place(&any, &fleet).map(|c| c.name.as_str()), Some("c"));
        let nothing = Selector {
            worker: None,
            labels: Labels::parse_list("zone=x").unwrap(),
        };
        assert!(place(&nothing, &fleet).is_none());
    }

    #[test]
    fn job_state_edges() {
        use JobState::*;
        let allowed = [
            (Queued, Running),
            (Queued, Cancelled),
            (Queued, Failed),
            (Running, Succeeded),
            (Running, Failed),
            (Running, Cancelled),
            (Running, Lost),
        ];
        for from in JobState::ALL {
            for to in JobState::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
        assert!(
            !Running.can_become(Queued),
            "a started job is never queued again"
        );
    }

    fn queued_job() -> Job {
        Job::queued(
            JobId::parse("0123456789abcdef").unwrap(),
            vec!["true".into()],
            Selector::default(),
            Timestamp::from_unix_millis(1_000),
            Timestamp::from_unix_millis(60_000),
        )
    }

    fn start(job: &mut Job, at: i64) -> Result<(), TransitionError> {
        job.start(
            WorkerId::parse(&"ab".repeat(16)).unwrap(),
            Name::parse("runner").unwrap(),
            "replica-a".into(),
            Timestamp::from_unix_millis(at),
        )
    }

    #[test]
    fn a_queued_job_starts_on_its_worker() {
        let mut job = queued_job();
        start(&mut job, 2_000).unwrap();
        assert_eq!(job.state, JobState::Running);
        assert_eq!(
            job.worker_id,
            Some(WorkerId::parse(&"ab".repeat(16)).unwrap())
        );
        assert_eq!(job.worker_name.as_ref().map(Name::as_str), Some("runner"));
        assert_eq!(job.started_at, Some(Timestamp::from_unix_millis(2_000)));
        assert_eq!(job.dispatcher.as_deref(), Some("replica-a"));
    }

    #[test]
    fn only_a_queued_job_starts() {
        let mut running = queued_job();
        start(&mut running, 2_000).unwrap();
        let before = running.clone();
        assert_eq!(
            start(&mut running, 3_000),
            Err(TransitionError {
                id: before.id.clone(),
                from: JobState::Running,
                to: JobState::Running,
            }),
            "a job starts at most once"
        );
        assert_eq!(running, before, "a refused start changes nothing");
        for ended in [
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
            JobState::Lost,
        ] {
            let mut job = Job {
                state: ended,
                ..queued_job()
            };
            assert!(start(&mut job, 2_000).is_err(), "{ended} cannot start");
            assert_eq!(job.state, ended);
            assert_eq!(job.worker_id, None);
        }
    }

    #[test]
    fn endings_map_to_states() {
        assert_eq!(Ending::Exited(0).state(), JobState::Succeeded);
        assert_eq!(Ending::Exited(3).state(), JobState::Failed);
        assert_eq!(Ending::Exited(3).exit_code(), Some(3));
        assert_eq!(Ending::Lost("gone".into()).state(), JobState::Lost);
        assert_eq!(Ending::Cancelled.state(), JobState::Cancelled);
        assert!(
            Ending::TimedOut(Duration::from_secs(5))
                .reason()
                .unwrap()
                .contains("5s")
        );
    }

    #[test]
    fn ending_kinds_are_stored_and_read_back() {
        let endings = [
            Ending::Exited(0),
            Ending::Exited(3),
            Ending::Signalled(15),
            Ending::TimedOut(Duration::from_secs(5)),
            Ending::Cancelled,
            Ending::SpawnFailed("no such file".into()),
            Ending::Lost("gone".into()),
            Ending::QueueTimeout(Duration::from_secs(60)),
        ];
        for ending in endings {
            let kind = ending.kind();
            let back = EndingKind::parse(kind.as_str(), ending.exit_code(), kind.signal());
            assert_eq!(back, Some(kind), "{ending:?}");
        }
        assert_eq!(
            EndingKind::parse("exited", None, None),
            None,
            "needs its code"
        );
        assert_eq!(
            EndingKind::parse("signalled", Some(1), None),
            None,
            "needs its signal"
        );
        assert_eq!(EndingKind::parse("paused", None, None), None);
    }

    #[test]
    fn specs_are_checked() {
        let env = BTreeMap::new();
        assert_eq!(Job::validate_spec(&[], &env), Err(JobSpecError::NoCommand));
        assert!(Job::validate_spec(&["true".into()], &env).is_ok());
        let bad: BTreeMap<_, _> = [("1X".to_owned(), "v".to_owned())].into();
        assert!(matches!(
            Job::validate_spec(&["true".into()], &bad),
            Err(JobSpecError::BadEnvName(_))
        ));
        let id = JobId::parse("0123456789abcdef").unwrap();
        assert_eq!(JobId::from_bytes(id.to_bytes()), id);
        assert!(JobId::parse("xyz").is_err());
    }
}

//! A scheduler as the server runs it — a real SQLite store in a temp dir, a registry of
//! sessions — with helpers that do what the rest of the server does: connect and disconnect
//! workers, submit jobs, read what the workers were told.

use std::sync::Arc;
use std::time::Duration;

use muster_core::audit::{AuditEvent, Outcome};
use muster_core::job::{Job, JobId, Selector};
use muster_core::{Labels, Name, Timestamp, WorkerId};
use muster_proto::control::ServerMessage;
use muster_store::{Store, StoreError};
use rand::rngs::OsRng;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::control::registry::{Command, Registry, Session};
use crate::jobs::state::Phase;
use crate::jobs::{DEFAULT_OUTPUT_CAP, Departure, Jobs};

pub const SERVER_ID: &str = "replica-test";
/// How long a job waits for its worker in these tests.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Fixture {
    pub jobs: Arc<Jobs>,
    pub registry: Arc<Registry>,
    pub store: Store,
    pub clock: Clock,
    _dir: tempfile::TempDir,
    _still: std::sync::mpsc::Sender<()>,
}

/// A scheduler with nobody connected and nothing queued. Call it inside the test's runtime.
pub fn fixture() -> Fixture {
    fixture_with_cap(DEFAULT_OUTPUT_CAP)
}

pub fn fixture_with_cap(output_cap: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("muster.db")).unwrap();
    let clock = Clock::starting_at(Timestamp::from_unix_millis(1_700_000_000_000));
    let registry = Arc::new(Registry::new());
    let jobs = Jobs::new(
        store.clone(),
        Arc::clone(&registry),
        clock,
        output_cap,
        SERVER_ID.into(),
        GRACE,
    );
    Fixture {
        jobs,
        registry,
        store,
        clock,
        _dir: dir,
        _still: hold_clock_still(),
    }
}

/// With its clock paused, tokio moves time to the next timer whenever the runtime has nothing
/// to do, and waiting for the store's writer thread is nothing to do: a queue deadline would
/// pass during a write. While a blocking task runs it does not (tokio's documented way to wait
/// for I/O under a paused clock), so this one runs until the fixture is dropped, and time moves
/// only when a test advances it.
fn hold_clock_still() -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = rx.recv();
    });
    tx
}

impl Fixture {
    /// A queued job for `selector`, created now, that may wait `queue_wait` for a worker.
    pub fn job(&self, selector: Selector, queue_wait: Duration) -> Job {
        let now = self.clock.now();
        let id = JobId::generate(&mut OsRng);
        Job::queued(
            id,
            vec!["true".into()],
            selector,
            now,
            now.saturating_add(queue_wait),
        )
    }

    /// Submits `job` as the API does (for a named worker, `named` is its id).
    pub async fn submit_to(&self, job: Job, named: Option<&WorkerId>) -> Job {
        let audit = AuditEvent {
            expected: None,
            at: self.clock.now(),
            actor: "admin".into(),
            action: "job.submit".into(),
            target: job.id.to_string(),
            remote_addr: None,
            outcome: Outcome::Ok,
            detail: String::new(),
        };
        self.jobs.submit(job, audit, named).await.unwrap()
    }

    pub async fn submit(&self, job: Job) -> Job {
        self.submit_to(job, None).await
    }

    /// Registers a worker's session and tells the scheduler, as a connection does.
    pub fn connect(&self, name: &str, slots: u32, labels: &str) -> Arc<Session> {
        let conn_id = self.registry.next_conn_id();
        let session = Arc::new(Session::new(
            conn_id,
            WorkerId::parse(&format!("{conn_id:032x}")).unwrap(),
            Name::parse(name).unwrap(),
            None,
            self.clock.now(),
            slots,
            Labels::parse_list(labels).unwrap(),
        ));
        self.registry.insert(Arc::clone(&session));
        self.jobs.kick();
        session
    }

    /// The same worker connecting again (a new session, the same identity).
    pub fn reconnect(&self, old: &Session) -> Arc<Session> {
        let session = Arc::new(Session::new(
            self.registry.next_conn_id(),
            old.worker_id.clone(),
            old.name.clone(),
            None,
            self.clock.now(),
            old.slots,
            old.labels.clone(),
        ));
        self.registry.insert(Arc::clone(&session));
        self.jobs.kick();
        session
    }

    /// Ends a worker's session, as a connection that drops does: the worker may come back.
    pub async fn disconnect(&self, session: &Session) {
        self.registry.remove(&session.worker_id, session.conn_id);
        self.jobs.session_ended(session, Departure::MayReturn).await;
    }

    /// Ends a worker's session because it was cut off (revoked, say).
    pub async fn cut_off(&self, session: &Session, reason: &'static str) {
        self.registry.remove(&session.worker_id, session.conn_id);
        self.jobs
            .session_ended(session, Departure::CutOff(reason))
            .await;
    }

    /// Runs a dispatch round in a task of its own, and returns once the round is writing the
    /// start of `job`: what happens next happens while the start is being written.
    pub async fn round_writing_the_start_of(
        &self,
        job: &JobId,
    ) -> JoinHandle<Result<(), StoreError>> {
        let round = tokio::spawn({
            let jobs = Arc::clone(&self.jobs);
            async move { jobs.dispatch_round().await }
        });
        while self.jobs.state().phase(job) != Some(Phase::Starting) {
            tokio::task::yield_now().await;
        }
        round
    }

    /// The job as stored.
    pub async fn stored(&self, id: &JobId) -> Job {
        let id = id.clone();
        self.store
            .read(move |tx| tx.get_job(&id))
            .await
            .unwrap()
            .expect("the job is stored")
    }
}

/// Jobs that `session`'s worker has been told to start since the last look.
pub fn told_to_start(session: &Session) -> Vec<JobId> {
    session
        .inbox
        .drain()
        .into_iter()
        .filter_map(|command| match command {
            Command::Send(ServerMessage::JobStart(start)) => JobId::parse(&start.id).ok(),
            _ => None,
        })
        .collect()
}

/// Waits until `session`'s worker is told to start jobs (by the dispatcher), and returns them.
pub async fn starts(session: &Session) -> Vec<JobId> {
    loop {
        let started = told_to_start(session);
        if !started.is_empty() {
            return started;
        }
        session.inbox.wait().await;
    }
}

/// Lets spawned tasks (the dispatcher) run whatever they can without waiting for anything.
pub async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

pub fn labels(list: &str) -> Selector {
    Selector {
        worker: None,
        labels: Labels::parse_list(list).unwrap(),
    }
}

pub fn named(worker: &str) -> Selector {
    Selector {
        worker: Some(Name::parse(worker).unwrap()),
        labels: Labels::new(),
    }
}

//! Who is connected right now. In memory only: at start nobody is, and every worker shows
//! `disconnected` until it comes back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use muster_core::identity::ProcessNonce;
use muster_core::job::{Candidate, JobId};
use muster_core::tickets::TicketHash;
use muster_core::{Labels, Name, Timestamp, WorkerId};
use muster_proto::confinement::Confinement;
use muster_proto::control::{CloseCode, ServerMessage};
use tokio::sync::Notify;

/// What a session's task is asked to do by the rest of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Close the channel with this WebSocket close code and reason, and end the session.
    /// `decided` is when the server decided to (for `muster_cutoff_seconds`).
    Close {
        code: CloseCode,
        reason: String,
        decided: tokio::time::Instant,
    },
    /// Send a control message.
    Send(ServerMessage),
    /// Ping the worker; whatever it sends next wakes [`Session::heard`]'s waiters (is the
    /// process on the other end alive?).
    Probe,
}

/// A session's inbox: a queue and a wake-up. Cheaper per connection than a channel, which matters
/// with tens of thousands of mostly idle sessions.
#[derive(Default)]
pub struct Inbox {
    queue: Mutex<VecDeque<Command>>,
    wake: Notify,
}

impl Inbox {
    pub fn push(&self, command: Command) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(command);
        self.wake.notify_one();
    }

    pub fn drain(&self) -> Vec<Command> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect()
    }

    /// Resolves when something was pushed (a push before the wait is not lost).
    pub async fn wait(&self) {
        self.wake.notified().await
    }

    /// Takes the first cut-off waiting (a close for any reason but the server going away),
    /// leaving the rest: a cut-off overtakes sends. A shutdown's close stays in line behind the
    /// message that tells the worker when to come back.
    pub fn take_close(&self) -> Option<(CloseCode, String, tokio::time::Instant)> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let at = queue.iter().position(
            |c| matches!(c, Command::Close { code, .. } if *code != CloseCode::GoingAway),
        )?;
        match queue.remove(at) {
            Some(Command::Close {
                code,
                reason,
                decided,
            }) => Some((code, reason, decided)),
            _ => None,
        }
    }

    /// Wakes the next [`Inbox::wait`] if commands are waiting (after a wait was used up
    /// elsewhere).
    pub fn rearm(&self) {
        let waiting = !self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        if waiting {
            self.wake.notify_one();
        }
    }
}

/// One live control channel.
pub struct Session {
    pub conn_id: u64,
    pub worker_id: WorkerId,
    pub name: Name,
    pub remote_addr: Option<SocketAddr>,
    pub connected_at: Timestamp,
    /// How many jobs the worker said it runs at once.
    pub slots: u32,
    /// The worker's labels, for placing jobs.
    pub labels: Labels,
    /// How the worker said it confines its jobs (`None`: it did not say).
    pub confinement: Option<Confinement>,
    /// Jobs placed on this worker and not yet ended.
    jobs: Mutex<HashSet<JobId>>,
    last_seen_millis: AtomicI64,
    pub inbox: Inbox,
    /// The worker process's nonce, when it sent one: a new connection with the same one is that
    /// process coming back.
    pub process: Option<ProcessNonce>,
    /// The ticket issued to this connection, until the worker says it saved it.
    pub issued_ticket: Mutex<Option<TicketHash>>,
    /// While the connection's first record (presence row, `worker.connected`) waits to be
    /// written: where the saved ticket's confirmation goes, to be written with it.
    record_waiter: Mutex<Option<tokio::sync::oneshot::Sender<TicketHash>>>,
    /// Woken whenever a frame arrives from the worker (see [`Command::Probe`]).
    pub heard: Notify,
    /// Set the moment the session is told to close: from then on it takes no job, and what was
    /// queued for it is not sent.
    closing: AtomicBool,
    /// The running count last written to the store's presence row (see `crate::replica`).
    pub written_running: std::sync::atomic::AtomicU32,
    /// A worker not heard from for this long takes no new job: one that stopped reading (a
    /// frozen process, a dead network) would otherwise be handed jobs it starts much later —
    /// possibly after it was cut off.
    stale_after_millis: AtomicI64,
}

impl Session {
    pub fn new(
        conn_id: u64,
        worker_id: WorkerId,
        name: Name,
        remote_addr: Option<SocketAddr>,
        now: Timestamp,
        slots: u32,
        labels: Labels,
    ) -> Self {
        Self {
            conn_id,
            worker_id,
            name,
            remote_addr,
            connected_at: now,
            slots,
            labels,
            confinement: None,
            jobs: Mutex::new(HashSet::new()),
            last_seen_millis: AtomicI64::new(now.unix_millis()),
            inbox: Inbox::default(),
            process: None,
            issued_ticket: Mutex::new(None),
            record_waiter: Mutex::new(None),
            heard: Notify::new(),
            closing: AtomicBool::new(false),
            written_running: std::sync::atomic::AtomicU32::new(0),
            stale_after_millis: AtomicI64::new(i64::MAX),
        }
    }

    /// A worker silent for longer than `after` takes no new job (see [`Session::takes_jobs`]).
    pub fn with_staleness(self, after: std::time::Duration) -> Self {
        self.stale_after_millis.store(
            i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
        self
    }

    /// Whether a new job may be placed here now: not closing, and heard from recently.
    pub fn takes_jobs(&self, now: Timestamp) -> bool {
        !self.is_closing()
            && now
                .unix_millis()
                .saturating_sub(self.last_seen().unix_millis())
                <= self.stale_after_millis.load(Ordering::Relaxed)
    }

    /// Whether the session was told to close.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// This session's worker process and the ticket it was issued.
    pub fn with_identity(mut self, process: ProcessNonce, issued: Option<TicketHash>) -> Self {
        self.process = Some(process);
        self.issued_ticket = Mutex::new(issued);
        self
    }

    /// Hands the saved ticket's confirmation to the connection's first record (see
    /// `control::lifecycle`) while that has not been written.
    pub fn with_record_waiter(self, waiter: tokio::sync::oneshot::Sender<TicketHash>) -> Self {
        *self.record_waiter.lock().unwrap_or_else(|e| e.into_inner()) = Some(waiter);
        self
    }

    /// Where a saved ticket's confirmation goes if the connection's first record still waits
    /// for it; taken, so it is handed over once (dropping it lets the record go without).
    pub fn take_record_waiter(&self) -> Option<tokio::sync::oneshot::Sender<TicketHash>> {
        self.record_waiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The ticket issued to this connection, taken (it is confirmed once).
    pub fn take_issued_ticket(&self) -> Option<TicketHash> {
        self.issued_ticket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Whether the worker process on the other end answers within `within`: a ping, and
    /// anything it sends back. A dead process (killed, its machine gone, a half-open socket)
    /// does not.
    pub async fn answers(&self, within: std::time::Duration) -> bool {
        let heard = self.heard.notified();
        tokio::pin!(heard);
        heard.as_mut().enable();
        self.inbox.push(Command::Probe);
        tokio::time::timeout(within, heard).await.is_ok()
    }

    /// The session of a worker that said how it confines its jobs.
    pub fn with_confinement(mut self, confinement: Option<Confinement>) -> Self {
        self.confinement = confinement;
        self
    }

    pub fn saw(&self, now: Timestamp) {
        self.last_seen_millis
            .store(now.unix_millis(), Ordering::Relaxed);
    }

    pub fn last_seen(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.last_seen_millis.load(Ordering::Relaxed))
    }

    pub fn running(&self) -> u32 {
        u32::try_from(self.jobs().len()).unwrap_or(u32::MAX)
    }

    /// Reserves a slot for a job. False if the worker is full.
    pub fn reserve(&self, job: &JobId) -> bool {
        if self.is_closing() {
            return false;
        }
        let mut jobs = self.jobs();
        if u32::try_from(jobs.len()).unwrap_or(u32::MAX) >= self.slots {
            return false;
        }
        jobs.insert(job.clone())
    }

    /// Takes on a job its worker reported running (after a reconnect): it holds a slot whatever
    /// the count, since it runs there already.
    pub fn adopt(&self, job: &JobId) {
        self.jobs().insert(job.clone());
    }

    /// Frees a job's slot. True if the job was placed here.
    pub fn release(&self, job: &JobId) -> bool {
        self.jobs().remove(job)
    }

    pub fn holds(&self, job: &JobId) -> bool {
        self.jobs().contains(job)
    }

    /// The jobs placed here (a copy).
    pub fn jobs_held(&self) -> Vec<JobId> {
        self.jobs().iter().cloned().collect()
    }

    /// Takes every job placed here (the session is ending).
    pub fn take_jobs(&self) -> Vec<JobId> {
        self.jobs().drain().collect()
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashSet<JobId>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn close(&self, code: CloseCode, reason: impl Into<String>) {
        // Out of placement before anything else: no job is placed here from now on.
        self.closing.store(true, Ordering::SeqCst);
        self.inbox.push(Command::Close {
            code,
            reason: reason.into(),
            decided: tokio::time::Instant::now(),
        });
    }
}

#[derive(Default)]
pub struct Registry {
    sessions: RwLock<HashMap<WorkerId, Arc<Session>>>,
    next_conn_id: AtomicU64,
    /// How many cut-offs were asked for, found or not. A new session compares it before and
    /// after registering to know whether a revocation may have slipped between the two.
    cuts: AtomicU64,
    /// Woken when the last session leaves (a shutdown waits for it).
    emptied: Notify,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a session; returns the one it replaces (same worker, older connection).
    pub fn insert(&self, session: Arc<Session>) -> Option<Arc<Session>> {
        self.write().insert(session.worker_id.clone(), session)
    }

    /// Removes the worker's session if it is still this connection (a newer one may have
    /// replaced it already).
    pub fn remove(&self, worker: &WorkerId, conn_id: u64) {
        let mut sessions = self.write();
        if sessions.get(worker).is_some_and(|s| s.conn_id == conn_id) {
            sessions.remove(worker);
            if sessions.is_empty() {
                self.emptied.notify_waiters();
            }
        }
    }

    /// Resolves once no session is registered (at once if none is).
    pub async fn until_empty(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            // Registered as a waiter before looking, so a session leaving in between wakes us.
            emptied.as_mut().enable();
            if self.is_empty() {
                return;
            }
            emptied.await;
        }
    }

    pub fn get(&self, worker: &WorkerId) -> Option<Arc<Session>> {
        self.read().get(worker).cloned()
    }

    pub fn is_connected(&self, worker: &WorkerId) -> bool {
        self.read().contains_key(worker)
    }

    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::SeqCst)
    }

    /// Tells the worker's session, if any, to close. Returns whether there was one.
    pub fn close(&self, worker: &WorkerId, code: CloseCode, reason: &str) -> bool {
        self.cuts.fetch_add(1, Ordering::SeqCst);
        match self.get(worker) {
            Some(session) => {
                session.close(code, reason);
                true
            }
            None => false,
        }
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        self.read().values().cloned().collect()
    }

    /// How many sessions there are, and how many of them `accepts` takes: counted under the
    /// read lock, without the snapshot [`Registry::all`] makes (at 19,000 connected, that is
    /// 19,000 reference counts raised and dropped and a 150 KB vector, for two numbers).
    pub fn count(&self, accepts: impl Fn(&Session) -> bool) -> (usize, usize) {
        let sessions = self.read();
        let matching = sessions.values().filter(|s| accepts(s)).count();
        (sessions.len(), matching)
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<WorkerId, Arc<Session>>> {
        self.sessions.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<WorkerId, Arc<Session>>> {
        self.sessions.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Candidate for Session {
    fn name(&self) -> &Name {
        &self.name
    }

    fn labels(&self) -> &Labels {
        &self.labels
    }

    fn running(&self) -> u32 {
        Session::running(self)
    }

    fn slots(&self) -> u32 {
        self.slots
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn session(conn_id: u64, worker: &str) -> Arc<Session> {
        Arc::new(Session::new(
            conn_id,
            WorkerId::parse(&worker.repeat(16)).unwrap(),
            Name::parse("w").unwrap(),
            None,
            Timestamp::from_unix_millis(0),
            1,
            Labels::new(),
        ))
    }

    #[test]
    fn count_gives_the_sessions_and_those_accepted() {
        let registry = Registry::new();
        assert_eq!(registry.count(|_| true), (0, 0));
        for (conn, worker) in [(1, "aa"), (2, "bb"), (3, "cc")] {
            registry.insert(session(conn, worker));
        }
        assert_eq!(registry.count(|s| s.conn_id != 2), (3, 2));
        assert_eq!(registry.count(|_| false), (3, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn until_empty_resolves_when_the_last_session_leaves_and_not_before() {
        let registry = Arc::new(Registry::new());
        registry.until_empty().await;

        let (a, b) = (session(1, "aa"), session(2, "bb"));
        registry.insert(Arc::clone(&a));
        registry.insert(Arc::clone(&b));
        let waiter = tokio::spawn({
            let registry = Arc::clone(&registry);
            async move { registry.until_empty().await }
        });
        tokio::task::yield_now().await;
        registry.remove(&a.worker_id, a.conn_id);
        // A stale connection id removes nothing.
        registry.remove(&b.worker_id, 99);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one session is still registered");

        registry.remove(&b.worker_id, b.conn_id);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken when the registry empties")
            .unwrap();
    }
}

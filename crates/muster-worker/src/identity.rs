//! The worker's side of proving who it is: its key (in its state dir), the ticket it presents
//! when it connects and the one it saves after ([`TicketStore`]), its process nonce, and the
//! signatures it makes with them (see `muster_core::identity` and `muster_core::tickets`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use muster_core::identity::{Binding, ProcessNonce, Proof, ProofSignature, Purpose, WorkerKey};
use muster_core::tickets::Ticket;

/// Where a worker keeps its latest ticket.
pub trait TicketStore: Send + Sync {
    /// The ticket to present, if it holds one.
    fn current(&self) -> Option<Ticket>;
    /// Keeps `ticket` in place of the current one. For a real worker it is on disk, whole and
    /// durable, when this returns `Ok`: only then may the server be told it was saved.
    fn save(&self, ticket: &Ticket) -> Result<(), String>;
    /// Whether [`TicketStore::save`] waits on the disk (then it runs off the async threads).
    fn saves_to_disk(&self) -> bool {
        true
    }
}

/// A ticket in a file of the state dir, written atomically (temp file, fsync, rename, fsync).
pub struct FileTickets {
    path: PathBuf,
    current: Mutex<Option<Ticket>>,
}

impl FileTickets {
    /// Reads the ticket at `path`, if there is one. A file that does not parse is treated as no
    /// ticket: the server then judges the connection as a copy would be judged, which is the
    /// cautious answer, and says so.
    pub fn open(path: PathBuf) -> Self {
        let current = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| Ticket::parse(&text).ok());
        Self {
            path,
            current: Mutex::new(current),
        }
    }
}

impl TicketStore for FileTickets {
    fn current(&self) -> Option<Ticket> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn save(&self, ticket: &Ticket) -> Result<(), String> {
        muster_fs::write_private(&self.path, format!("{}\n", ticket.encode()).as_bytes())
            .map_err(|e| e.to_string())?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(ticket.clone());
        Ok(())
    }
}

/// A ticket in memory only, for simulated workers (a load generator's workers never restart).
#[derive(Default)]
pub struct MemoryTickets(Mutex<Option<Ticket>>);

impl TicketStore for MemoryTickets {
    fn current(&self) -> Option<Ticket> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn save(&self, ticket: &Ticket) -> Result<(), String> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(ticket.clone());
        Ok(())
    }

    fn saves_to_disk(&self) -> bool {
        false
    }
}

/// What a worker proves itself with: its key, its tickets, and this process's nonce.
#[derive(Clone)]
pub struct Prover {
    pub key: Arc<WorkerKey>,
    pub tickets: Arc<dyn TicketStore>,
    pub process: ProcessNonce,
}

impl std::fmt::Debug for Prover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prover")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Prover {
    pub fn new(key: Arc<WorkerKey>, tickets: Arc<dyn TicketStore>) -> Self {
        Self {
            key,
            tickets,
            process: ProcessNonce::generate(&mut rand::rngs::OsRng),
        }
    }

    /// Signs a connection as worker `worker_id`, presenting `ticket`.
    pub fn sign_connect(
        &self,
        binding: &Binding,
        worker_id: &str,
        ticket: Option<&Ticket>,
    ) -> ProofSignature {
        let public_key = self.key.public_key();
        self.key.sign(&Proof {
            purpose: Purpose::Connect,
            binding,
            subject: worker_id,
            public_key: &public_key,
            ticket: ticket.map(Ticket::value),
            process: Some(&self.process),
        })
    }

    /// Signs an enrollment as `subject` (the token's name, or the worker's name).
    pub fn sign_enroll(&self, binding: &Binding, subject: &str) -> ProofSignature {
        let public_key = self.key.public_key();
        self.key.sign(&Proof {
            purpose: Purpose::Enroll,
            binding,
            subject,
            public_key: &public_key,
            ticket: None,
            process: None,
        })
    }
}

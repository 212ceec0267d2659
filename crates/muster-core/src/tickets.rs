//! Tickets: how the server tells a worker coming back from a copy of it.
//!
//! A key proves a connection comes from a holder of the worker's state dir, but a copied state
//! dir holds the same key. What a copy cannot share with its original is what happens after the
//! copy: at every connection the server issues a new [`Ticket`], records its hash as *pending*
//! (durably, before sending it), and the worker saves it (atomically, durably) and acknowledges
//! it, which *confirms* it. A worker presents its latest ticket when it connects.
//!
//! The rule ([`TicketLedger::present`]): a ticket is valid when it is the confirmed one or one
//! of the pending ones (a worker that crashed before saving its new ticket presents the
//! confirmed one; one that crashed after saving but before its acknowledgement arrived presents
//! the pending one). A pending ticket presented becomes the confirmed one and the others are
//! dropped. Anything else is a copy: two holders moved apart. A single worker cannot get there,
//! whatever instant it or the server crashes at — the model test below plays random crashes and
//! random copies against the rule.
//!
//! One exception: an empty ledger (no ticket confirmed or pending) takes the first ticket
//! presented as the confirmed one. The server empties ledgers when its database is restored
//! from a backup ([`TicketLedger::forget`]): the backup's tickets may be older than the ones
//! workers hold, and without this every worker that connected after the backup was taken would
//! be taken for a copy. A ledger is otherwise empty only before the server ever issued a
//! ticket, when no worker can hold one, so the exception gives a copy nothing it could use.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

/// Pending tickets kept: issued since the last confirmation, by connections whose workers have
/// not (yet) acknowledged them. A legitimate worker needs one; a few more cover connection
/// attempts the server finished after the worker had given up on them.
pub const MAX_PENDING: usize = 8;

/// A ticket as the worker holds it: a sequence number (for people and logs) and 256 random bits.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    pub seq: u64,
    value: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the ticket is malformed")]
pub struct TicketError;

impl Ticket {
    pub fn generate<R: RngCore + CryptoRng>(seq: u64, rng: &mut R) -> Self {
        let mut value = [0u8; 32];
        rng.fill_bytes(&mut value);
        Self { seq, value }
    }

    /// What the server keeps: its hash.
    pub fn hash(&self) -> TicketHash {
        TicketHash(Sha256::digest(self.value).into())
    }

    /// The bytes a proof signs.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// `SEQ.VALUE`, on the wire and in the worker's file.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.seq, URL_SAFE_NO_PAD.encode(self.value))
    }

    pub fn parse(input: &str) -> Result<Self, TicketError> {
        let (seq, value) = input.trim().split_once('.').ok_or(TicketError)?;
        let seq = seq.parse().map_err(|_| TicketError)?;
        let value = URL_SAFE_NO_PAD
            .decode(value)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(TicketError)?;
        Ok(Self { seq, value })
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ticket({}, ..)", self.seq)
    }
}

/// The SHA-256 of a ticket: the server never stores a ticket itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TicketHash([u8; 32]);

impl TicketHash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(input: &str) -> Result<Self, TicketError> {
        hex::decode(input)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .map(TicketHash)
            .ok_or(TicketError)
    }
}

impl fmt::Debug for TicketHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TicketHash({})", &self.to_hex()[..8])
    }
}

/// What the server knows of a worker's tickets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketLedger {
    pub confirmed: Option<TicketHash>,
    pub pending: Vec<TicketHash>,
}

/// The verdict on a presented ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    Valid,
    /// Not a ticket this worker could hold: the state dir was copied and the copies moved apart.
    Copied,
}

impl TicketLedger {
    /// Judges the ticket a connecting worker presents (`None`: it holds none yet). A pending one
    /// presented becomes the confirmed one. Nothing changes for a copy.
    pub fn present(&mut self, presented: Option<&TicketHash>) -> Presented {
        match presented {
            None if self.confirmed.is_none() => Presented::Valid,
            None => Presented::Copied,
            Some(hash) if self.is_empty() => {
                self.confirmed = Some(*hash);
                Presented::Valid
            }
            Some(hash) if self.confirmed.as_ref() == Some(hash) => Presented::Valid,
            Some(hash) if self.pending.contains(hash) => {
                self.confirmed = Some(*hash);
                self.pending.clear();
                Presented::Valid
            }
            Some(_) => Presented::Copied,
        }
    }

    /// No ticket confirmed or pending: never issued one, or forgotten after a restore.
    pub fn is_empty(&self) -> bool {
        self.confirmed.is_none() && self.pending.is_empty()
    }

    /// Forgets every ticket, after the database was restored from a backup: the next ticket the
    /// worker presents is taken as its own (see the module's doc).
    pub fn forget(&mut self) {
        *self = TicketLedger::default();
    }

    /// Records a ticket about to be sent to the worker (before it is sent).
    pub fn issue(&mut self, hash: TicketHash) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.remove(0);
        }
        self.pending.push(hash);
    }

    /// The worker saved `hash`: it becomes the confirmed ticket, if it is still pending. An
    /// acknowledgement of a ticket no longer pending changes nothing: it arrived after a newer
    /// connection had settled things (it is never evidence of a copy by itself).
    pub fn confirm(&mut self, hash: &TicketHash) -> bool {
        if !self.pending.contains(hash) {
            return false;
        }
        self.confirmed = Some(*hash);
        self.pending.clear();
        true
    }

    /// The pending list as stored: hex hashes, comma-separated.
    pub fn pending_to_text(&self) -> String {
        self.pending
            .iter()
            .map(TicketHash::to_hex)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn pending_from_text(text: &str) -> Result<Vec<TicketHash>, TicketError> {
        text.split(',')
            .filter(|s| !s.is_empty())
            .map(TicketHash::from_hex)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! A model of workers, the server and the network, driven by random events: crashes of
    //! either side at every step, lost messages, and requests the server handles after their
    //! sender is gone. A worker's durable state is its saved ticket; the server's is the ledger.
    //! The rule must never call a single worker a copy, and must catch two copies.
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// One worker process and its connection.
    #[derive(Debug, Clone, Default)]
    struct Worker {
        /// Its state dir's ticket (durable).
        saved: Option<Ticket>,
        /// Issued to its current connection, not delivered yet.
        in_flight: Option<Ticket>,
        /// Received and not yet saved (lost if it crashes).
        received: Option<Ticket>,
        /// Saved, acknowledgement not delivered yet.
        unacked: Option<TicketHash>,
        /// Every ticket it ever saved, oldest first (for stale requests).
        history: Vec<Option<Ticket>>,
    }

    #[derive(Debug, Clone, Copy)]
    enum Event {
        /// Connect: present the saved ticket; the server judges and issues a new one.
        Connect,
        /// The new ticket reaches the worker (or is lost with the connection).
        Deliver(bool),
        /// The worker saves the received ticket.
        Save,
        /// The acknowledgement reaches the server (or is lost).
        Ack(bool),
        /// The worker process is killed (volatile state gone) and restarts.
        CrashWorker,
        /// The server is killed and restarts: its ledger survives, connections do not.
        CrashServer,
        /// A connection attempt the worker gave up on is handled now, presenting a ticket it
        /// held back then. Its sender is gone, so a bad ticket there is no verdict (the server
        /// asks the presenter to prove it is alive first); a valid one is issued a ticket nobody
        /// will ever hold.
        Stale(usize),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => Just(Event::Connect),
            4 => any::<bool>().prop_map(Event::Deliver),
            3 => Just(Event::Save),
            3 => any::<bool>().prop_map(Event::Ack),
            1 => Just(Event::CrashWorker),
            1 => Just(Event::CrashServer),
            1 => (0usize..4).prop_map(Event::Stale),
        ]
    }

    struct Server {
        ledger: TicketLedger,
        seq: u64,
        rng: StdRng,
    }

    impl Server {
        fn new(seed: u64) -> Self {
            Self {
                ledger: TicketLedger::default(),
                seq: 0,
                rng: StdRng::seed_from_u64(seed),
            }
        }

        /// A connection presenting `saved`: the verdict, and the new ticket if valid (recorded
        /// as pending before it is sent).
        fn connect(&mut self, saved: Option<&Ticket>) -> (Presented, Option<Ticket>) {
            let verdict = self.ledger.present(saved.map(Ticket::hash).as_ref());
            if verdict != Presented::Valid {
                return (verdict, None);
            }
            self.seq += 1;
            let ticket = Ticket::generate(self.seq, &mut self.rng);
            self.ledger.issue(ticket.hash());
            (verdict, Some(ticket))
        }

        /// Applies `e` to `worker`; the verdict when it was a live connection.
        fn step(&mut self, worker: &mut Worker, e: Event) -> Option<Presented> {
            match e {
                Event::Connect => {
                    // A new connection replaces the old one: what was under way there is lost.
                    worker.received = None;
                    worker.unacked = None;
                    let (verdict, issued) = self.connect(worker.saved.as_ref());
                    worker.in_flight = issued;
                    return Some(verdict);
                }
                Event::Deliver(ok) => {
                    if let Some(t) = worker.in_flight.take()
                        && ok
                    {
                        worker.received = Some(t);
                    }
                }
                Event::Save => {
                    if let Some(t) = worker.received.take() {
                        worker.unacked = Some(t.hash());
                        worker.history.push(Some(t.clone()));
                        worker.saved = Some(t);
                    }
                }
                Event::Ack(ok) => {
                    if let Some(hash) = worker.unacked.take()
                        && ok
                    {
                        self.ledger.confirm(&hash);
                    }
                }
                Event::CrashWorker => {
                    worker.in_flight = None;
                    worker.received = None;
                    worker.unacked = None;
                }
                Event::CrashServer => {
                    worker.in_flight = None;
                    worker.unacked = None;
                }
                Event::Stale(back) => {
                    let held = if back < worker.history.len() {
                        worker.history[worker.history.len() - 1 - back].clone()
                    } else {
                        None
                    };
                    let _ = self.connect(held.as_ref());
                }
            }
            None
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// One worker, any crashes and losses, late requests: never called a copy.
        #[test]
        fn a_single_worker_is_never_taken_for_a_copy(
            seed in any::<u64>(),
            events in proptest::collection::vec(event(), 1..200),
        ) {
            let mut server = Server::new(seed);
            let mut worker = Worker { history: vec![None], ..Worker::default() };
            for e in events {
                if let Some(verdict) = server.step(&mut worker, e) {
                    prop_assert_eq!(verdict, Presented::Valid, "after {:?}", e);
                }
            }
        }

        /// Two copies of one state dir, each running whole connections (connect, receive, save,
        /// acknowledge), interleaved with each other's at every point: by the time each has
        /// connected twice, one of them has been found out.
        #[test]
        fn two_copies_are_found_out_by_their_second_connections(
            seed in any::<u64>(),
            warmup in 0usize..4,
            order in proptest::collection::vec(any::<bool>(), 4..40),
        ) {
            const CYCLE: [Event; 4] = [Event::Connect, Event::Deliver(true), Event::Save, Event::Ack(true)];
            let mut server = Server::new(seed);
            let mut original = Worker::default();
            // The original runs for a while before it is copied.
            for _ in 0..warmup {
                for e in CYCLE {
                    server.step(&mut original, e);
                }
            }
            let mut copies = [original.clone(), original];
            let mut connections = [0usize; 2];
            let mut phase = [0usize; 2];
            let mut found = false;
            for pick in order {
                let i = usize::from(pick);
                if let Some(verdict) = server.step(&mut copies[i], CYCLE[phase[i]]) {
                    connections[i] += 1;
                    if verdict == Presented::Copied {
                        found = true;
                        break;
                    }
                }
                phase[i] = (phase[i] + 1) % CYCLE.len();
            }
            if connections[0] >= 2 && connections[1] >= 2 {
                prop_assert!(found, "two copies connected twice each and were not found out");
            }
        }
    }

    #[test]
    fn a_copy_made_from_a_settled_state_dir_is_found_at_its_first_connection() {
        let mut server = Server::new(1);
        let mut original = Worker::default();
        for e in [
            Event::Connect,
            Event::Deliver(true),
            Event::Save,
            Event::Ack(true),
        ] {
            server.step(&mut original, e);
        }
        let mut copy = original.clone();
        for e in [
            Event::Connect,
            Event::Deliver(true),
            Event::Save,
            Event::Ack(true),
        ] {
            assert_ne!(server.step(&mut original, e), Some(Presented::Copied));
        }
        assert_eq!(
            server.step(&mut copy, Event::Connect),
            Some(Presented::Copied)
        );
    }

    /// A database restored from a backup forgets its tickets: the worker's newer ticket is
    /// taken as its own, a crash before it saves the next one is still no copy, and a second
    /// holder presenting the old ticket after that is found out.
    #[test]
    fn a_forgotten_ledger_adopts_the_first_ticket_presented_and_catches_a_copy_after_it() {
        let mut server = Server::new(3);
        let mut worker = Worker::default();
        for e in [
            Event::Connect,
            Event::Deliver(true),
            Event::Save,
            Event::Ack(true),
        ] {
            server.step(&mut worker, e);
        }
        let copy = worker.clone();
        // The backup is restored: the ledger is gone, the worker's ticket is not.
        server.ledger.forget();
        assert!(server.ledger.is_empty());
        assert_eq!(
            server.step(&mut worker, Event::Connect),
            Some(Presented::Valid)
        );
        // The worker crashes before it saves the new ticket and presents the old one again.
        server.step(&mut worker, Event::CrashWorker);
        assert_eq!(
            server.step(&mut worker, Event::Connect),
            Some(Presented::Valid)
        );
        for e in [Event::Deliver(true), Event::Save, Event::Ack(true)] {
            server.step(&mut worker, e);
        }
        let mut copy = copy;
        assert_eq!(
            server.step(&mut copy, Event::Connect),
            Some(Presented::Copied)
        );
    }

    #[test]
    fn tickets_round_trip_and_hide_their_value() {
        let ticket = Ticket::generate(7, &mut rand::rngs::OsRng);
        assert_eq!(Ticket::parse(&ticket.encode()).unwrap(), ticket);
        assert!(!format!("{ticket:?}").contains(&ticket.encode()[2..]));
        let hash = ticket.hash();
        assert_eq!(TicketHash::from_hex(&hash.to_hex()).unwrap(), hash);
        let ledger = TicketLedger {
            confirmed: None,
            pending: vec![hash, Ticket::generate(8, &mut rand::rngs::OsRng).hash()],
        };
        assert_eq!(
            TicketLedger::pending_from_text(&ledger.pending_to_text()).unwrap(),
            ledger.pending
        );
        assert!(Ticket::parse("x.y").is_err());
    }

    #[test]
    fn the_pending_list_is_bounded() {
        let mut ledger = TicketLedger::default();
        let mut rng = rand::rngs::OsRng;
        let first = Ticket::generate(0, &mut rng).hash();
        ledger.issue(first);
        for seq in 1..=MAX_PENDING as u64 {
            ledger.issue(Ticket::generate(seq, &mut rng).hash());
        }
        assert_eq!(ledger.pending.len(), MAX_PENDING);
        assert!(!ledger.pending.contains(&first), "the oldest goes first");
    }
}

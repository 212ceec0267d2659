//! A worker's key and tickets across connections: the key bound once, tickets issued, confirmed
//! and presented, a copy found out, and a suspended identity kept out.

use muster_core::tickets::{Ticket, TicketHash};
use muster_core::worker::AdmitRefusal;
use muster_core::{MachineId, WorkerStatus};
use rand::rngs::OsRng;

use super::{at, audit, create_precreated, machine, machine_key};
use crate::Store;
use crate::flows::identity::{self, ConnectRefusal, Connection, Opened};

pub(super) fn connection(
    worker: &muster_core::Worker,
    key_of: &str,
    presented: Option<&Ticket>,
) -> (Connection, Ticket) {
    let issued = Ticket::generate(1, &mut OsRng);
    let c = Connection {
        worker: worker.id.clone(),
        api_key: "mk_precreated".into(),
        machine: machine("machine-a"),
        public_key: machine_key(key_of).public_key(),
        presented: presented.map(Ticket::hash),
        issued: issued.hash(),
        now: at(10),
    };
    (c, issued)
}

pub(super) async fn open(store: &Store, c: Connection) -> Result<Opened, ConnectRefusal> {
    store
        .write(move |tx| identity::open_session(tx, &c))
        .await
        .expect("store")
}

async fn confirm(store: &Store, worker: &muster_core::WorkerId, t: &Ticket) -> bool {
    let (id, hash): (_, TicketHash) = (worker.clone(), t.hash());
    store
        .write(move |tx| identity::confirm_ticket(tx, &id, &hash, Some("10.0.0.1")))
        .await
        .expect("store")
}

pub async fn a_key_is_bound_once_and_tickets_tell_a_copy_from_a_restart(store: Store) {
    super::licensed(&store).await;
    let worker = create_precreated(&store, "keyed").await;

    // The first connection binds the machine and the key; its ticket is pending.
    let (c, t1) = connection(&worker, "machine-a", None);
    match open(&store, c).await {
        Ok(Opened::Admitted {
            worker: w,
            key_bound,
        }) => {
            assert!(key_bound);
            assert_eq!(
                w.machine_id,
                Some(MachineId::parse("machine-a").expect("machine id"))
            );
            assert_eq!(w.identity.tickets.pending, vec![t1.hash()]);
        }
        other => panic!("expected admitted, got {other:?}"),
    }
    // Another key is refused, whatever it presents.
    let (c, _) = connection(&worker, "machine-b", None);
    assert!(matches!(
        open(&store, c).await,
        Err(ConnectRefusal::OtherKey(_))
    ));

    // A crash before saving t1: the worker presents nothing again, and that is still valid.
    let (c, t2) = connection(&worker, "machine-a", None);
    assert!(matches!(
        open(&store, c).await,
        Ok(Opened::Admitted {
            key_bound: false,
            ..
        })
    ));
    // It saved t2 and acknowledged it: confirmed.
    assert!(confirm(&store, &worker.id, &t2).await);
    assert!(!confirm(&store, &worker.id, &t1).await, "no longer pending");
    let (c, t3) = connection(&worker, "machine-a", Some(&t2));
    assert!(matches!(open(&store, c).await, Ok(Opened::Admitted { .. })));
    // Saved t3, crashed before acknowledging: t3 is pending and presenting it is valid.
    let (c, _t4) = connection(&worker, "machine-a", Some(&t3));
    assert!(matches!(open(&store, c).await, Ok(Opened::Admitted { .. })));

    // A copy that still holds t2 (or nothing) is found out, and nothing is written.
    let before = store
        .read({
            let id = worker.id.clone();
            move |tx| tx.get_worker(&id)
        })
        .await
        .expect("read")
        .expect("worker");
    for stale in [Some(&t2), None] {
        let (c, _) = connection(&worker, "machine-a", stale);
        assert!(matches!(open(&store, c).await, Ok(Opened::Copied { .. })));
    }
    let after = store
        .read({
            let id = worker.id.clone();
            move |tx| tx.get_worker(&id)
        })
        .await
        .expect("read")
        .expect("worker");
    assert_eq!(after, before, "a copy's connection changes nothing");

    // Suspended: the status says so and no connection gets in.
    let ev = audit("worker.clone_detected", "keyed");
    let id = worker.id.clone();
    assert!(
        store
            .write(move |tx| identity::suspend(tx, &id, at(20), &ev))
            .await
            .expect("store")
    );
    assert_eq!(after.status(false, at(30)), WorkerStatus::Disconnected);
    let id = worker.id.clone();
    let suspended = store
        .read(move |tx| tx.get_worker(&id))
        .await
        .expect("read")
        .expect("worker");
    assert_eq!(suspended.status(false, at(30)), WorkerStatus::Suspended);
    let (c, _) = connection(&worker, "machine-a", Some(&t3));
    assert_eq!(
        open(&store, c).await,
        Err(ConnectRefusal::Admit(AdmitRefusal::Suspended(
            worker.name.clone()
        )))
    );
}

/// After a restore the database's tickets may be older than the worker's: once forgotten, the
/// worker's newer ticket is taken as its own, and the old one (a copy's) is refused after that.
pub async fn forgotten_tickets_let_a_restored_database_take_newer_ones(store: Store) {
    super::licensed(&store).await;
    let worker = create_precreated(&store, "restored").await;
    let (c, t1) = connection(&worker, "machine-a", None);
    assert!(matches!(open(&store, c).await, Ok(Opened::Admitted { .. })));
    assert!(confirm(&store, &worker.id, &t1).await);
    // What the backup holds: t1 confirmed. The worker moves on to t2 after the backup.
    let (c, t2) = connection(&worker, "machine-a", Some(&t1));
    assert!(matches!(open(&store, c).await, Ok(Opened::Admitted { .. })));
    assert!(confirm(&store, &worker.id, &t2).await);
    // Pretend the backup (t1) was restored by storing the old ledger again.
    let (id, backed_up) = (worker.id.clone(), t1.hash());
    store
        .write(move |tx| {
            let tickets = muster_core::tickets::TicketLedger {
                confirmed: Some(backed_up),
                pending: Vec::new(),
            };
            tx.set_worker_tickets(&id, &tickets, None)
        })
        .await
        .expect("store");
    let (c, _) = connection(&worker, "machine-a", Some(&t2));
    assert!(
        matches!(open(&store, c).await, Ok(Opened::Copied { .. })),
        "without forgetting, a newer ticket reads as a copy"
    );

    let forgotten = store.write(identity::forget_tickets).await.expect("store");
    assert_eq!(forgotten, 1);
    let (c, _) = connection(&worker, "machine-a", Some(&t2));
    assert!(matches!(open(&store, c).await, Ok(Opened::Admitted { .. })));
    let (c, _) = connection(&worker, "machine-a", Some(&t1));
    assert!(
        matches!(open(&store, c).await, Ok(Opened::Copied { .. })),
        "the older ticket is a copy's once the newer one was taken"
    );
}

//! A worker's key and tickets across connections: the key bound once, tickets issued, confirmed
//! and presented, a copy found out, and a suspended identity kept out.

use muster_core::tickets::{Ticket, TicketHash};
use muster_core::worker::AdmitRefusal;
use muster_core::{MachineId, WorkerStatus};
use rand::rngs::OsRng;

use super::{at, audit, create_precreated, machine, machine_key};
use crate::Store;
use crate::flows::group;
use crate::flows::identity::{self, ConnectRefusal, Connection, GroupedOpen, Opened};

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

/// Bound workers, each with its first ticket issued and confirmed, and the ticket.
async fn bound_workers(
    store: &Store,
    prefix: &str,
    n: usize,
) -> Vec<(muster_core::Worker, Ticket)> {
    let mut bound = Vec::new();
    for i in 0..n {
        let worker = create_precreated(store, &format!("{prefix}-{i}")).await;
        let (c, t) = connection(&worker, "machine-a", None);
        assert!(matches!(open(store, c).await, Ok(Opened::Admitted { .. })));
        assert!(confirm(store, &worker.id, &t).await);
        bound.push((worker, t));
    }
    bound
}

async fn open_group(store: &Store, group: Vec<Connection>) -> Vec<GroupedOpen> {
    store
        .write(move |tx| identity::open_sessions(tx, &group))
        .await
        .expect("store")
}

/// A unit of a group that fails is undone alone: what it wrote before failing is gone, the
/// units before and after it commit, and the transaction goes on (on PostgreSQL a failed
/// statement aborts the whole transaction unless it is rolled back to the unit's savepoint).
pub async fn a_failed_unit_of_a_group_is_undone_alone(store: Store) {
    let existing = create_precreated(&store, "existing").await;
    let results = store
        .write(move |tx| {
            let a = group::isolated(tx, |tx| tx.put_setting("unit.a", "1"))?;
            let b = group::isolated(tx, |tx| {
                tx.put_setting("unit.b", "1")?;
                // The same id again: the database refuses the statement.
                tx.insert_worker(&existing)
            })?;
            let c = group::isolated(tx, |tx| tx.put_setting("unit.c", "1"))?;
            Ok((a.is_ok(), b.is_ok(), c.is_ok()))
        })
        .await
        .expect("the group commits");
    assert_eq!(results, (true, false, true));
    let settings = store
        .read(|tx| {
            Ok((
                tx.get_setting("unit.a")?,
                tx.get_setting("unit.b")?,
                tx.get_setting("unit.c")?,
            ))
        })
        .await
        .expect("read");
    assert_eq!(
        settings,
        (Some("1".to_owned()), None, Some("1".to_owned())),
        "the failed unit's own write is undone, the others' kept"
    );
}

/// Admissions written in one group answer as they would alone, in the order given: admitted,
/// a copy found out, an unknown identity refused, and a pre-created worker's first connection
/// (which counts licence seats under a lock) sent to a transaction of its own.
pub async fn a_group_of_admissions_answers_each_as_alone(store: Store) {
    super::licensed(&store).await;
    let bound = bound_workers(&store, "grouped", 3).await;
    let fresh = create_precreated(&store, "fresh").await;
    let (w0, t0) = &bound[0];
    let (w1, _) = &bound[1];
    let (w2, t2) = &bound[2];
    let (admit0, next0) = connection(w0, "machine-a", Some(t0));
    // w1 confirmed its ticket: a connection with none is a copy's.
    let (copy1, _) = connection(w1, "machine-a", None);
    let (mut unknown, _) = connection(w2, "machine-a", Some(t2));
    unknown.worker =
        muster_core::WorkerId::parse(&muster_core::credentials::generate_id(&mut OsRng))
            .expect("id");
    let (first, _) = connection(&fresh, "machine-a", None);
    let (admit2, _) = connection(w2, "machine-a", Some(t2));
    let answers = open_group(&store, vec![admit2, first, unknown, copy1, admit0]).await;
    assert!(
        matches!(
            &answers[..],
            [
                GroupedOpen::Done(Ok(Opened::Admitted {
                    key_bound: false,
                    ..
                })),
                GroupedOpen::Alone,
                GroupedOpen::Done(Err(ConnectRefusal::Admit(AdmitRefusal::UnknownIdentity))),
                GroupedOpen::Done(Ok(Opened::Copied { .. })),
                GroupedOpen::Done(Ok(Opened::Admitted {
                    key_bound: false,
                    ..
                })),
            ]
        ),
        "{answers:?}"
    );
    // Committed: w0's new ticket is pending, and presenting it gets in.
    assert!(confirm(&store, &w0.id, &next0).await);
    let (c, _) = connection(w0, "machine-a", Some(&next0));
    assert!(matches!(open(&store, c).await, Ok(Opened::Admitted { .. })));
    // The deferred one wrote nothing: the worker is still unbound.
    let id = fresh.id.clone();
    let unbound = store
        .read(move |tx| tx.get_worker(&id))
        .await
        .expect("read")
        .expect("worker");
    assert_eq!(unbound.machine_id, None);
}

/// Many groups at once, over the same workers in different orders (as several replicas and
/// several groups of one replica write them): every admission commits, none is a deadlock's
/// victim, and a ticket given out in a group still tells a copy from its owner afterwards.
pub async fn concurrent_groups_of_admissions_all_commit(store: Store) {
    super::licensed(&store).await;
    let bound = bound_workers(&store, "storm", 24).await;
    let mut groups = Vec::new();
    for g in 0..8 {
        let mut group: Vec<Connection> = bound
            .iter()
            .map(|(w, t)| connection(w, "machine-a", Some(t)).0)
            .collect();
        // Each group in another order: unsorted, two groups would lock rows in opposite orders.
        group.rotate_left(g * 3);
        if g % 2 == 1 {
            group.reverse();
        }
        groups.push(group);
    }
    let tasks: Vec<_> = groups
        .into_iter()
        .map(|group| {
            let store = store.clone();
            tokio::spawn(async move { open_group(&store, group).await })
        })
        .collect();
    for task in tasks {
        for answer in task.await.expect("task") {
            assert!(
                matches!(answer, GroupedOpen::Done(Ok(Opened::Admitted { .. }))),
                "{answer:?}"
            );
        }
    }
    // One worker moves on: its new ticket confirmed, the old one is a copy's.
    let (w, old) = &bound[0];
    let (c, newer) = connection(w, "machine-a", Some(old));
    let answers = open_group(
        &store,
        vec![c, connection(&bound[1].0, "machine-a", Some(&bound[1].1)).0],
    )
    .await;
    assert!(matches!(
        answers[0],
        GroupedOpen::Done(Ok(Opened::Admitted { .. }))
    ));
    assert!(confirm(&store, &w.id, &newer).await);
    let (copy, _) = connection(w, "machine-a", Some(old));
    let (owner, _) = connection(w, "machine-a", Some(&newer));
    let answers = open_group(&store, vec![copy, owner]).await;
    assert!(
        matches!(
            &answers[..],
            [
                GroupedOpen::Done(Ok(Opened::Copied { .. })),
                GroupedOpen::Done(Ok(Opened::Admitted { .. })),
            ]
        ),
        "{answers:?}"
    );
}

/// The old session's ticket confirmation racing the worker's next admission (its channel dropped
/// just after it saved the ticket, and it reconnected at once, to another replica or through
/// another pooled connection): each reads the worker's ledger and writes it back. On
/// PostgreSQL, without a row lock taken by the read, the confirmation read the ledger before the
/// admission committed and wrote it back after, erasing the ticket the admission had just given
/// out, so the worker's next connection, presenting that ticket, was taken for a copy: a
/// false clone verdict. Here the admission holds its transaction open 400 ms after writing, and
/// the confirmation starts 100 ms into it.
pub async fn a_confirmation_racing_the_next_admission_erases_no_ticket(store: Store) {
    super::licensed(&store).await;
    let (worker, t0) = bound_workers(&store, "racing", 1).await.remove(0);
    // Connected with t0, given t1, which it saved: TicketSaved is on its way.
    let (c1, t1) = connection(&worker, "machine-a", Some(&t0));
    assert!(matches!(
        open(&store, c1).await,
        Ok(Opened::Admitted { .. })
    ));
    // The next connection presents t1 and is given t2, in a transaction held open a while.
    let (c2, t2) = connection(&worker, "machine-a", Some(&t1));
    let admission = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(move |tx| {
                    let opened = identity::open_session(tx, &c2)?;
                    std::thread::sleep(std::time::Duration::from_millis(400));
                    Ok(opened)
                })
                .await
                .expect("store")
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    confirm(&store, &worker.id, &t1).await;
    assert!(matches!(
        admission.await.expect("task"),
        Ok(Opened::Admitted { .. })
    ));
    // The worker saved t2; its next connection presents it and is itself, not a copy.
    let (c3, _) = connection(&worker, "machine-a", Some(&t2));
    let next = open(&store, c3).await;
    assert!(
        matches!(next, Ok(Opened::Admitted { .. })),
        "the ticket the admission gave out was erased by the racing confirmation: {next:?}"
    );
}

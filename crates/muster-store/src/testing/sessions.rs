//! Session records written as a group (`flows::sessions`): the same rows as if each were
//! written alone, in order.

use muster_core::audit::AuditEvent;
use muster_core::events::EventType;
use muster_core::tickets::{Ticket, TicketLedger};
use muster_core::{Timestamp, WorkerId};
use rand::rngs::OsRng;

use super::{at, audit, create_precreated};
use crate::flows::sessions::{self, SessionRecord};
use crate::flows::webhooks;
use crate::tx::Presence;
use crate::{AuditFilter, Store, Webhook};

fn opened(worker: &WorkerId, conn_id: u64, when: Timestamp) -> SessionRecord {
    SessionRecord::Opened {
        presence: Presence {
            worker: worker.clone(),
            replica: "replica-a".into(),
            conn_id,
            connected_at: when,
            running: 0,
            slots: 1,
            remote_addr: Some(format!("10.0.0.{conn_id}")),
        },
        event: event("worker.connected", worker, when),
    }
}

fn closed(worker: &WorkerId, replica: &str, conn_id: u64, when: Timestamp) -> SessionRecord {
    SessionRecord::Closed {
        worker: worker.clone(),
        replica: replica.into(),
        conn_id,
        last_seen: when,
        event: event("worker.disconnected", worker, when),
    }
}

fn event(action: &str, worker: &WorkerId, when: Timestamp) -> AuditEvent {
    AuditEvent {
        at: when,
        ..audit(action, worker.as_str())
    }
}

/// One group: opens, closes (of this connection and of an older one), saved tickets (one that
/// confirms, the same again, a wrong one, an unknown worker's). Every presence row, last-seen
/// time, ticket ledger, audit record and webhook delivery is what writing them one by one in
/// this order leaves.
pub async fn a_group_of_session_records_writes_what_each_alone_would(store: Store) {
    let [a, b, c] = [
        create_precreated(&store, "alpha").await,
        create_precreated(&store, "bravo").await,
        create_precreated(&store, "charlie").await,
    ]
    .map(|w| w.id);
    let issued = Ticket::generate(1, &mut OsRng).hash();
    let other = Ticket::generate(1, &mut OsRng).hash();
    let hook = Webhook {
        id: "all".into(),
        url: "https://example.test/all".into(),
        secret: "secret".into(),
        events: vec![EventType::WorkerConnected],
        created_at: at(0),
    };
    let setup = {
        let (a, c) = (a.clone(), c.clone());
        move |tx: &mut dyn crate::Tx| {
            webhooks::create(tx, &hook, &audit("webhook.create", "all"))?;
            let pending = TicketLedger {
                confirmed: None,
                pending: vec![issued],
            };
            tx.set_worker_tickets(&a, &pending, None)?;
            tx.put_presence(&Presence {
                worker: c.clone(),
                replica: "replica-b".into(),
                conn_id: 7,
                connected_at: at(1),
                running: 0,
                slots: 1,
                remote_addr: None,
            })?;
            tx.touch_worker(&c, at(50))
        }
    };
    store.write(setup).await.expect("setup");

    let unknown = WorkerId::parse(&"ab".repeat(16)).expect("id");
    let saved = |worker: &WorkerId, ticket| SessionRecord::TicketSaved {
        worker: worker.clone(),
        ticket,
        remote: Some("10.9.9.9".into()),
    };
    let records = vec![
        opened(&a, 1, at(10)),
        opened(&b, 2, at(11)),
        // A newer connection of `a` in the same group: it holds the row.
        opened(&a, 3, at(12)),
        // `c`'s own connection ends (its row goes); its last-seen time never moves back.
        closed(&c, "replica-b", 7, at(20)),
        // An older connection of `b` ends: `b`'s row stays.
        closed(&b, "replica-a", 99, at(13)),
        saved(&a, issued),
        saved(&a, issued),
        saved(&b, other),
        saved(&unknown, issued),
    ];
    let answers = store
        .write(move |tx| sessions::write(tx, &records))
        .await
        .expect("write the group");
    assert_eq!(
        answers,
        [true, true, true, true, true, true, false, false, false],
        "only the first saved ticket confirms"
    );

    let (a2, b2, c2) = (a.clone(), b.clone(), c.clone());
    let (rows, workers) = store
        .read(move |tx| {
            let rows = [
                tx.presence_of(&a2)?,
                tx.presence_of(&b2)?,
                tx.presence_of(&c2)?,
            ];
            Ok((rows, tx.get_workers(&[a2, b2, c2])?))
        })
        .await
        .expect("read");
    let conn = |row: &Option<Presence>| row.as_ref().map(|p| (p.replica.clone(), p.conn_id));
    assert_eq!(conn(&rows[0]), Some(("replica-a".into(), 3)), "the newest");
    assert_eq!(conn(&rows[1]), Some(("replica-a".into(), 2)));
    assert_eq!(conn(&rows[2]), None, "its own connection's end clears it");
    assert_eq!(rows[0].as_ref().expect("a").connected_at, at(12));
    assert_eq!(workers.len(), 3);
    let worker = |id: &WorkerId| workers.iter().find(|w| &w.id == id).expect("worker");
    assert_eq!(worker(&a).last_seen_at, Some(at(12)), "the latest of two");
    assert_eq!(worker(&b).last_seen_at, Some(at(13)));
    assert_eq!(worker(&c).last_seen_at, Some(at(50)), "never moved back");
    assert_eq!(
        worker(&a).identity.tickets,
        TicketLedger {
            confirmed: Some(issued),
            pending: vec![],
        }
    );
    assert_eq!(
        worker(&a).identity.ticket_remote.as_deref(),
        Some("10.9.9.9")
    );
    assert_eq!(worker(&b).identity.tickets, TicketLedger::default());

    let records = store
        .read(|tx| {
            tx.list_audit(&AuditFilter {
                action_prefix: Some("worker.".into()),
                limit: 100,
                ..AuditFilter::default()
            })
        })
        .await
        .expect("audit");
    // Newest first.
    let written: Vec<(String, String)> = records
        .iter()
        .rev()
        .map(|r| (r.event.action.clone(), r.event.target.clone()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("worker.connected", &a),
        ("worker.connected", &b),
        ("worker.connected", &a),
        ("worker.disconnected", &c),
        ("worker.disconnected", &b),
    ]
    .iter()
    .map(|(action, w)| ((*action).to_owned(), w.as_str().to_owned()))
    .collect();
    assert_eq!(written, expected, "in the group's order");
    let deliveries = store
        .read(|tx| tx.list_deliveries("all", None, 100))
        .await
        .expect("deliveries");
    let mut delivered: Vec<i64> = deliveries.iter().map(|d| d.event_seq).collect();
    delivered.sort_unstable();
    let mut connected: Vec<i64> = records
        .iter()
        .filter(|r| r.event.action == "worker.connected")
        .map(|r| r.seq)
        .collect();
    connected.sort_unstable();
    assert_eq!(delivered, connected, "each connection told to the webhook");
}

//! Webhooks: adding and removing them, and the outbox every audit record passes through.
//!
//! [`fan_out`] runs inside the transaction of the audit record it is given (from
//! [`Tx::insert_audit`]): the deliveries of an event commit with the change that caused it, or
//! not at all. The sender in the server claims them from there.

use muster_core::audit::{AuditEvent, Outcome};
use muster_core::events::EventType;

use crate::error::StoreResult;
use crate::tx::{DueDelivery, Tx, Webhook};

/// Queues the audit record `seq` for every webhook that wants it, if it is an event.
pub fn fan_out<T: Tx + ?Sized>(tx: &mut T, seq: i64, event: &AuditEvent) -> StoreResult<()> {
    if fan_out_kind(event).is_none() {
        return Ok(());
    }
    let webhooks = tx.list_webhooks()?;
    fan_out_to(tx, &webhooks, seq, event)
}

/// [`fan_out`] to `webhooks`, read once for several records.
pub fn fan_out_to<T: Tx + ?Sized>(
    tx: &mut T,
    webhooks: &[Webhook],
    seq: i64,
    event: &AuditEvent,
) -> StoreResult<()> {
    let Some(kind) = fan_out_kind(event) else {
        return Ok(());
    };
    for webhook in webhooks {
        if webhook.wants(kind) {
            tx.insert_delivery(&webhook.id, seq, kind, event.at)?;
        }
    }
    Ok(())
}

/// The event type a record is delivered to webhooks as, if it is one that fans out.
fn fan_out_kind(event: &AuditEvent) -> Option<EventType> {
    EventType::of(&event.action, event.outcome).filter(|kind| kind.fans_out())
}

/// Adds a webhook, audited.
pub fn create(tx: &mut dyn Tx, webhook: &Webhook, audit: &AuditEvent) -> StoreResult<()> {
    tx.insert_webhook(webhook)?;
    tx.insert_audit(audit)
}

/// Removes a webhook and its delivery log, audited. Returns whether it existed.
pub fn remove(tx: &mut dyn Tx, id: &str, audit: &AuditEvent) -> StoreResult<bool> {
    if !tx.delete_webhook(id)? {
        return Ok(false);
    }
    tx.insert_audit(audit)?;
    Ok(true)
}

/// Queues a `webhook.test` event for one webhook only, claimed at once for the caller until
/// `lease_until` (so no sender takes it first). Returns the claimed delivery, or `None` when
/// there is no such webhook.
pub fn test(
    tx: &mut dyn Tx,
    id: &str,
    audit: &AuditEvent,
    lease_until: muster_core::Timestamp,
) -> StoreResult<Option<DueDelivery>> {
    if !tx.list_webhooks()?.iter().any(|w| w.id == id) {
        return Ok(None);
    }
    debug_assert_eq!(
        EventType::of(&audit.action, audit.outcome),
        Some(EventType::WebhookTest)
    );
    let seq = tx.append_audit(audit)?;
    let delivery = tx.insert_delivery(id, seq, EventType::WebhookTest, audit.at)?;
    let claimed = tx.claim_deliveries(audit.at, lease_until, 1, Some(delivery))?;
    Ok(claimed.into_iter().next())
}

/// The audit record of a test event.
pub fn test_event(at: muster_core::Timestamp, actor: &str, id: &str) -> AuditEvent {
    AuditEvent {
        expected: None,
        at,
        actor: actor.to_owned(),
        action: EventType::WebhookTest.as_str().to_owned(),
        target: id.to_owned(),
        remote_addr: None,
        outcome: Outcome::Ok,
        detail: "a test event sent by `muster webhooks test`".into(),
    }
}

//! Adding, listing, removing and testing webhooks, and their delivery logs. The sending is in
//! [`crate::webhooks`].

use muster_core::audit::Outcome;
use muster_core::events::EventType;
use muster_proto::ErrorCode;
use muster_proto::api::{CreateWebhookRequest, DeliveryView, WebhookView};
use muster_store::Webhook;
use muster_store::flows::webhooks;
use rand::RngCore;
use rand::rngs::OsRng;

use crate::error::AppError;
use crate::ops::Actor;
use crate::state::AppState;
use crate::{views, webhooks as sender};

/// The most webhooks a fleet has: each event is written once per webhook that wants it.
pub const MAX_WEBHOOKS: usize = 64;
/// A signing secret's length bounds, in characters.
pub const MIN_SECRET_CHARS: usize = 16;
pub const MAX_SECRET_CHARS: usize = 512;
/// Delivery log lines returned at most.
pub const MAX_DELIVERIES: u32 = 1000;

pub async fn create(
    app: &AppState,
    actor: &Actor,
    req: &CreateWebhookRequest,
) -> Result<WebhookView, AppError> {
    let url = sender::url::parse(&req.url)?;
    let events = event_types(&req.events)?;
    check_secret(&req.secret)?;
    let mut id = [0u8; 8];
    OsRng.fill_bytes(&mut id);
    let webhook = Webhook {
        id: format!("wh_{}", hex::encode(id)),
        url: url.to_string(),
        secret: req.secret.clone(),
        events,
        created_at: app.clock.now(),
    };
    // The URL's path and query may hold a receiver's token: the audit says where, not what.
    let event = app.audit_event(
        &actor.name,
        "webhook.create",
        &webhook.id,
        actor.remote,
        Outcome::Ok,
        format!(
            "webhook to {}://{} for {}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            describe_events(&webhook.events)
        ),
    );
    let stored = webhook.clone();
    let added = app
        .store
        .write(move |tx| {
            if tx.list_webhooks()?.len() >= MAX_WEBHOOKS {
                return Ok(false);
            }
            webhooks::create(tx, &stored, &event)?;
            Ok(true)
        })
        .await?;
    if !added {
        return Err(AppError::conflict(
            ErrorCode::Conflict,
            format!("this fleet has {MAX_WEBHOOKS} webhooks already"),
        )
        .with_hint(
            "remove one with `muster webhooks remove ID`; one receiver can take every event",
        ));
    }
    tracing::info!(webhook = %webhook.id, "webhook added");
    Ok(views::webhook(&webhook))
}

fn event_types(names: &[String]) -> Result<Vec<EventType>, AppError> {
    let mut types = Vec::new();
    for name in names {
        let kind = EventType::parse(name)
            .filter(|k| k.fans_out())
            .ok_or_else(|| {
                let known: Vec<_> = EventType::ALL
                    .iter()
                    .filter(|k| k.fans_out())
                    .map(|k| k.as_str())
                    .collect();
                AppError::bad_request(
                    ErrorCode::BadRequest,
                    format!(
                        "`{}` is not an event type",
                        muster_core::text::bounded(name, 64)
                    ),
                )
                .with_field("events")
                .with_hint(format!("event types are: {}", known.join(", ")))
            })?;
        if !types.contains(&kind) {
            types.push(kind);
        }
    }
    Ok(types)
}

fn check_secret(secret: &str) -> Result<(), AppError> {
    let chars = secret.chars().count();
    let refuse = |why: String| {
        AppError::bad_request(ErrorCode::InvalidSecret, why)
            .with_field("secret")
            .with_hint("use a random secret, e.g. `openssl rand -hex 32 > webhook.secret`")
    };
    if chars < MIN_SECRET_CHARS {
        return Err(refuse(format!(
            "a webhook secret has at least {MIN_SECRET_CHARS} characters; this one has {chars}"
        )));
    }
    if chars > MAX_SECRET_CHARS {
        return Err(refuse(format!(
            "a webhook secret has at most {MAX_SECRET_CHARS} characters"
        )));
    }
    if secret.chars().any(char::is_control) {
        return Err(refuse("a webhook secret has no control characters".into()));
    }
    Ok(())
}

fn describe_events(events: &[EventType]) -> String {
    if events.is_empty() {
        "every event".into()
    } else {
        events
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub async fn list(app: &AppState) -> Result<Vec<WebhookView>, AppError> {
    let all = app.store.read(|tx| tx.list_webhooks()).await?;
    Ok(all.iter().map(views::webhook).collect())
}

fn no_such_webhook(id: &str) -> AppError {
    AppError::not_found(format!(
        "no webhook `{}`",
        muster_core::text::bounded(id, 64)
    ))
    .with_hint("`muster webhooks list` shows the webhooks there are")
}

pub async fn remove(app: &AppState, actor: &Actor, id: &str) -> Result<(), AppError> {
    let event = app.audit_event(
        &actor.name,
        "webhook.remove",
        id,
        actor.remote,
        Outcome::Ok,
        "removed, with its delivery log",
    );
    let key = id.to_owned();
    let removed = app
        .store
        .write(move |tx| webhooks::remove(tx, &key, &event))
        .await?;
    if !removed {
        return Err(no_such_webhook(id));
    }
    tracing::info!(webhook = %id, "webhook removed");
    Ok(())
}

/// Sends a `webhook.test` event to one webhook now, and answers with the delivery as it stands
/// after that first attempt (a failed one is retried like any delivery).
pub async fn test(app: &AppState, actor: &Actor, id: &str) -> Result<DeliveryView, AppError> {
    let now = app.clock.now();
    let event = webhooks::test_event(now, &actor.name, id);
    let lease_until = now.saturating_add(sender::LEASE);
    let key = id.to_owned();
    let due = app
        .store
        .write(move |tx| webhooks::test(tx, &key, &event, lease_until))
        .await?
        .ok_or_else(|| no_such_webhook(id))?;
    let delivery = due.delivery.id;
    sender::deliver(app, due).await;
    let key = id.to_owned();
    let log = app
        .store
        .read(move |tx| tx.list_deliveries(&key, None, 16))
        .await?;
    log.iter()
        .find(|d| d.id == delivery)
        .map(views::delivery)
        .ok_or_else(|| no_such_webhook(id))
}

pub async fn deliveries(
    app: &AppState,
    id: &str,
    limit: Option<u32>,
) -> Result<Vec<DeliveryView>, AppError> {
    let limit = limit.unwrap_or(100).clamp(1, MAX_DELIVERIES);
    let key = id.to_owned();
    let (exists, log) = app
        .store
        .read(move |tx| {
            let exists = tx.list_webhooks()?.iter().any(|w| w.id == key);
            Ok((exists, tx.list_deliveries(&key, None, limit)?))
        })
        .await?;
    if !exists {
        return Err(no_such_webhook(id));
    }
    Ok(log.iter().map(views::delivery).collect())
}

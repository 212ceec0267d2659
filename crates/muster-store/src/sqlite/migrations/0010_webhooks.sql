-- Webhooks and their outbox. A delivery row is written in the same transaction as the audit
-- record (the event) that caused it, so an event is never lost to a crash between the change
-- and its notification; the sender claims due rows, POSTs them and records each attempt.
CREATE TABLE webhooks (
    id         TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    -- The HMAC key signing each request. Kept as given, since signing needs it; write-only
    -- through the API, like the auto-enrollment secret's hash.
    secret     TEXT NOT NULL,
    -- The event types it receives, separated by spaces; empty: every event.
    events     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    -- The audit record that is the event: its seq is the event id receivers deduplicate with.
    event_seq       INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    -- pending, delivered, failed
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- When a pending delivery is next due. A sender that claims it moves this past the end of
    -- its attempt, so a sender that dies mid-attempt leaves it due again, not lost.
    next_attempt_at INTEGER NOT NULL,
    last_attempt_at INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at    INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(state, next_attempt_at);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries(webhook_id, id);
CREATE INDEX webhook_deliveries_by_created ON webhook_deliveries(created_at);

-- The `token.expired` sweep over tokens whose lifetime just ended uses `tokens_by_expiry`
-- (migration 0009).

-- On an enrollment through the secret while an expected-name pattern is set: whether the name
-- matched it (`worker.enrolled` carries it, so an unfamiliar worker can raise an alert).
ALTER TABLE audit ADD COLUMN expected INTEGER;

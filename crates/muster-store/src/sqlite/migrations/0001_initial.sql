-- Times are Unix milliseconds (UTC). Labels are JSON objects. Secrets are stored only as hashes.

CREATE TABLE tokens (
    name          TEXT PRIMARY KEY,
    secret_hash   TEXT NOT NULL,
    labels        TEXT NOT NULL DEFAULT '{}',
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    bound_machine TEXT,
    enrolled_at   INTEGER,
    revoked_at    INTEGER
) STRICT;

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    enrolled_via TEXT NOT NULL,
    token_name   TEXT REFERENCES tokens(name),
    machine_id   TEXT,
    labels       TEXT NOT NULL DEFAULT '{}',
    key_hash     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_seen_at INTEGER
) STRICT;

CREATE INDEX workers_by_token ON workers(token_name);

CREATE TABLE audit (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    remote_addr TEXT,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL
) STRICT;

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

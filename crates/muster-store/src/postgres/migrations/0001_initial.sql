-- The same tables as SQLite's 0001_initial.sql. Times are Unix milliseconds (UTC) in BIGINT, not
-- TIMESTAMPTZ, so both backends store and compare the same numbers. Labels are JSON objects kept
-- as TEXT (the store never queries inside them). Secrets are stored only as hashes.

CREATE TABLE tokens (
    name          TEXT PRIMARY KEY,
    secret_hash   TEXT NOT NULL,
    labels        TEXT NOT NULL DEFAULT '{}',
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    bound_machine TEXT,
    enrolled_at   BIGINT,
    revoked_at    BIGINT
);

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    enrolled_via TEXT NOT NULL,
    token_name   TEXT REFERENCES tokens(name),
    machine_id   TEXT,
    labels       TEXT NOT NULL DEFAULT '{}',
    key_hash     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_seen_at BIGINT
);

CREATE INDEX workers_by_token ON workers(token_name);

-- An identity never hands out a value twice, like SQLite's AUTOINCREMENT.
CREATE TABLE audit (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    remote_addr TEXT,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

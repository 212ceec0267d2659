-- Lists built for fleets of 100,000: every filter of `GET /api/v1/workers`, `/tokens` and `/jobs`
-- has an index behind it, and every list pages by a keyset (the order's columns, unique
-- together), so a page costs the same at row 90,000 as at row 0.

-- A worker's labels, one row each, beside the JSON the worker row carries (which stays the
-- record read back): `label=k` and `label=k=v` look here through the (key, value) index.
-- Written in the same statement sequence as the worker's own row, by every write of labels.
CREATE TABLE worker_labels (
    worker_id TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (worker_id, key)
);
CREATE INDEX worker_labels_by_pair ON worker_labels(key, value, worker_id);
INSERT INTO worker_labels (worker_id, key, value)
    SELECT w.id, j.key, j.value FROM workers w, jsonb_each_text(w.labels::jsonb) j;

-- Statuses the store can tell (`revoked`, `suspended`, `expired`) are rare: partial indexes keep
-- them cheap to list without weighing on the common case. Pages of workers follow the name.
CREATE INDEX workers_revoked ON workers(name) WHERE revoked_at IS NOT NULL;
CREATE INDEX workers_suspended ON workers(name) WHERE suspended_at IS NOT NULL;
CREATE INDEX workers_by_expiry ON workers(expires_at) WHERE expires_at IS NOT NULL;

-- Tokens page by (created_at, name); the state filter reads `revoked_at` and `expires_at`.
CREATE INDEX tokens_by_created ON tokens(created_at, name);
CREATE INDEX tokens_revoked ON tokens(created_at, name) WHERE revoked_at IS NOT NULL;
CREATE INDEX tokens_by_expiry ON tokens(expires_at);

-- Jobs page newest first by (created_at, id), alone, by state or by worker.
DROP INDEX jobs_by_created;
DROP INDEX jobs_by_state;
CREATE INDEX jobs_by_created ON jobs(created_at, id);
CREATE INDEX jobs_by_state ON jobs(state, created_at, id);
CREATE INDEX jobs_by_worker ON jobs(worker_name, created_at, id);

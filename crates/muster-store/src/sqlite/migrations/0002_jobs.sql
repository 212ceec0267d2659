-- Jobs and their stored output. Command, environment and selector labels are JSON.

CREATE TABLE jobs (
    id             TEXT PRIMARY KEY,
    command        TEXT NOT NULL,
    env            TEXT NOT NULL DEFAULT '{}',
    target_worker  TEXT,
    selector       TEXT NOT NULL DEFAULT '{}',
    timeout_ms     INTEGER,
    queue_deadline INTEGER NOT NULL,
    state          TEXT NOT NULL,
    worker_id      TEXT,
    worker_name    TEXT,
    created_at     INTEGER NOT NULL,
    started_at     INTEGER,
    finished_at    INTEGER,
    exit_code      INTEGER,
    reason         TEXT,
    output_bytes   INTEGER NOT NULL DEFAULT 0,
    truncated      INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX jobs_by_state ON jobs(state, created_at);
CREATE INDEX jobs_by_created ON jobs(created_at);

CREATE TABLE job_output (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq    INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    data   BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
) STRICT, WITHOUT ROWID;

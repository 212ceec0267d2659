-- Jobs and their stored output, as in SQLite's 0002_jobs.sql.

CREATE TABLE jobs (
    id             TEXT PRIMARY KEY,
    command        TEXT NOT NULL,
    env            TEXT NOT NULL DEFAULT '{}',
    target_worker  TEXT,
    selector       TEXT NOT NULL DEFAULT '{}',
    timeout_ms     BIGINT,
    queue_deadline BIGINT NOT NULL,
    state          TEXT NOT NULL,
    worker_id      TEXT,
    worker_name    TEXT,
    created_at     BIGINT NOT NULL,
    started_at     BIGINT,
    finished_at    BIGINT,
    exit_code      BIGINT,
    reason         TEXT,
    output_bytes   BIGINT NOT NULL DEFAULT 0,
    truncated      BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX jobs_by_state ON jobs(state, created_at);
CREATE INDEX jobs_by_created ON jobs(created_at);

CREATE TABLE job_output (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq    BIGINT NOT NULL,
    stream SMALLINT NOT NULL,
    data   BYTEA NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- As in SQLite's 0008_replicas.sql: who is connected, in the store so every replica answers the
-- same (one row per worker with a live control channel, naming the replica and connection that
-- hold it), and each replica's lease (a heartbeat). A replica whose lease lapses is dead:
-- whoever notices clears its rows and takes its running jobs over.
CREATE TABLE worker_presence (
    worker_id    TEXT PRIMARY KEY,
    replica      TEXT NOT NULL,
    conn_id      BIGINT NOT NULL,
    connected_at BIGINT NOT NULL,
    running      INTEGER NOT NULL DEFAULT 0,
    slots        INTEGER NOT NULL DEFAULT 0,
    remote_addr  TEXT
);
CREATE INDEX worker_presence_by_replica ON worker_presence(replica);

CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

CREATE INDEX jobs_by_dispatcher ON jobs(dispatcher) WHERE state = 'running';

-- Several replicas, one fleet. Who is connected lives in the store, so every replica answers the
-- same: one row per worker with a live control channel, naming the replica (and the connection)
-- that holds it. Replicas hold a lease (a heartbeat); a replica whose lease lapses is dead, and
-- whoever notices clears its rows and takes its running jobs over.
CREATE TABLE worker_presence (
    worker_id    TEXT PRIMARY KEY,
    replica      TEXT NOT NULL,
    conn_id      INTEGER NOT NULL,
    connected_at INTEGER NOT NULL,
    running      INTEGER NOT NULL DEFAULT 0,
    slots        INTEGER NOT NULL DEFAULT 0,
    remote_addr  TEXT
) STRICT;
CREATE INDEX worker_presence_by_replica ON worker_presence(replica);

CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
) STRICT;

CREATE INDEX jobs_by_dispatcher ON jobs(dispatcher) WHERE state = 'running';

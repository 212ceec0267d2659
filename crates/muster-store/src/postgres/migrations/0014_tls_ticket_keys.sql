-- As in SQLite's 0014_tls_ticket_keys.sql: TLS 1.3 ticket keys that replicas sharing one
-- certificate share, sealed under a key only holders of the TLS private key can derive.
CREATE TABLE tls_ticket_keys (
    certificate TEXT NOT NULL,
    period      BIGINT NOT NULL,
    sealed      BYTEA NOT NULL,
    PRIMARY KEY (certificate, period)
);

-- TLS 1.3 ticket keys that replicas sharing one certificate share (so a worker failing over to
-- another replica resumes its TLS session there): one key per certificate and rotation period,
-- sealed under a key derived from the TLS private key, so a reader of the database cannot use
-- them. A single server on SQLite keeps its keys in the data dir instead; the table exists on
-- both backends so their schemas stay one.
CREATE TABLE tls_ticket_keys (
    certificate TEXT NOT NULL,
    period      INTEGER NOT NULL,
    sealed      BLOB NOT NULL,
    PRIMARY KEY (certificate, period)
) STRICT;

-- A worker's key and tickets (see `muster_core::identity` and `muster_core::tickets`): the
-- Ed25519 public key it proves itself with (base64url; NULL for a worker enrolled before keys,
-- until its next connection binds one), the hash of its confirmed ticket, the hashes of the
-- tickets issued since (comma-separated hex), where the confirmed one came from, and when the
-- identity was suspended for being used from two places at once.
ALTER TABLE workers ADD COLUMN public_key TEXT;
ALTER TABLE workers ADD COLUMN ticket_confirmed TEXT;
ALTER TABLE workers ADD COLUMN ticket_pending TEXT NOT NULL DEFAULT '';
ALTER TABLE workers ADD COLUMN ticket_remote TEXT;
ALTER TABLE workers ADD COLUMN suspended_at BIGINT;

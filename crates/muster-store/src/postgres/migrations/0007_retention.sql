-- As in SQLite's 0007_retention.sql: the pruner deletes audit records and ended jobs older than
-- their configured ages, oldest first, in small batches; without these indexes each batch would
-- scan its whole table.
CREATE INDEX audit_by_at ON audit(at);
CREATE INDEX jobs_by_finished ON jobs(finished_at);

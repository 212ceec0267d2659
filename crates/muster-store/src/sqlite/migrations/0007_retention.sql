-- Retention: the pruner deletes audit records and ended jobs older than their configured ages,
-- oldest first, in small batches. Without these, each batch would scan its whole table.
CREATE INDEX audit_by_at ON audit(at);
CREATE INDEX jobs_by_finished ON jobs(finished_at);

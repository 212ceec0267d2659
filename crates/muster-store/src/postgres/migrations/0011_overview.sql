-- The fleet overview above the Workers page counts enrollments and revocations hour by hour
-- over the last day: ranges on these indexes, not scans of the fleet.
CREATE INDEX workers_by_created ON workers(created_at);
CREATE INDEX workers_by_revoked_at ON workers(revoked_at) WHERE revoked_at IS NOT NULL;

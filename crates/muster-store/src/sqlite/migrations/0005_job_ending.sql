-- How a job ended, as a kind programs match on (`exited`, `signalled`, `timed_out`, `no_worker`,
-- `cancelled`, `spawn_failed`, `lost`), and the signal that killed it: `muster job run` derives
-- its exit code from these, never from the words in `reason`.
ALTER TABLE jobs ADD COLUMN ending TEXT;
ALTER TABLE jobs ADD COLUMN signal INTEGER;

-- Jobs that ended before this step get their kind once, here, from what their ending wrote (the
-- reasons below are the words `muster_core::job::Ending::reason` wrote until now). A failed job
-- whose words match none of them keeps no kind.
UPDATE jobs SET ending = CASE
    WHEN state = 'succeeded' THEN 'exited'
    WHEN state = 'cancelled' THEN 'cancelled'
    WHEN state = 'lost' THEN 'lost'
    WHEN exit_code IS NOT NULL THEN 'exited'
    WHEN reason GLOB 'killed by signal [0-9]*' THEN 'signalled'
    WHEN reason LIKE 'timed out after %' THEN 'timed_out'
    WHEN reason LIKE 'no matching worker had a free slot within %' THEN 'no_worker'
    WHEN reason LIKE 'could not start the command: %' THEN 'spawn_failed'
    END
WHERE state IN ('succeeded', 'failed', 'cancelled', 'lost');
UPDATE jobs SET signal = CAST(substr(reason, 18) AS INTEGER) WHERE ending = 'signalled';

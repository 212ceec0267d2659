-- How a job ended, as in SQLite's 0005_job_ending.sql.
ALTER TABLE jobs ADD COLUMN ending TEXT;
ALTER TABLE jobs ADD COLUMN signal BIGINT;

UPDATE jobs SET ending = CASE
    WHEN state = 'succeeded' THEN 'exited'
    WHEN state = 'cancelled' THEN 'cancelled'
    WHEN state = 'lost' THEN 'lost'
    WHEN exit_code IS NOT NULL THEN 'exited'
    WHEN reason ~ '^killed by signal [0-9]+$' THEN 'signalled'
    WHEN reason LIKE 'timed out after %' THEN 'timed_out'
    WHEN reason LIKE 'no matching worker had a free slot within %' THEN 'no_worker'
    WHEN reason LIKE 'could not start the command: %' THEN 'spawn_failed'
    END
WHERE state IN ('succeeded', 'failed', 'cancelled', 'lost');
UPDATE jobs SET signal = CAST(substr(reason, 18) AS BIGINT) WHERE ending = 'signalled';

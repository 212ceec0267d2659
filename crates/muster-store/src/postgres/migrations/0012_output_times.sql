-- As in SQLite's 0012_output_times.sql: when the server received each chunk of a job's output.
ALTER TABLE job_output ADD COLUMN at BIGINT;

-- The worker name substring filter (`name=`, `LIKE '%x%'`) served by a trigram index where the
-- server has pg_trgm (a trusted extension in the standard contrib package: a database owner may
-- create it). Without it, or without the right to create it, nothing fails: the filter scans
-- along the name index as before. The extension goes into `public`, so a store kept in a schema
-- of its own (the tests) does not take it away from the others when that schema is dropped.
DO $$
DECLARE
    trgm_schema name;
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'no pg_trgm (%): the worker name filter scans along the name index', SQLERRM;
        RETURN;
    END;
    SELECT n.nspname INTO trgm_schema
        FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'pg_trgm';
    EXECUTE format(
        'CREATE INDEX IF NOT EXISTS workers_name_trgm ON workers USING gin (name %I.gin_trgm_ops)',
        trgm_schema
    );
END
$$;

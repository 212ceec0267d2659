-- When the server received each chunk of a job's output (unix milliseconds), so
-- `muster job logs --json` can say when each line was printed. Output stored before this step
-- has no time (NULL).
--
-- A worker's name substring filter (`name=`) gets no index here: a B-tree cannot serve
-- `instr(name, x) > 0`, and SQLite's trigram index (FTS5) would be a second table kept in step
-- with every write of a name, for a filter an admin types. It scans along the name index and
-- stops at a page's worth of matches (ARCHITECTURE.md says what that costs at 100,000).
ALTER TABLE job_output ADD COLUMN at INTEGER;

-- The Workers list sorts by name, by creation or by last contact, either way, and pages by a
-- keyset in each order (the sort column, then the name, unique together): each order walks an
-- index, so a page costs the same at row 90,000 as at row 0. A worker never seen sorts as seen
-- at 0 (the oldest), which the expression index carries so the order's NULLs need no rule.
-- `workers_by_created` (created_at) is superseded by the pair, which also serves the overview's
-- hour-by-hour ranges.
CREATE INDEX workers_by_created_name ON workers(created_at, name);
DROP INDEX workers_by_created;
CREATE INDEX workers_by_seen ON workers((COALESCE(last_seen_at, 0)), name);

-- A worker's audit trail (its page and `GET /api/v1/audit?worker=`): records whose target is its
-- name or whose actor is the worker itself, newest first, read along these instead of scanning
-- the log for text.
CREATE INDEX audit_by_target ON audit(target, seq);
CREATE INDEX audit_by_actor ON audit(actor, seq);

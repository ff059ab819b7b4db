-- sessiond schema: a live session's `terminated_at` holds the largest integer, not NULL (issue 13).
-- SQLite stores NULL in no bytes and a time in eight, so a termination grew its row; a row that
-- changes size is cut out of its page and inserted again (and the page rebalanced with its
-- neighbours when it no longer fits), where one of the same size is overwritten in place.
-- Measured: 4-7% of a DeleteSession's CPU (BENCHMARKS.md, "Session 18"). The store reads the
-- largest integer as "not terminated" and no longer writes NULL here; the partial index still
-- holds only terminated sessions.
DROP INDEX sessions_terminated;
UPDATE sessions SET terminated_at = 9223372036854775807 WHERE terminated_at IS NULL;
CREATE INDEX sessions_terminated ON sessions (terminated_at) WHERE terminated_at < 9223372036854775807;

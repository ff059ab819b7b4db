-- sessiond schema: the history as an append (issue 13). It was clustered by (session_id, sequence),
-- so every write put its entry on a random leaf page of a table far larger than the page cache (a
-- page read, and a 4 KiB WAL frame written and checkpointed, per call). Now its rows are keyed by
-- `entry`, a rowid SQLite assigns in commit order: a new row lands on the last leaf, which every
-- write of a transaction shares. (Clustered by (at, session_id, sequence) WITHOUT ROWID instead,
-- the last leaf split about once per transaction, rewriting its neighbours: measured dearer, see
-- BENCHMARKS.md.) `session_history_at` keeps the retention sweep oldest-first, and the unique
-- `session_history_session` reads one session's history in sequence order: its entries are the
-- key only, a few times smaller than the rows, so more of it stays in the cache.
CREATE TABLE session_history_log (
    entry      INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    sequence   INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    changes    TEXT NOT NULL
);
INSERT INTO session_history_log (session_id, sequence, at, actor, changes)
    SELECT session_id, sequence, at, actor, changes FROM session_history ORDER BY at, session_id, sequence;
DROP TABLE session_history;
ALTER TABLE session_history_log RENAME TO session_history;
CREATE INDEX session_history_at ON session_history (at);
CREATE UNIQUE INDEX session_history_session ON session_history (session_id, sequence);

-- sessiond schema: the history as an append (issue 13). It was clustered by (session_id, sequence),
-- so every write put its entry on a random leaf page of a table far larger than the page cache (a
-- page read, and a 4 KiB WAL frame written and checkpointed, per call). Clustered by time, a new
-- entry lands on the last leaf, which every write of a transaction shares and which stays cached;
-- the retention sweep deletes from the front of the same order, with no index of its own. Reading
-- one session's history in sequence order goes through `session_history_session`, whose entries
-- (the key only) are a few times smaller than the rows, so more of it stays in the cache.
CREATE TABLE session_history_by_time (
    session_id TEXT NOT NULL,
    sequence   INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    changes    TEXT NOT NULL,
    PRIMARY KEY (at, session_id, sequence)
) WITHOUT ROWID;
INSERT INTO session_history_by_time (session_id, sequence, at, actor, changes)
    SELECT session_id, sequence, at, actor, changes FROM session_history ORDER BY at, session_id, sequence;
DROP TABLE session_history;
ALTER TABLE session_history_by_time RENAME TO session_history;
CREATE UNIQUE INDEX session_history_session ON session_history (session_id, sequence);

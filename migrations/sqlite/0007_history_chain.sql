-- sessiond schema: one session's history found through its own rows, not an index (issue 13).
-- Since 0006 every entry was appended, but its entry in the unique index by (session_id,
-- sequence) landed on a random leaf of that index: about 6 KiB of WAL and 20 us of a
-- DeleteSession's ~50 us of writing (BENCHMARKS.md). Now each entry names the entry before it
-- of the same session (`previous`), and the session row, which every write rewrites anyway,
-- names its newest (`sessions.history_head`). Reading one session's history walks that chain
-- from the head, one rowid lookup per entry. A session swept from `sessions` leaves its head in
-- `session_history_heads` until the retention sweep has removed all its entries.
--
-- Entries are renumbered here so that each session's entries are numbered in sequence order
-- (new writes are: a session's writes commit in sequence order), in the order of time as far as
-- that allows: by the latest time the session had reached at each entry. A walk that meets an
-- entry the sweep took knows from that order whether older entries of the session can remain.
CREATE TABLE session_history_chain (
    entry      INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    sequence   INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    changes    TEXT NOT NULL,
    previous   INTEGER
);
INSERT INTO session_history_chain (entry, session_id, sequence, at, actor, changes, previous)
    WITH reached AS (
        SELECT session_id, sequence, at, actor, changes,
               MAX(at) OVER (PARTITION BY session_id ORDER BY sequence) AS reached
        FROM session_history
    ), numbered AS (
        SELECT session_id, sequence, at, actor, changes,
               ROW_NUMBER() OVER (ORDER BY reached, session_id, sequence) AS entry
        FROM reached
    )
    SELECT entry, session_id, sequence, at, actor, changes,
           LAG(entry) OVER (PARTITION BY session_id ORDER BY sequence)
    FROM numbered ORDER BY entry;
DROP TABLE session_history;
ALTER TABLE session_history_chain RENAME TO session_history;
CREATE INDEX session_history_at ON session_history (at);

ALTER TABLE sessions ADD COLUMN history_head INTEGER;
UPDATE sessions SET history_head = heads.head
    FROM (SELECT session_id, MAX(entry) AS head FROM session_history GROUP BY session_id) AS heads
    WHERE heads.session_id = sessions.id;

CREATE TABLE session_history_heads (
    session_id TEXT PRIMARY KEY,
    head       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX session_history_heads_head ON session_history_heads (head);
INSERT INTO session_history_heads (session_id, head)
    SELECT session_id, MAX(entry) FROM session_history
    WHERE session_id NOT IN (SELECT id FROM sessions)
    GROUP BY session_id;

-- sessiond schema (as migrations/sqlite/0006_history_append.sql): the history keyed by time. On
-- SQLite that makes every history write an append; the heap here appends already, so the change
-- keeps the two schemas alike at the same cost per write (one B-tree appended to, one by session;
-- no sequence, which the distributed engines do without): the primary key by time takes over from
-- `session_history_at` for the retention sweep, and the unique index by session reads one
-- session's history in sequence order.
--
-- Building two indexes over a long history outlasts the connections' statement timeout: this
-- transaction has none. The ALTER comes first and locks the table: a second process migrating at
-- the same moment waits for this one (rather than deadlocking with it), then collides on the new
-- index's name and finds the version applied.
SET LOCAL statement_timeout = 0;
ALTER TABLE session_history DROP CONSTRAINT session_history_pkey, ADD PRIMARY KEY (at, session_id, sequence);
CREATE UNIQUE INDEX session_history_session ON session_history (session_id, sequence);
DROP INDEX session_history_at;

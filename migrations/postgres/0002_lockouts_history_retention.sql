-- sessiond schema, version 2 (as migrations/sqlite/0002_lockouts_history_retention.sql): one-time-code
-- checks lock on a counter of their own; the history is indexed by time for the sweeper's retention.
ALTER TABLE users ADD COLUMN otp_failed_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN otp_locked BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX session_history_at ON session_history (at);

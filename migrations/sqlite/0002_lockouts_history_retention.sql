-- sessiond schema, version 2: one-time-code checks lock on a counter of their own, and the history
-- is indexed by time so that the sweeper can apply its retention without scanning it.
ALTER TABLE users ADD COLUMN otp_failed_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN otp_locked INTEGER NOT NULL DEFAULT 0;
CREATE INDEX session_history_at ON session_history (at);

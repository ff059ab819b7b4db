-- sessiond schema, version 1.
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    login_name      TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    org_id          TEXT NOT NULL,
    state           TEXT NOT NULL,
    password_hash   TEXT,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked          INTEGER NOT NULL DEFAULT 0,
    totp_secret     BLOB,
    totp_last_step  INTEGER,
    created_at      INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    secret_hash BLOB NOT NULL,
    permissions INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- One row per session that still matters; `state` holds factors, metadata and user agent as JSON.
-- Columns that queries filter or sort on are their own columns, each with an index. The table is
-- clustered by id (time-ordered, so new sessions append) and indexes on columns that are often
-- NULL are partial: an update touches only the index entries whose values it changes.
CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    resource_owner  TEXT NOT NULL,
    creator_id      TEXT NOT NULL,
    user_id         TEXT,
    fingerprint_id  TEXT,
    creation_date   INTEGER NOT NULL,
    change_date     INTEGER NOT NULL,
    sequence        INTEGER NOT NULL,
    token_hash      BLOB NOT NULL,
    expiration_date INTEGER,
    terminated_at   INTEGER,
    state           TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_creation ON sessions (creation_date);
CREATE INDEX sessions_user ON sessions (user_id, creation_date) WHERE user_id IS NOT NULL;
CREATE INDEX sessions_creator ON sessions (creator_id, creation_date);
CREATE INDEX sessions_fingerprint ON sessions (fingerprint_id, creation_date) WHERE fingerprint_id IS NOT NULL;
CREATE INDEX sessions_expiration ON sessions (expiration_date) WHERE expiration_date IS NOT NULL;
CREATE INDEX sessions_terminated ON sessions (terminated_at) WHERE terminated_at IS NOT NULL;

-- Append-only: one entry per call that changed a session; kept when the live row is swept.
CREATE TABLE session_history (
    session_id TEXT NOT NULL,
    sequence   INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    changes    TEXT NOT NULL,
    PRIMARY KEY (session_id, sequence)
) WITHOUT ROWID;

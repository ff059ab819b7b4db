-- sessiond schema, version 1 (the same tables as migrations/sqlite/0001_init.sql).
-- Plain tables and indexes only, so that PostgreSQL-compatible distributed engines (CockroachDB,
-- YugabyteDB) accept it: no triggers, functions, sequences or extensions.
-- Times are microseconds since the Unix epoch (BIGINT), as in the SQLite schema.
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    login_name      TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    org_id          TEXT NOT NULL,
    state           TEXT NOT NULL,
    password_hash   TEXT,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked          BOOLEAN NOT NULL DEFAULT FALSE,
    totp_secret     BYTEA,
    totp_last_step  BIGINT,
    created_at      BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    secret_hash BYTEA NOT NULL,
    permissions SMALLINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- One row per session that still matters; `state` holds factors, metadata and user agent as the
-- JSON document both backends share (kept as TEXT: it is only ever read whole).
-- Columns that queries filter or sort on are their own columns, each with an index.
CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    resource_owner  TEXT NOT NULL,
    creator_id      TEXT NOT NULL,
    user_id         TEXT,
    fingerprint_id  TEXT,
    creation_date   BIGINT NOT NULL,
    change_date     BIGINT NOT NULL,
    sequence        BIGINT NOT NULL,
    token_hash      BYTEA NOT NULL,
    expiration_date BIGINT,
    terminated_at   BIGINT,
    state           TEXT NOT NULL
);
CREATE INDEX sessions_creation ON sessions (creation_date, id);
CREATE INDEX sessions_user ON sessions (user_id, creation_date);
CREATE INDEX sessions_creator ON sessions (creator_id, creation_date);
CREATE INDEX sessions_fingerprint ON sessions (fingerprint_id, creation_date);
CREATE INDEX sessions_expiration ON sessions (expiration_date);
CREATE INDEX sessions_terminated ON sessions (terminated_at);

-- Append-only: one entry per call that changed a session; kept when the live row is swept.
CREATE TABLE session_history (
    session_id TEXT NOT NULL,
    sequence   BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    changes    TEXT NOT NULL,
    PRIMARY KEY (session_id, sequence)
);

-- sessiond schema: passkeys (src/domain/passkey.rs). One row per registered WebAuthn credential,
-- keyed by its credential id (what an assertion names); `credential` is webauthn-rs's Passkey as
-- JSON (public key, counter), `counter` the signature counter last seen, for conditional updates.
CREATE TABLE passkeys (
    credential_id TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    passkey_id    TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    rp_id         TEXT NOT NULL,
    credential    TEXT NOT NULL,
    counter       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX passkeys_user ON passkeys (user_id, created_at);

-- Registrations between RegisterPasskey and VerifyPasskeyRegistration: webauthn-rs's state, sealed
-- with the secrets key; used once, expiring.
CREATE TABLE passkey_registrations (
    passkey_id TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    rp_id      TEXT NOT NULL,
    state      BLOB NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX passkey_registrations_user ON passkey_registrations (user_id, expires_at);
CREATE INDEX passkey_registrations_expiry ON passkey_registrations (expires_at);

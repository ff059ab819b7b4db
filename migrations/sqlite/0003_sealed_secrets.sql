-- sessiond schema: secrets at rest (src/domain/keyring.rs, src/domain/secrets.rs).
-- TOTP seeds are sealed into `totp_sealed`. `totp_secret` held them in clear: start seals what
-- it finds there and empties it, and nothing writes it any more.
ALTER TABLE users ADD COLUMN totp_sealed BLOB;

-- One verifier per key id that has sealed anything into this database: a start checks that its
-- key file holds each of these keys, and the right one (the verifier opens).
CREATE TABLE secret_keys (
    key_id     TEXT PRIMARY KEY,
    verifier   BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

//! The SQLite store's secrets at rest: the key checks and the TOTP seeds' sealing, kept apart
//! from the sessions' hot paths.

use rusqlite::params;

use super::{SqliteStore, StoreResult, translate};
use crate::domain::{
    Timestamp,
    keyring::SealedSecret,
    secrets::{ClearTotpSecret, KeyCheck},
};

impl SqliteStore {
    pub(super) async fn select_key_checks(&self) -> StoreResult<Vec<KeyCheck>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT key_id, verifier, created_at FROM secret_keys ORDER BY key_id")
                .map_err(translate)?;
            stmt.query_map([], |r| {
                Ok(KeyCheck {
                    key_id: r.get(0)?,
                    verifier: SealedSecret::from_bytes(r.get(1)?),
                    created_at: Timestamp(r.get(2)?),
                })
            })
            .and_then(Iterator::collect)
            .map_err(translate)
        })
        .await
    }

    pub(super) async fn add_key_check(&self, check: &KeyCheck) -> StoreResult<()> {
        let check = check.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO secret_keys (key_id, verifier, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![check.key_id, check.verifier.as_bytes(), check.created_at.0],
            )
            .map_err(translate)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn delete_key_check(&self, key_id: &str) -> StoreResult<bool> {
        let key_id = key_id.to_owned();
        self.write(move |conn| {
            let n = conn.execute("DELETE FROM secret_keys WHERE key_id = ?1", [key_id]).map_err(translate)?;
            Ok(n == 1)
        })
        .await
    }

    pub(super) async fn select_clear_totp_secrets(&self) -> StoreResult<Vec<ClearTotpSecret>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT id, totp_secret FROM users WHERE totp_secret IS NOT NULL ORDER BY id")
                .map_err(translate)?;
            stmt.query_map([], |r| Ok(ClearTotpSecret { user_id: r.get(0)?, secret: r.get::<_, Vec<u8>>(1)?.into() }))
                .and_then(Iterator::collect)
                .map_err(translate)
        })
        .await
    }

    pub(super) async fn replace_clear_totp_secret(
        &self,
        user_id: &str,
        clear: &[u8],
        sealed: &SealedSecret,
    ) -> StoreResult<bool> {
        let (user_id, clear, sealed) = (user_id.to_owned(), zeroize::Zeroizing::new(clear.to_vec()), sealed.clone());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE users SET totp_sealed = ?3, totp_secret = NULL WHERE id = ?1 AND totp_secret = ?2",
                    params![user_id, clear.as_slice(), sealed.as_bytes()],
                )
                .map_err(translate)?;
            Ok(n == 1)
        })
        .await
    }

    pub(super) async fn replace_sealed_totp_secret(
        &self,
        user_id: &str,
        old: &SealedSecret,
        new: &SealedSecret,
    ) -> StoreResult<bool> {
        let (user_id, old, new) = (user_id.to_owned(), old.clone(), new.clone());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE users SET totp_sealed = ?3 WHERE id = ?1 AND totp_sealed = ?2",
                    params![user_id, old.as_bytes(), new.as_bytes()],
                )
                .map_err(translate)?;
            Ok(n == 1)
        })
        .await
    }
}

//! Secrets at rest on PostgreSQL: key verifiers and the TOTP seeds' sealed (and legacy clear)
//! columns. Sealed bytes only: this store never holds a key.

use sqlx::Row as _;
use zeroize::Zeroizing;

use super::PostgresStore;
use crate::{
    domain::{
        Timestamp,
        keyring::SealedSecret,
        secrets::{ClearTotpSecret, KeyCheck},
    },
    store::StoreResult,
};

impl PostgresStore {
    pub(super) async fn select_key_checks(&self) -> StoreResult<Vec<KeyCheck>> {
        self.run(|conn| {
            Box::pin(async move {
                let rows =
                    sqlx::query("SELECT key_id, verifier, created_at FROM secret_keys ORDER BY key_id COLLATE \"C\"")
                        .fetch_all(conn)
                        .await?;
                let checks = rows
                    .iter()
                    .map(|r| {
                        Ok::<_, sqlx::Error>(KeyCheck {
                            key_id: r.try_get(0)?,
                            verifier: SealedSecret::from_bytes(r.try_get(1)?),
                            created_at: Timestamp(r.try_get(2)?),
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(checks)
            })
        })
        .await
    }

    pub(super) async fn add_key_check(&self, check: &KeyCheck) -> StoreResult<()> {
        let check = check.clone();
        self.run(move |conn| {
            let check = check.clone();
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO secret_keys (key_id, verifier, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(check.key_id)
                .bind(check.verifier.as_bytes().to_vec())
                .bind(check.created_at.0)
                .execute(conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    pub(super) async fn delete_key_check(&self, key_id: &str) -> StoreResult<bool> {
        let key_id = key_id.to_owned();
        self.run(move |conn| {
            let key_id = key_id.clone();
            Box::pin(async move {
                let n = sqlx::query("DELETE FROM secret_keys WHERE key_id = $1")
                    .bind(key_id)
                    .execute(conn)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            })
        })
        .await
    }

    pub(super) async fn select_clear_totp_secrets(&self) -> StoreResult<Vec<ClearTotpSecret>> {
        self.run(|conn| {
            Box::pin(async move {
                let rows = sqlx::query("SELECT id, totp_secret FROM users WHERE totp_secret IS NOT NULL ORDER BY id")
                    .fetch_all(conn)
                    .await?;
                let seeds = rows
                    .iter()
                    .map(|r| {
                        Ok::<_, sqlx::Error>(ClearTotpSecret {
                            user_id: r.try_get(0)?,
                            secret: Zeroizing::new(r.try_get(1)?),
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(seeds)
            })
        })
        .await
    }

    pub(super) async fn replace_clear_totp_secret(
        &self,
        user_id: &str,
        clear: &[u8],
        sealed: &SealedSecret,
    ) -> StoreResult<bool> {
        let (user_id, clear, sealed) = (user_id.to_owned(), Zeroizing::new(clear.to_vec()), sealed.clone());
        self.run(move |conn| {
            let (user_id, clear, sealed) = (user_id.clone(), clear.to_vec(), sealed.as_bytes().to_vec());
            Box::pin(async move {
                let n = sqlx::query(
                    "UPDATE users SET totp_sealed = $3, totp_secret = NULL WHERE id = $1 AND totp_secret = $2",
                )
                .bind(user_id)
                .bind(clear)
                .bind(sealed)
                .execute(conn)
                .await?
                .rows_affected();
                Ok(n == 1)
            })
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
        self.run(move |conn| {
            let (user_id, old, new) = (user_id.clone(), old.as_bytes().to_vec(), new.as_bytes().to_vec());
            Box::pin(async move {
                let n = sqlx::query("UPDATE users SET totp_sealed = $3 WHERE id = $1 AND totp_sealed = $2")
                    .bind(user_id)
                    .bind(old)
                    .bind(new)
                    .execute(conn)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            })
        })
        .await
    }
}

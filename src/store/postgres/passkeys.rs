//! Passkeys on PostgreSQL: registered credentials and registrations in flight. Taking a
//! registration is one `DELETE ... RETURNING` and recording a use one conditional `UPDATE`, so
//! concurrent callers through any process never both succeed.

use async_trait::async_trait;
use sqlx::{Connection as _, Row as _, postgres::PgRow};

use super::PostgresStore;
use crate::{
    domain::{
        Timestamp,
        keyring::SealedSecret,
        passkey::{PasskeyRecord, PasskeyStore, PendingRegistration},
    },
    store::StoreResult,
};

const PASSKEY_COLUMNS: &str = "credential_id, user_id, passkey_id, name, rp_id, credential, counter, created_at";

fn passkey_from_row(row: &PgRow) -> Result<PasskeyRecord, sqlx::Error> {
    Ok(PasskeyRecord {
        credential_id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        id: row.try_get(2)?,
        name: row.try_get(3)?,
        rp_id: row.try_get(4)?,
        credential: row.try_get(5)?,
        counter: row.try_get(6)?,
        created_at: Timestamp(row.try_get(7)?),
    })
}

#[async_trait]
impl PasskeyStore for PostgresStore {
    async fn insert_passkey_registration(
        &self,
        pending: &PendingRegistration,
        now: Timestamp,
        keep: u32,
    ) -> StoreResult<()> {
        let pending = pending.clone();
        self.run(move |conn| {
            let pending = pending.clone();
            Box::pin(async move {
                let mut tx = conn.begin().await?;
                sqlx::query("DELETE FROM passkey_registrations WHERE expires_at <= $1")
                    .bind(now.0)
                    .execute(&mut *tx)
                    .await?;
                // The newest `keep - 1` stay beside the new one.
                sqlx::query(
                    "DELETE FROM passkey_registrations WHERE user_id = $1 AND passkey_id NOT IN \
                     (SELECT passkey_id FROM passkey_registrations WHERE user_id = $1 \
                     ORDER BY expires_at DESC LIMIT $2)",
                )
                .bind(pending.user_id.clone())
                .bind(i64::from(keep.saturating_sub(1)))
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO passkey_registrations (passkey_id, user_id, rp_id, state, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(pending.passkey_id)
                .bind(pending.user_id)
                .bind(pending.rp_id)
                .bind(pending.state.as_bytes().to_vec())
                .bind(pending.expires_at.0)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            })
        })
        .await
    }

    async fn take_passkey_registration(
        &self,
        user_id: &str,
        passkey_id: &str,
    ) -> StoreResult<Option<PendingRegistration>> {
        let (user_id, passkey_id) = (user_id.to_owned(), passkey_id.to_owned());
        self.run(move |conn| {
            let (user_id, passkey_id) = (user_id.clone(), passkey_id.clone());
            Box::pin(async move {
                let row = sqlx::query(
                    "DELETE FROM passkey_registrations WHERE passkey_id = $1 AND user_id = $2 \
                     RETURNING passkey_id, user_id, rp_id, state, expires_at",
                )
                .bind(passkey_id)
                .bind(user_id)
                .fetch_optional(conn)
                .await?;
                let pending = row
                    .map(|r| {
                        Ok::<_, sqlx::Error>(PendingRegistration {
                            passkey_id: r.try_get(0)?,
                            user_id: r.try_get(1)?,
                            rp_id: r.try_get(2)?,
                            state: SealedSecret::from_bytes(r.try_get(3)?),
                            expires_at: Timestamp(r.try_get(4)?),
                        })
                    })
                    .transpose()?;
                Ok(pending)
            })
        })
        .await
    }

    async fn insert_passkey(&self, passkey: &PasskeyRecord) -> StoreResult<()> {
        let p = passkey.clone();
        self.run(move |conn| {
            let p = p.clone();
            Box::pin(async move {
                sqlx::query(&format!(
                    "INSERT INTO passkeys ({PASSKEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ))
                .bind(p.credential_id)
                .bind(p.user_id)
                .bind(p.id)
                .bind(p.name)
                .bind(p.rp_id)
                .bind(p.credential)
                .bind(p.counter)
                .bind(p.created_at.0)
                .execute(conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn passkeys_of_user(&self, user_id: &str) -> StoreResult<Vec<PasskeyRecord>> {
        let user_id = user_id.to_owned();
        self.run(move |conn| {
            let user_id = user_id.clone();
            Box::pin(async move {
                let rows = sqlx::query(&format!(
                    "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at, passkey_id"
                ))
                .bind(user_id)
                .fetch_all(conn)
                .await?;
                Ok(rows.iter().map(passkey_from_row).collect::<Result<_, _>>()?)
            })
        })
        .await
    }

    async fn passkey_by_credential(&self, credential_id: &str) -> StoreResult<Option<PasskeyRecord>> {
        let credential_id = credential_id.to_owned();
        self.run(move |conn| {
            let credential_id = credential_id.clone();
            Box::pin(async move {
                let row = sqlx::query(&format!("SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1"))
                    .bind(credential_id)
                    .fetch_optional(conn)
                    .await?;
                Ok(row.as_ref().map(passkey_from_row).transpose()?)
            })
        })
        .await
    }

    async fn record_passkey_use(
        &self,
        credential_id: &str,
        seen_counter: i64,
        counter: i64,
        credential: &str,
    ) -> StoreResult<bool> {
        let (credential_id, credential) = (credential_id.to_owned(), credential.to_owned());
        self.run(move |conn| {
            let (credential_id, credential) = (credential_id.clone(), credential.clone());
            Box::pin(async move {
                let n = sqlx::query(
                    "UPDATE passkeys SET counter = $3, credential = $4 WHERE credential_id = $1 AND counter = $2",
                )
                .bind(credential_id)
                .bind(seen_counter)
                .bind(counter)
                .bind(credential)
                .execute(conn)
                .await?
                .rows_affected();
                Ok(n == 1)
            })
        })
        .await
    }

    async fn remove_passkey(&self, user_id: &str, passkey_id: &str) -> StoreResult<bool> {
        let (user_id, passkey_id) = (user_id.to_owned(), passkey_id.to_owned());
        self.run(move |conn| {
            let (user_id, passkey_id) = (user_id.clone(), passkey_id.clone());
            Box::pin(async move {
                let n = sqlx::query("DELETE FROM passkeys WHERE user_id = $1 AND passkey_id = $2")
                    .bind(user_id)
                    .bind(passkey_id)
                    .execute(conn)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            })
        })
        .await
    }
}

//! Passkeys on SQLite: registered credentials and registrations in flight. Every call runs on the
//! database thread, so each statement (and each job's savepoint) is atomic against all others.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteStore, rows::translate};
use crate::{
    domain::{
        Timestamp,
        keyring::SealedSecret,
        passkey::{PasskeyRecord, PasskeyStore, PendingRegistration},
    },
    store::StoreResult,
};

const PASSKEY_COLUMNS: &str = "credential_id, user_id, passkey_id, name, rp_id, credential, counter, created_at";

fn passkey_from_row(row: &Row<'_>) -> rusqlite::Result<PasskeyRecord> {
    Ok(PasskeyRecord {
        credential_id: row.get(0)?,
        user_id: row.get(1)?,
        id: row.get(2)?,
        name: row.get(3)?,
        rp_id: row.get(4)?,
        credential: row.get(5)?,
        counter: row.get(6)?,
        created_at: Timestamp(row.get(7)?),
    })
}

#[async_trait]
impl PasskeyStore for SqliteStore {
    async fn insert_passkey_registration(
        &self,
        pending: &PendingRegistration,
        now: Timestamp,
        keep: u32,
    ) -> StoreResult<()> {
        let pending = pending.clone();
        self.write(move |conn| {
            conn.execute("DELETE FROM passkey_registrations WHERE expires_at <= ?1", [now.0]).map_err(translate)?;
            // The newest `keep - 1` stay beside the new one.
            conn.execute(
                "DELETE FROM passkey_registrations WHERE user_id = ?1 AND passkey_id NOT IN \
                 (SELECT passkey_id FROM passkey_registrations WHERE user_id = ?1 ORDER BY expires_at DESC LIMIT ?2)",
                params![pending.user_id, keep.saturating_sub(1)],
            )
            .map_err(translate)?;
            conn.execute(
                "INSERT INTO passkey_registrations (passkey_id, user_id, rp_id, state, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    pending.passkey_id,
                    pending.user_id,
                    pending.rp_id,
                    pending.state.as_bytes(),
                    pending.expires_at.0
                ],
            )
            .map_err(translate)?;
            Ok(())
        })
        .await
    }

    async fn take_passkey_registration(
        &self,
        user_id: &str,
        passkey_id: &str,
    ) -> StoreResult<Option<PendingRegistration>> {
        let (user_id, passkey_id) = (user_id.to_owned(), passkey_id.to_owned());
        self.write(move |conn| {
            conn.query_row(
                "DELETE FROM passkey_registrations WHERE passkey_id = ?1 AND user_id = ?2 \
                 RETURNING passkey_id, user_id, rp_id, state, expires_at",
                params![passkey_id, user_id],
                |r| {
                    Ok(PendingRegistration {
                        passkey_id: r.get(0)?,
                        user_id: r.get(1)?,
                        rp_id: r.get(2)?,
                        state: SealedSecret::from_bytes(r.get(3)?),
                        expires_at: Timestamp(r.get(4)?),
                    })
                },
            )
            .optional()
            .map_err(translate)
        })
        .await
    }

    async fn insert_passkey(&self, passkey: &PasskeyRecord) -> StoreResult<()> {
        let p = passkey.clone();
        self.write(move |conn| {
            conn.execute(
                &format!("INSERT INTO passkeys ({PASSKEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![p.credential_id, p.user_id, p.id, p.name, p.rp_id, p.credential, p.counter, p.created_at.0],
            )
            .map_err(translate)?;
            Ok(())
        })
        .await
    }

    async fn passkeys_of_user(&self, user_id: &str) -> StoreResult<Vec<PasskeyRecord>> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = ?1 ORDER BY created_at, passkey_id"
                ))
                .map_err(translate)?;
            stmt.query_map([user_id], passkey_from_row).and_then(Iterator::collect).map_err(translate)
        })
        .await
    }

    async fn passkey_by_credential(&self, credential_id: &str) -> StoreResult<Option<PasskeyRecord>> {
        let credential_id = credential_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = ?1"))
                .and_then(|mut s| s.query_row([credential_id], passkey_from_row).optional())
                .map_err(translate)
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
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE passkeys SET counter = ?3, credential = ?4 WHERE credential_id = ?1 AND counter = ?2",
                    params![credential_id, seen_counter, counter, credential],
                )
                .map_err(translate)?;
            Ok(n == 1)
        })
        .await
    }

    async fn remove_passkey(&self, user_id: &str, passkey_id: &str) -> StoreResult<bool> {
        let (user_id, passkey_id) = (user_id.to_owned(), passkey_id.to_owned());
        self.write(move |conn| {
            let n = conn
                .execute("DELETE FROM passkeys WHERE user_id = ?1 AND passkey_id = ?2", params![user_id, passkey_id])
                .map_err(translate)?;
            Ok(n == 1)
        })
        .await
    }
}

//! The shared store: PostgreSQL (or a compatible distributed engine), so that several sessiond
//! processes on one database behave as one service.
//!
//! Nothing is cached in the process: every call reads the database, so a write through one process
//! is seen by the next call through any other. Each call runs on one pooled connection under one
//! deadline; serialization failures and deadlocks are retried a few times and then answered
//! `Conflict`; a database that cannot be reached in time answers `Unavailable`, and the pool
//! reconnects by itself once it is back. The SQL keeps to plain tables, indexes, single statements
//! and short transactions, which CockroachDB and YugabyteDB run as PostgreSQL does.

use std::{str::FromStr, time::Duration};

use anyhow::Context as _;
use async_trait::async_trait;
use rand::Rng as _;
use sqlx::{
    Connection as _, PgConnection, Postgres, QueryBuilder, Row as _,
    postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow},
    query::Query,
};

use self::{
    call::Db,
    error::{Failure, translate},
    migrate::migrate,
};
use super::{
    SessionFilter, Store, StoreError, StoreResult, Termination,
    codec::{comparison, decode_state_into, encode_changes, encode_state, history_entry, lockout_columns, otp_columns},
};
use crate::domain::{
    Permissions, Timestamp,
    keyring::SealedSecret,
    otp::OtpMethod,
    port::{AuthorizedTermination, SessionBuild, TokenRow},
    secrets::{ClearTotpSecret, KeyCheck},
    session::{HistoryEntry, Session, SessionQuery, TimeComparison, UserCheck},
    token::SecretHash,
    user::{ApiTokenRecord, Claim, LockoutCounter, TokenHolder, TotpEnrolment, User, UserState},
};

mod batch;
mod call;
mod connect;
mod error;
mod fused;
mod migrate;
mod passkeys;
mod rows;
mod secrets;
#[cfg(test)]
mod tests;

use connect::*;
use fused::Fused;
use rows::*;

/// The whole budget of one store call, waiting for a connection and retries included; past it the
/// call answers `Unavailable`. Below 1 s, so that a client learns of an outage (a partition drops
/// packets and closes nothing) within a second of asking, whatever the call was waiting on.
const CALL_TIMEOUT: Duration = Duration::from_millis(900);
/// How long the pool waits for a connection outside `run` (migrations); inside it `CALL_TIMEOUT`
/// bounds the wait first. sqlx's default of 30 s turned a short outage into calls hanging long
/// past any client's deadline.
const ACQUIRE_TIMEOUT: Duration = CALL_TIMEOUT;
/// The server's cap on one statement: below `CALL_TIMEOUT`, so the server usually gives up (and
/// releases its locks) before the client does; the hot statements take milliseconds.
const STATEMENT_TIMEOUT: Duration = Duration::from_millis(700);
/// A transaction left open by a client that vanished is rolled back by the server after this.
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections per process; the database's `max_connections` must cover every process's pool.
const MAX_CONNECTIONS: u32 = 16;
/// Runs after a serialization failure or deadlock before the call answers `Conflict`.
const MAX_RETRIES: u32 = 5;
/// ListSessions pages of at most this many sessions are decoded where they were read.
const DECODE_INLINE_ROWS: usize = 100;
/// Connection attempts at start, each bounded, before `open` fails.
const STARTUP_ATTEMPTS: u32 = 3;
const STARTUP_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const STARTUP_RETRY_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct PostgresStore {
    db: Db,
    /// The fused calls' shared statements.
    fused: Fused,
}

impl PostgresStore {
    /// Connects (a few bounded attempts), migrates, and keeps a pool for the calls.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options = connect_options(url)?;
        let target = describe(&options);
        wait_for_database(&options, &target).await?;
        // Lazy: connections open on demand, so a store outlives an outage and refills by itself.
        // No ping before handing a connection out (a round trip on every call): a connection the
        // server has terminated meanwhile fails its first statement with 57P01, and `run` then
        // runs the call again on a fresh one.
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_lazy_with(options);
        migrate(&pool).await.with_context(|| format!("cannot migrate the PostgreSQL database {target}"))?;
        Ok(Self::over(pool))
    }

    /// A store over `pool` (migrated already), its write lanes started on the current runtime.
    fn over(pool: PgPool) -> Self {
        let db = Db { pool, waiting: Default::default() };
        let fused = Fused::start(&db);
        Self { db, fused }
    }
}

impl PostgresStore {
    /// One statement on one user row (`$1` the id, `$2` the optional text value); `false` when
    /// no row has the id.
    async fn change_user(&self, id: &str, sql: &str, value: Option<String>) -> StoreResult<bool> {
        let (id, sql) = (id.to_owned(), sql.to_owned());
        self.run(move |conn| {
            let (id, sql, value) = (id.clone(), sql.clone(), value.clone());
            Box::pin(async move {
                let mut query = sqlx::query(&sql).bind(id);
                if let Some(value) = value {
                    query = query.bind(value);
                }
                Ok(query.execute(conn).await?.rows_affected() == 1)
            })
        })
        .await
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        self.run(|conn| Box::pin(async move { Ok(sqlx::query("SELECT 1").execute(conn).await.map(drop)?) })).await
    }

    fn stats(&self) -> crate::domain::port::StoreStats {
        pool_stats(&self.db.pool, &self.db.waiting)
    }

    async fn insert_user(&self, user: &User) -> StoreResult<()> {
        let user = user.clone();
        self.run(move |conn| {
            let user = user.clone();
            Box::pin(async move {
                let query = sqlx::query(
                    "INSERT INTO users (id, login_name, display_name, org_id, state, password_hash, failed_attempts, \
                     locked, totp_sealed, totp_last_step, created_at, otp_failed_attempts, otp_locked, email, phone, \
                     otp_email, otp_sms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                )
                .bind(user.id.clone());
                let result = bind_user_fields(query, &user)
                    .bind(user.created_at.0)
                    .bind(user.otp_failed_attempts)
                    .bind(user.otp_locked)
                    .bind(user.email.clone())
                    .bind(user.phone.clone())
                    .bind(user.otp_email)
                    .bind(user.otp_sms)
                    .execute(conn)
                    .await;
                match result.map_err(Failure::from) {
                    Err(Failure::Store(StoreError::AlreadyExists(_))) => Err(Failure::Store(
                        StoreError::AlreadyExists(format!("login name `{}` is taken", user.login_name)),
                    )),
                    other => other.map(drop),
                }
            })
        })
        .await
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        let id = id.to_owned();
        self.run(move |conn| {
            let id = id.clone();
            Box::pin(async move {
                let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(conn)
                    .await?;
                Ok(row.map(|r| user_from_row(&r, 0)).transpose()?)
            })
        })
        .await
    }

    async fn user_by_login_name(&self, login_name: &str) -> StoreResult<Option<User>> {
        let login_name = login_name.to_owned();
        self.run(move |conn| {
            let login_name = login_name.clone();
            Box::pin(async move {
                let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE login_name = $1"))
                    .bind(login_name)
                    .fetch_optional(conn)
                    .await?;
                Ok(row.map(|r| user_from_row(&r, 0)).transpose()?)
            })
        })
        .await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.run(|conn| {
            Box::pin(async move {
                // Byte order, as SQLite sorts, whatever the database's collation.
                let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY login_name COLLATE \"C\""))
                    .fetch_all(conn)
                    .await?;
                Ok(rows.iter().map(|r| user_from_row(r, 0)).collect::<Result<_, _>>()?)
            })
        })
        .await
    }

    async fn set_user_state(&self, id: &str, state: UserState) -> StoreResult<bool> {
        self.change_user(id, "UPDATE users SET state = $2 WHERE id = $1", Some(state.as_str().to_owned())).await
    }

    async fn set_password_hash(&self, id: &str, hash: &str) -> StoreResult<bool> {
        let sql = "UPDATE users SET password_hash = $2, failed_attempts = 0, locked = FALSE WHERE id = $1";
        self.change_user(id, sql, Some(hash.to_owned())).await
    }

    async fn unlock_user(&self, id: &str) -> StoreResult<bool> {
        let sql = "UPDATE users SET failed_attempts = 0, locked = FALSE, otp_failed_attempts = 0, otp_locked = FALSE \
                   WHERE id = $1";
        self.change_user(id, sql, None).await
    }

    async fn set_totp(&self, id: &str, enrolment: &TotpEnrolment) -> StoreResult<bool> {
        let (id, enrolment) = (id.to_owned(), enrolment.clone());
        self.run(move |conn| {
            let (id, enrolment) = (id.clone(), enrolment.clone());
            Box::pin(async move {
                let changed = sqlx::query(
                    "UPDATE users SET totp_sealed = $2, totp_secret = NULL, totp_last_step = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(enrolment.sealed.as_bytes().to_vec())
                .bind(enrolment.last_used_step)
                .execute(conn)
                .await?
                .rows_affected();
                Ok(changed == 1)
            })
        })
        .await
    }

    async fn set_contact(&self, id: &str, method: OtpMethod, value: Option<&str>) -> StoreResult<bool> {
        let (contact, enabled) = otp_columns(method);
        let sql =
            format!("UPDATE users SET {contact} = $2, {enabled} = ({enabled} AND $2::TEXT IS NOT NULL) WHERE id = $1");
        let (id, value) = (id.to_owned(), value.map(str::to_owned));
        self.run(move |conn| {
            let (id, value, sql) = (id.clone(), value.clone(), sql.clone());
            Box::pin(
                async move { Ok(sqlx::query(&sql).bind(id).bind(value).execute(conn).await?.rows_affected() == 1) },
            )
        })
        .await
    }

    async fn enable_otp(&self, id: &str, method: OtpMethod) -> StoreResult<bool> {
        let (contact, enabled) = otp_columns(method);
        let sql = format!("UPDATE users SET {enabled} = TRUE WHERE id = $1 AND {contact} IS NOT NULL");
        self.change_user(id, &sql, None).await
    }

    async fn claim_attempt(&self, user_id: &str, counter: LockoutCounter, max: i32) -> StoreResult<Option<Claim>> {
        let user_id = user_id.to_owned();
        let (count, lock) = lockout_columns(counter);
        // One statement. The UPDATE's condition is re-checked on the locked row (READ COMMITTED
        // re-evaluates it after waiting for a concurrent claim), so claims count one by one across
        // processes. A refusal's count is read again by a second statement: the outer SELECT
        // sees the snapshot from before a concurrent claim it waited for, one short.
        let current = format!("SELECT {count} FROM users WHERE id = $1");
        let sql = format!(
            "WITH claimed AS (UPDATE users SET {count} = {count} + 1, {lock} = ({count} + 1 >= $2) \
             WHERE id = $1 AND NOT locked AND NOT otp_locked AND {count} < $2 RETURNING {count}) \
             SELECT (SELECT {count} FROM claimed), {count} FROM users WHERE id = $1"
        );
        self.run(move |conn| {
            let (user_id, sql, current) = (user_id.clone(), sql.clone(), current.clone());
            Box::pin(async move {
                let row = sqlx::query(&sql).bind(user_id.clone()).bind(max).fetch_optional(&mut *conn).await?;
                let Some(row) = row else { return Ok(None) };
                if let Some(attempt) = row.try_get::<Option<i32>, _>(0)? {
                    return Ok(Some(Claim::Admitted(attempt)));
                }
                let now: Option<i32> = sqlx::query_scalar(&current).bind(user_id).fetch_optional(&mut *conn).await?;
                Ok(now.map(Claim::Refused))
            })
        })
        .await
    }

    async fn clear_attempts(&self, user_id: &str, counter: LockoutCounter) -> StoreResult<()> {
        let (count, lock) = lockout_columns(counter);
        let sql = format!("UPDATE users SET {count} = 0, {lock} = FALSE WHERE id = $1");
        self.change_user(user_id, &sql, None).await.map(drop)
    }

    async fn consume_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        let user_id = user_id.to_owned();
        self.run(move |conn| {
            let user_id = user_id.clone();
            Box::pin(async move {
                // The condition is re-checked on the locked row: of two racing uses of one code,
                // exactly one changes it.
                let changed = sqlx::query(
                    "UPDATE users SET totp_last_step = $2 \
                     WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
                )
                .bind(user_id)
                .bind(step)
                .execute(conn)
                .await?
                .rows_affected();
                Ok(changed == 1)
            })
        })
        .await
    }

    async fn key_checks(&self) -> StoreResult<Vec<KeyCheck>> {
        self.select_key_checks().await
    }

    async fn insert_key_check(&self, check: &KeyCheck) -> StoreResult<()> {
        self.add_key_check(check).await
    }

    async fn remove_key_check(&self, key_id: &str) -> StoreResult<bool> {
        self.delete_key_check(key_id).await
    }

    async fn clear_totp_secrets(&self) -> StoreResult<Vec<ClearTotpSecret>> {
        self.select_clear_totp_secrets().await
    }

    async fn seal_clear_totp_secret(&self, user_id: &str, clear: &[u8], sealed: &SealedSecret) -> StoreResult<bool> {
        self.replace_clear_totp_secret(user_id, clear, sealed).await
    }

    async fn reseal_totp_secret(&self, user_id: &str, old: &SealedSecret, new: &SealedSecret) -> StoreResult<bool> {
        self.replace_sealed_totp_secret(user_id, old, new).await
    }

    async fn insert_api_token(&self, token: &ApiTokenRecord) -> StoreResult<()> {
        let token = token.clone();
        self.run(move |conn| {
            let t = token.clone();
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO api_tokens (id, user_id, secret_hash, permissions, expires_at, revoked_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(t.id)
                .bind(t.user_id)
                .bind(t.secret_hash.0.to_vec())
                .bind(i16::from(t.permissions.bits()))
                .bind(t.expires_at.map(|x| x.0))
                .bind(t.revoked_at.map(|x| x.0))
                .bind(t.created_at.0)
                .execute(conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn api_token(&self, id: &str) -> StoreResult<Option<(ApiTokenRecord, TokenHolder)>> {
        let id = id.to_owned();
        self.run(move |conn| {
            let id = id.clone();
            Box::pin(async move {
                let row = sqlx::query(TOKEN_WITH_HOLDER).bind(id).fetch_optional(conn).await?;
                Ok(row.map(|r| Ok::<_, sqlx::Error>((token_from_row(&r)?, holder_from_row(&r, 7)?))).transpose()?)
            })
        })
        .await
    }

    async fn list_api_tokens(&self, user_id: Option<&str>) -> StoreResult<Vec<ApiTokenRecord>> {
        let user_id = user_id.map(str::to_owned);
        self.run(move |conn| {
            let user_id = user_id.clone();
            Box::pin(async move {
                let rows = sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens t WHERE $1::TEXT IS NULL OR t.user_id = $1 \
                     ORDER BY t.created_at"
                ))
                .bind(user_id)
                .fetch_all(conn)
                .await?;
                Ok(rows.iter().map(token_from_row).collect::<Result<_, _>>()?)
            })
        })
        .await
    }

    async fn revoke_api_token(&self, id: &str, at: Timestamp) -> StoreResult<bool> {
        let id = id.to_owned();
        self.run(move |conn| {
            let id = id.clone();
            Box::pin(async move {
                let changed = sqlx::query("UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
                    .bind(id)
                    .bind(at.0)
                    .execute(conn)
                    .await?
                    .rows_affected();
                Ok(changed == 1)
            })
        })
        .await
    }

    async fn session(&self, id: &str) -> StoreResult<Option<Session>> {
        let id = id.to_owned();
        self.run(move |conn| {
            let id = id.clone();
            Box::pin(async move {
                let row = sqlx::query(SESSION_BY_ID).bind(id).fetch_optional(conn).await?;
                row.map(|r| session_from_row(&r)).transpose()
            })
        })
        .await
    }

    async fn create_session(&self, session: &Session, entry: &HistoryEntry) -> StoreResult<()> {
        let (session, entry) = (session.clone(), entry.clone());
        self.run(move |conn| {
            let (session, entry) = (session.clone(), entry.clone());
            Box::pin(async move {
                let mut tx = conn.begin().await?;
                let insert = sqlx::query(
                    "INSERT INTO sessions (id, resource_owner, creator_id, user_id, fingerprint_id, creation_date, \
                     change_date, sequence, token_hash, expiration_date, terminated_at, state) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                );
                bind_session(insert, &session).execute(&mut *tx).await?;
                insert_history(&mut tx, &entry).await?;
                tx.commit().await?;
                Ok(())
            })
        })
        .await
    }

    async fn update_session(&self, current: &Session, next: &Session, entry: &HistoryEntry) -> StoreResult<()> {
        let (session, entry) = (next.clone(), entry.clone());
        let expected = i64::try_from(current.sequence).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let (session, entry) = (session.clone(), entry.clone());
            Box::pin(async move {
                let mut tx = conn.begin().await?;
                // Optimistic concurrency: the row changes only if nobody moved it since it was read.
                // A concurrent writer holding the row makes this wait, then see its new sequence.
                let update = sqlx::query(
                    "UPDATE sessions SET resource_owner = $2, creator_id = $3, user_id = $4, fingerprint_id = $5, \
                     creation_date = $6, change_date = $7, sequence = $8, token_hash = $9, expiration_date = $10, \
                     terminated_at = $11, state = $12 WHERE id = $1 AND sequence = $13",
                );
                let changed = bind_session(update, &session).bind(expected).execute(&mut *tx).await?.rows_affected();
                if changed != 1 {
                    // Dropping `tx` rolls it back.
                    return Err(Failure::Store(StoreError::Conflict));
                }
                insert_history(&mut tx, &entry).await?;
                tx.commit().await?;
                Ok(())
            })
        })
        .await
    }

    async fn token_and_session(&self, token_id: &str, id: &str) -> StoreResult<(TokenRow, Option<Session>)> {
        self.read_token_and_session(token_id, id).await
    }

    async fn terminate_session_as(
        &self,
        token_id: &str,
        id: &str,
        at: Timestamp,
        decide: AuthorizedTermination,
    ) -> StoreResult<Termination> {
        self.terminate_authorized(token_id, id, at, decide).await
    }

    async fn create_session_as(
        &self,
        token_id: &str,
        user: Option<&UserCheck>,
        at: Timestamp,
        build: SessionBuild,
    ) -> StoreResult<Result<Session, crate::domain::Error>> {
        self.create_built(token_id, user, at, build).await
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> StoreResult<(u64, Vec<Session>)> {
        let filter = filter.clone();
        self.run(move |conn| {
            let filter = filter.clone();
            Box::pin(async move {
                let mut count = QueryBuilder::new("SELECT COUNT(*) FROM sessions");
                push_filter(&mut count, &filter);
                let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;

                let order = if filter.ascending { "ASC" } else { "DESC" };
                let mut page = QueryBuilder::new(format!("SELECT {SESSION_COLUMNS} FROM sessions"));
                push_filter(&mut page, &filter);
                // Ties on the creation date break by id in byte order, as SQLite sorts.
                page.push(format_args!(" ORDER BY creation_date {order}, id COLLATE \"C\" {order} LIMIT "))
                    .push_bind(i64::from(filter.limit))
                    .push(" OFFSET ")
                    .push_bind(i64::try_from(filter.offset).unwrap_or(i64::MAX));
                let rows = page.build().fetch_all(&mut *conn).await?;
                let inline = rows.len() <= DECODE_INLINE_ROWS;
                let decode = move || rows.iter().map(session_from_row).collect::<Result<Vec<_>, _>>();
                // A page of many sessions (up to tens of megabytes) is decoded on the blocking
                // pool, not on the runtime thread other calls share.
                let sessions = if inline {
                    decode()?
                } else {
                    tokio::task::spawn_blocking(decode)
                        .await
                        .map_err(|e| StoreError::Internal(format!("decoding a page failed: {e}")))??
                };
                Ok((u64::try_from(total).unwrap_or_default(), sessions))
            })
        })
        .await
    }

    async fn session_history(&self, id: &str) -> StoreResult<Vec<HistoryEntry>> {
        let id = id.to_owned();
        self.run(move |conn| {
            let id = id.clone();
            Box::pin(async move {
                let rows: Vec<(String, i64, i64, String, String)> = sqlx::query_as(
                    "SELECT session_id, sequence, at, actor, changes FROM session_history \
                     WHERE session_id = $1 ORDER BY sequence",
                )
                .bind(id)
                .fetch_all(conn)
                .await?;
                Ok(rows.into_iter().map(history_entry).collect::<StoreResult<_>>()?)
            })
        })
        .await
    }

    async fn sweep(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        self.run(move |conn| {
            Box::pin(async move {
                // Each kind of end through its own index, the earliest first.
                let removed = sqlx::query(
                    "DELETE FROM sessions WHERE id IN \
                     (SELECT id FROM (SELECT id FROM sessions WHERE terminated_at < $1 \
                                      ORDER BY terminated_at LIMIT $2) AS terminated \
                      UNION SELECT id FROM (SELECT id FROM sessions WHERE expiration_date < $1 \
                                            ORDER BY expiration_date LIMIT $2) AS expired)",
                )
                .bind(before.0)
                .bind(i64::from(limit))
                .execute(conn)
                .await?
                .rows_affected();
                Ok(removed)
            })
        })
        .await
    }

    async fn sweep_history(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        self.run(move |conn| {
            Box::pin(async move {
                let removed = sqlx::query(
                    "DELETE FROM session_history WHERE (at, session_id, sequence) IN \
                     (SELECT at, session_id, sequence FROM session_history WHERE at < $1 \
                     ORDER BY at, session_id, sequence LIMIT $2)",
                )
                .bind(before.0)
                .bind(i64::from(limit))
                .execute(conn)
                .await?
                .rows_affected();
                Ok(removed)
            })
        })
        .await
    }

    async fn close(&self) {
        self.db.pool.close().await;
    }
}

//! The embedded default store: one SQLite database file in WAL mode.
//!
//! One thread owns the database connection and runs every job, reads and writes alike (but for
//! the large reads, which a reader connection runs; see `reader`): it
//! commits whatever has queued up in one transaction (group commit), each write inside its own
//! savepoint so that one failing job does not undo the others, and answers each job only after
//! its transaction committed. One connection means one page cache that stays warm: in WAL mode a
//! connection drops its whole cache whenever another one has committed, so separate reader
//! connections re-read every B-tree page from the file on every call under write load (measured:
//! that was half of a DeleteSession's CPU; see BENCHMARKS.md). Checkpoints run on a thread of their
//! own, and what they copy is flushed to the disk by another (`flush`).

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter, types::Value};
use tokio::sync::{mpsc, oneshot};

use super::{
    Durability, SessionFilter, Store, StoreError, StoreResult, Termination, TerminationCheck,
    codec::{comparison, decode_state_into, encode_state, lockout_columns, otp_columns},
};
use crate::domain::port::{AuthorizedTermination, SessionBuild, TokenRow};
use crate::domain::{
    Permissions, Timestamp,
    keyring::SealedSecret,
    otp::OtpMethod,
    secrets::{ClearTotpSecret, KeyCheck},
    session::{HistoryEntry, Session, SessionQuery, TimeComparison, UserCheck},
    token::SecretHash,
    user::{ApiTokenRecord, Claim, LockoutCounter, TokenHolder, TotpEnrolment, User, UserState},
};

mod auth_rows;
mod flush;
mod fused;
mod history;
mod passkeys;
mod reader;
mod rows;
mod secrets;
mod writer;

use fused::*;
use reader::Reader;
use rows::*;
use writer::*;

/// Migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_lockouts_history_retention.sql"),
    include_str!("../../migrations/sqlite/0003_sealed_secrets.sql"),
    include_str!("../../migrations/sqlite/0004_otp_email_sms.sql"),
    include_str!("../../migrations/sqlite/0005_passkeys.sql"),
    include_str!("../../migrations/sqlite/0006_history_append.sql"),
    include_str!("../../migrations/sqlite/0007_history_chain.sql"),
    include_str!("../../migrations/sqlite/0008_sessions_alive_until.sql"),
];

type Finish = Box<dyn FnOnce(Option<StoreError>) + Send>;
/// A job runs on the connection, or learns why it cannot (the transaction did not begin).
type Job = Box<dyn FnOnce(Result<&Connection, StoreError>) -> Ran + Send>;

/// What a job left behind: its answer, given once the batch's fate is known, and whether it
/// failed after changing rows with no savepoint to undo them (`torn`: then the whole batch rolls
/// back, see `SqliteStore::write_direct`).
struct Ran {
    finish: Finish,
    torn: bool,
}

#[derive(Debug)]
pub struct SqliteStore {
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    reader: Reader,
    wal: WalStats,
    /// Token and user rows the fused calls read, remembered while provably current (`auth_rows`).
    auth: Arc<auth_rows::AuthRows>,
}

impl SqliteStore {
    /// Opens (creating if needed, readable by its owner only) and migrates the database at `path`.
    pub async fn open(path: &str, durability: Durability) -> anyhow::Result<Self> {
        let path = PathBuf::from(path);
        super::files::owner_only_database(&path)?;
        let writer_path = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_writer(&writer_path, durability)).await??;
        let auth = Arc::new(auth_rows::AuthRows::watching(&conn));
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let (checkpoint_path, wal) = (path.clone(), WalStats::new(&path));
        let checkpoints = Arc::clone(&wal.checkpoints);
        let turn = Arc::new(WalTurn::default());
        let writer_turn = Arc::clone(&turn);
        let writer_auth = Arc::clone(&auth);
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, checkpoint_path, checkpoints, writer_turn, &writer_auth))?;
        let reader = Reader::open(&path, turn)?;
        Ok(Self { writer: Mutex::new(Some(tx)), writer_thread: Mutex::new(Some(thread)), reader, wal, auth })
    }

    /// Runs a read on the database thread; answers once the transaction it ran in committed.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.submit(f, false).await
    }

    /// Runs a write on the database thread inside a savepoint, so that its failure undoes its
    /// own changes and no other job's; answers once it committed.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.submit(f, true).await
    }

    /// Runs a write on the database thread without a savepoint, for a job that fails only before
    /// its first change (a refusal, a taken id, a lost guard) or with an error that fails every
    /// job anyway (I/O, a full disk). Should it fail after a change, the whole batch rolls back
    /// and every job in it answers UNAVAILABLE: nothing half-written is ever committed. The
    /// savepoint costs a copy of every page the job changes (~50k instructions per
    /// CreateSession, measured), which the calls that run most need not pay.
    async fn write_direct<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.submit(f, false).await
    }

    async fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
        savepoint: bool,
    ) -> StoreResult<T> {
        let sender = self.writer.lock().expect("writer handle poisoned").clone().ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let mut torn = false;
            let result = match conn {
                Ok(conn) if savepoint => in_savepoint(conn, f),
                Ok(conn) => {
                    let before = conn.total_changes();
                    let result = f(conn);
                    torn = result.is_err() && conn.total_changes() != before;
                    result
                }
                Err(e) => Err(e),
            };
            let finish: Finish = Box::new(move |commit_error| {
                let _ = reply.send(match commit_error {
                    Some(e) => Err(e),
                    None => result,
                });
            });
            Ran { finish, torn }
        });
        sender.send(job).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// One statement on one user row (`?1` the id, then `values`); `false` when no row has the id.
    async fn change_user(&self, id: &str, sql: &str, values: Vec<Value>) -> StoreResult<bool> {
        let sql = sql.to_owned();
        let values: Vec<Value> = std::iter::once(Value::Text(id.to_owned())).chain(values).collect();
        // One statement: SQLite undoes it whole if it fails, so no savepoint is needed.
        self.write_direct(move |conn| {
            let n =
                conn.prepare_cached(&sql).and_then(|mut s| s.execute(params_from_iter(values))).map_err(translate)?;
            Ok(n == 1)
        })
        .await
    }

    /// Stops the reader and then the writer after their queued jobs, and waits for them: the
    /// file is closed cleanly.
    async fn shutdown(&self) {
        self.reader.shutdown().await;
        drop(self.writer.lock().expect("writer handle poisoned").take());
        let thread = self.writer_thread.lock().expect("writer thread poisoned").take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(translate)).await
    }

    fn stats(&self) -> crate::domain::port::StoreStats {
        self.wal.read()
    }

    async fn insert_user(&self, user: &User) -> StoreResult<()> {
        let user = user.clone();
        self.write(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO users ({USER_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
                ),
                params![
                    user.id,
                    user.login_name,
                    user.display_name,
                    user.org_id,
                    user.state.as_str(),
                    user.password_hash,
                    user.failed_attempts,
                    user.locked,
                    user.totp.as_ref().map(|t| t.sealed.as_bytes().to_vec()),
                    user.totp.as_ref().and_then(|t| t.last_used_step),
                    user.created_at.0,
                    user.otp_failed_attempts,
                    user.otp_locked,
                    user.email,
                    user.phone,
                    user.otp_email,
                    user.otp_sms
                ],
            )
            .map_err(|e| match translate(e) {
                StoreError::AlreadyExists(_) => {
                    StoreError::AlreadyExists(format!("login name `{}` is taken", user.login_name))
                }
                other => other,
            })?;
            Ok(())
        })
        .await
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))
                .and_then(|mut s| s.query_row([id], |r| user_from_row(r, 0)).optional())
                .map_err(translate)
        })
        .await
    }

    async fn user_by_login_name(&self, login_name: &str) -> StoreResult<Option<User>> {
        let login_name = login_name.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE login_name = ?1"))
                .and_then(|mut s| s.query_row([login_name], |r| user_from_row(r, 0)).optional())
                .map_err(translate)
        })
        .await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY login_name")).map_err(translate)?;
            stmt.query_map([], |r| user_from_row(r, 0)).and_then(Iterator::collect).map_err(translate)
        })
        .await
    }

    async fn set_user_state(&self, id: &str, state: UserState) -> StoreResult<bool> {
        self.change_user(id, "UPDATE users SET state = ?2 WHERE id = ?1", vec![Value::Text(state.as_str().into())])
            .await
    }

    async fn set_password_hash(&self, id: &str, hash: &str) -> StoreResult<bool> {
        let sql = "UPDATE users SET password_hash = ?2, failed_attempts = 0, locked = 0 WHERE id = ?1";
        self.change_user(id, sql, vec![Value::Text(hash.into())]).await
    }

    async fn unlock_user(&self, id: &str) -> StoreResult<bool> {
        let sql =
            "UPDATE users SET failed_attempts = 0, locked = 0, otp_failed_attempts = 0, otp_locked = 0 WHERE id = ?1";
        self.change_user(id, sql, Vec::new()).await
    }

    async fn set_totp(&self, id: &str, enrolment: &TotpEnrolment) -> StoreResult<bool> {
        let (id, enrolment) = (id.to_owned(), enrolment.clone());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE users SET totp_sealed = ?2, totp_secret = NULL, totp_last_step = ?3 WHERE id = ?1",
                    params![id, enrolment.sealed.as_bytes(), enrolment.last_used_step],
                )
                .map_err(translate)?;
            Ok(n == 1)
        })
        .await
    }

    async fn set_contact(&self, id: &str, method: OtpMethod, value: Option<&str>) -> StoreResult<bool> {
        let (contact, enabled) = otp_columns(method);
        let sql = format!("UPDATE users SET {contact} = ?2, {enabled} = ({enabled} AND ?2 IS NOT NULL) WHERE id = ?1");
        self.change_user(id, &sql, vec![value.map_or(Value::Null, |v| Value::Text(v.to_owned()))]).await
    }

    async fn enable_otp(&self, id: &str, method: OtpMethod) -> StoreResult<bool> {
        let (contact, enabled) = otp_columns(method);
        let sql = format!("UPDATE users SET {enabled} = 1 WHERE id = ?1 AND {contact} IS NOT NULL");
        self.change_user(id, &sql, Vec::new()).await
    }

    async fn claim_attempt(&self, user_id: &str, counter: LockoutCounter, max: i32) -> StoreResult<Option<Claim>> {
        let user_id = user_id.to_owned();
        let (count, lock) = lockout_columns(counter);
        let claim = format!(
            "UPDATE users SET {count} = {count} + 1, {lock} = ({count} + 1 >= ?2) \
             WHERE id = ?1 AND NOT locked AND NOT otp_locked AND {count} < ?2 RETURNING {count}"
        );
        let current = format!("SELECT {count} FROM users WHERE id = ?1");
        // One job: the conditional write decides; the read only reports a refusal's count.
        self.write(move |conn| {
            let claimed: Option<i32> = conn
                .prepare_cached(&claim)
                .and_then(|mut s| s.query_row(params![user_id, max], |r| r.get(0)).optional())
                .map_err(translate)?;
            if let Some(attempt) = claimed {
                return Ok(Some(Claim::Admitted(attempt)));
            }
            let refused: Option<i32> = conn
                .prepare_cached(&current)
                .and_then(|mut s| s.query_row([&user_id], |r| r.get(0)).optional())
                .map_err(translate)?;
            Ok(refused.map(Claim::Refused))
        })
        .await
    }

    async fn clear_attempts(&self, user_id: &str, counter: LockoutCounter) -> StoreResult<()> {
        let (count, lock) = lockout_columns(counter);
        let sql = format!("UPDATE users SET {count} = 0, {lock} = 0 WHERE id = ?1");
        self.change_user(user_id, &sql, Vec::new()).await.map(drop)
    }

    async fn consume_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        let user_id = user_id.to_owned();
        self.write(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE users SET totp_last_step = ?2 WHERE id = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
                    params![user_id, step],
                )
                .map_err(translate)?;
            Ok(changed == 1)
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
        let t = token.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO api_tokens (id, user_id, secret_hash, permissions, expires_at, revoked_at, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    t.id,
                    t.user_id,
                    t.secret_hash.0.to_vec(),
                    t.permissions.bits(),
                    t.expires_at.map(|x| x.0),
                    t.revoked_at.map(|x| x.0),
                    t.created_at.0
                ],
            )
            .map_err(translate)?;
            Ok(())
        })
        .await
    }

    async fn api_token(&self, id: &str) -> StoreResult<Option<(ApiTokenRecord, TokenHolder)>> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(TOKEN_WITH_HOLDER)
                .and_then(|mut s| s.query_row([id], |r| Ok((token_from_row(r)?, holder_from_row(r, 7)?))).optional())
                .map_err(translate)
        })
        .await
    }

    async fn list_api_tokens(&self, user_id: Option<&str>) -> StoreResult<Vec<ApiTokenRecord>> {
        let user_id = user_id.map(str::to_owned);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens t WHERE ?1 IS NULL OR t.user_id = ?1 ORDER BY t.created_at"
                ))
                .map_err(translate)?;
            stmt.query_map([user_id], token_from_row).and_then(Iterator::collect).map_err(translate)
        })
        .await
    }

    async fn revoke_api_token(&self, id: &str, at: Timestamp) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute("UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1", params![id, at.0])
                .map_err(translate)?;
            Ok(n == 1)
        })
        .await
    }

    async fn session(&self, id: &str) -> StoreResult<Option<Session>> {
        let id = id.to_owned();
        self.read(move |conn| read_session(conn, &id)).await
    }

    /// One job on the database thread: read, check, write. Nothing runs between the read and the
    /// write, so this never conflicts.
    async fn terminate_session(
        &self,
        id: &str,
        at: Timestamp,
        actor: &str,
        check: TerminationCheck,
    ) -> StoreResult<Termination> {
        let (id, actor) = (id.to_owned(), actor.to_owned());
        self.write_direct(move |conn| terminate_in(conn, &id, at, &actor, check)).await
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

    async fn create_session(&self, session: &Session, entry: &HistoryEntry) -> StoreResult<()> {
        // Encoded here, off the database thread.
        let (values, entry) = (session_params(session), entry.clone());
        self.write_direct(move |conn| insert_session(conn, values, &entry)).await
    }

    async fn update_session(&self, current: &Session, next: &Session, entry: &HistoryEntry) -> StoreResult<()> {
        // SQLite rewrites an index entry whenever its column is in the SET list, changed or not:
        // set only what differs from `current`, so that an update dirties as few pages (each a
        // 4 KiB WAL frame) as it can. `current` is what the row held at `current.sequence`, and
        // the `WHERE sequence` guard makes the update miss if the row has moved since.
        let expected = Value::Integer(i64::try_from(current.sequence).unwrap_or(i64::MAX));
        let mut columns: Vec<(&str, Value)> = vec![
            ("change_date", Value::Integer(next.change_date.0)),
            ("sequence", Value::Integer(i64::try_from(next.sequence).unwrap_or(i64::MAX))),
        ];
        if next.token_hash != current.token_hash {
            columns.push(("token_hash", Value::Blob(next.token_hash.0.to_vec())));
        }
        if (&next.factors, &next.metadata, &next.user_agent, &next.otp_challenges, &next.passkey_challenge)
            != (
                &current.factors,
                &current.metadata,
                &current.user_agent,
                &current.otp_challenges,
                &current.passkey_challenge,
            )
        {
            columns.push(("state", Value::Text(encode_state(next))));
        }
        if next.user_agent.fingerprint_id != current.user_agent.fingerprint_id {
            columns.push(("fingerprint_id", next.user_agent.fingerprint_id.clone().map_or(Value::Null, Value::Text)));
        }
        if next.user_id() != current.user_id() {
            columns.push(("user_id", next.user_id().map_or(Value::Null, |u| Value::Text(u.to_owned()))));
        }
        if next.expiration_date != current.expiration_date {
            columns.push(("expiration_date", next.expiration_date.map_or(Value::Null, |t| Value::Integer(t.0))));
        }
        if next.terminated_at != current.terminated_at {
            columns.push(("terminated_at", terminated_at_value(next.terminated_at)));
        }
        let set = columns.iter().enumerate().map(|(i, (c, _))| format!("{c} = ?{}", i + 3)).collect::<Vec<_>>();
        let sql = format!(
            "UPDATE sessions SET {}, history_head = last_insert_rowid() WHERE id = ?1 AND sequence = ?2",
            set.join(", ")
        );
        let values: Vec<Value> =
            [Value::Text(next.id.clone()), expected].into_iter().chain(columns.into_iter().map(|(_, v)| v)).collect();
        let entry = entry.clone();
        self.write_direct(move |conn| {
            // The guard is checked before anything is written, so that a lost race refuses the
            // job whole without a savepoint (`write_direct`); under the write lock the row cannot
            // move between the check and the update, whose own guard stays as the backstop.
            let current = conn
                .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1 AND sequence = ?2")
                .and_then(|mut s| s.exists(params![&values[0], &values[1]]))
                .map_err(translate)?;
            if !current {
                return Err(StoreError::Conflict);
            }
            // The entry first: the row names it as its history's head.
            history::append_history(conn, &entry)?;
            let changed =
                conn.prepare_cached(&sql).and_then(|mut s| s.execute(params_from_iter(values))).map_err(translate)?;
            if changed != 1 {
                return Err(StoreError::Conflict);
            }
            Ok(())
        })
        .await
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> StoreResult<(u64, Vec<Session>)> {
        let (clause, values) = filter_sql(filter);
        let order = if filter.ascending { "ASC" } else { "DESC" };
        let offset = i64::try_from(filter.offset).unwrap_or(i64::MAX);
        let limit = i64::from(filter.limit);
        let read = move |conn: &Connection| {
            let total: i64 = conn
                .prepare_cached(&format!("SELECT COUNT(*) FROM sessions WHERE {clause}"))
                .and_then(|mut s| s.query_row(params_from_iter(values.iter()), |r| r.get(0)))
                .map_err(translate)?;
            let mut page_values = values;
            page_values.push(Value::Integer(limit));
            page_values.push(Value::Integer(offset));
            let rows: Vec<SessionRow> = conn
                .prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE {clause} \
                     ORDER BY creation_date {order}, id {order} LIMIT ? OFFSET ?"
                ))
                .and_then(|mut s| s.query_map(params_from_iter(page_values.iter()), session_from_row)?.collect())
                .map_err(translate)?;
            Ok((total, rows))
        };
        // Decoded after the read transaction ended (see `Reader::read`).
        let decode = |(total, rows): (i64, Vec<SessionRow>)| {
            let sessions = rows.into_iter().map(SessionRow::decode).collect::<StoreResult<_>>()?;
            Ok((u64::try_from(total).unwrap_or_default(), sessions))
        };
        self.reader.read(read, decode).await
    }

    async fn session_history(&self, id: &str) -> StoreResult<Vec<HistoryEntry>> {
        let id = id.to_owned();
        self.reader.read(move |conn| history::read_history(conn, &id), Ok).await
    }

    async fn sweep(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        self.write(move |conn| history::sweep_sessions(conn, before.0, limit)).await
    }

    async fn sweep_history(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        self.write(move |conn| {
            let n = conn
                // The oldest entries by `session_history_at`, deleted by their rowid.
                .prepare_cached(
                    "DELETE FROM session_history WHERE entry IN \
                     (SELECT entry FROM session_history WHERE at < ?1 ORDER BY at, entry LIMIT ?2)",
                )
                .and_then(|mut s| s.execute(params![before.0, limit]))
                .map_err(translate)?;
            history::forget_heads(conn)?;
            Ok(n as u64)
        })
        .await
    }

    async fn close(&self) {
        self.shutdown().await;
    }
}

#[cfg(test)]
mod tests;

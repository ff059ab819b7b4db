//! API token and user rows as the database thread last read them, so that the calls fused with
//! their authentication (Get, Delete, Create) need not read the same rows again on every call:
//! the token with its user, and the user a CreateSession checks.
//!
//! A remembered row is used only while it is provably what a read would return now:
//! - no other connection has committed since it was read (`PRAGMA data_version`, asked as each
//!   transaction of the database thread begins, under the write lock that keeps every other
//!   connection from committing until it ends: another process's revocation, or the admin
//!   CLI's, is seen by the very next call);
//! - no row of `users` or `api_tokens` has changed on this connection since, and no transaction
//!   of it has rolled back (SQLite's update and rollback hooks bump a generation: a row read
//!   after an uncommitted change must not outlive that change's rollback). A job's own savepoint
//!   is rolled back inside that job, before any other job reads, and the change it undoes has
//!   bumped the generation already.
//!
//! Both tables are rowid tables, which is what the update hook reports on (it is silent for
//! WITHOUT ROWID tables); the tests below pin that a change to either is seen. Rows that were
//! not found are not remembered. Holds at most `CAPACITY` rows of each kind; when full it starts
//! over.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use rusqlite::{Connection, OptionalExtension};

use super::{
    StoreResult,
    rows::{TOKEN_WITH_HOLDER, USER_COLUMNS, holder_from_row, token_from_row, user_from_row},
    translate,
};
use crate::domain::{port::TokenRow, session::UserCheck, user::User};

/// Rows of each kind remembered at most.
const CAPACITY: usize = 4096;

#[derive(Debug)]
pub(super) struct AuthRows {
    /// Bumped by the connection's hooks (see the module's comment).
    generation: Arc<AtomicU64>,
    remembered: Mutex<Remembered>,
}

#[derive(Debug, Default)]
struct Remembered {
    /// The generation and `data_version` the rows were read at.
    generation: u64,
    data_version: i64,
    /// `data_version` while the database thread's transaction holds the write lock.
    in_transaction: Option<i64>,
    tokens: HashMap<String, TokenRow>,
    users: HashMap<UserCheck, User>,
}

impl Remembered {
    /// Forgets every row unless read at `generation` and `data_version`.
    fn current(&mut self, generation: u64, data_version: i64) -> &mut Self {
        if self.generation != generation || self.data_version != data_version {
            self.tokens.clear();
            self.users.clear();
            (self.generation, self.data_version) = (generation, data_version);
        }
        self
    }
}

impl AuthRows {
    /// Watches `conn`'s changes to `users` and `api_tokens`; `conn` is the one the rows are
    /// later read on.
    pub(super) fn watching(conn: &Connection) -> Self {
        let generation = Arc::new(AtomicU64::new(0));
        let changed = Arc::clone(&generation);
        conn.update_hook(Some(move |_: rusqlite::hooks::Action, _: &str, table: &str, _: i64| {
            if table == "users" || table == "api_tokens" {
                changed.fetch_add(1, Ordering::SeqCst);
            }
        }));
        let rolled_back = Arc::clone(&generation);
        conn.rollback_hook(Some(move || {
            rolled_back.fetch_add(1, Ordering::SeqCst);
        }));
        Self { generation, remembered: Mutex::default() }
    }

    /// The token `token_id` and its user, as a read on `conn` would return them now.
    pub(super) fn token(&self, conn: &Connection, token_id: &str) -> StoreResult<TokenRow> {
        let mut remembered = self.remembered(conn)?;
        if let Some(row) = remembered.tokens.get(token_id) {
            return Ok(row.clone());
        }
        let row = read_token(conn, token_id)?;
        if row.is_some() {
            remember(&mut remembered.tokens, token_id.to_owned(), row.clone());
        }
        Ok(row)
    }

    /// The user `check` names, as a read on `conn` would return it now.
    pub(super) fn user(&self, conn: &Connection, check: &UserCheck) -> StoreResult<Option<User>> {
        let mut remembered = self.remembered(conn)?;
        if let Some(user) = remembered.users.get(check) {
            return Ok(Some(user.clone()));
        }
        let user = read_user(conn, check)?;
        if let Some(user) = &user {
            remember(&mut remembered.users, check.clone(), user.clone());
        }
        Ok(user)
    }

    /// The database thread's transaction has begun, holding the write lock: no other
    /// connection can commit until it ends, so `data_version` is asked once for all its jobs.
    pub(super) fn transaction_began(&self, conn: &Connection) {
        let version = data_version(conn).ok();
        self.lock().in_transaction = version;
    }

    /// The database thread's transaction has ended (committed or rolled back).
    pub(super) fn transaction_ended(&self) {
        self.lock().in_transaction = None;
    }

    /// The rows still current on `conn` (see the module's comment).
    fn remembered(&self, conn: &Connection) -> StoreResult<std::sync::MutexGuard<'_, Remembered>> {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut remembered = self.lock();
        let data_version = match remembered.in_transaction {
            Some(version) => version,
            None => data_version(conn)?,
        };
        remembered.current(generation, data_version);
        Ok(remembered)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.remembered.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Changes whenever another connection has committed (SQLite's `PRAGMA data_version`).
fn data_version(conn: &Connection) -> StoreResult<i64> {
    conn.prepare_cached("PRAGMA data_version").and_then(|mut s| s.query_row([], |r| r.get(0))).map_err(translate)
}

fn remember<K: std::hash::Hash + Eq, V>(rows: &mut HashMap<K, V>, key: K, row: V) {
    if rows.len() >= CAPACITY {
        rows.clear();
    }
    rows.insert(key, row);
}

/// The user `check` names, read from the table.
fn read_user(conn: &Connection, check: &UserCheck) -> StoreResult<Option<User>> {
    let (sql, key) = match check {
        UserCheck::ById(id) => (format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"), id),
        UserCheck::ByLoginName(name) => (format!("SELECT {USER_COLUMNS} FROM users WHERE login_name = ?1"), name),
    };
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.query_row([key], |r| user_from_row(r, 0)).optional())
        .map_err(translate)
}

/// The token row and its user's, read from the tables.
fn read_token(conn: &Connection, token_id: &str) -> StoreResult<TokenRow> {
    conn.prepare_cached(TOKEN_WITH_HOLDER)
        .and_then(|mut s| s.query_row([token_id], |r| Ok((token_from_row(r)?, holder_from_row(r, 7)?))).optional())
        .map_err(translate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::user::UserState;
    use crate::store::{Durability, sqlite::writer::open_writer};

    /// A migrated database with user `u` and its token `t`, the connection the rows are read on.
    fn database() -> (tempfile::TempDir, std::path::PathBuf, Connection, AuthRows) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("tokens.db");
        let conn = open_writer(&path, Durability::Normal).expect("database");
        conn.execute_batch(
            "INSERT INTO users (id, login_name, display_name, org_id, state, created_at) \
                 VALUES ('u', 'u', 'u', 'org', 'active', 0); \
             INSERT INTO api_tokens (id, user_id, secret_hash, permissions, created_at) \
                 VALUES ('t', 'u', zeroblob(32), 1, 0);",
        )
        .expect("rows");
        let rows = AuthRows::watching(&conn);
        (dir, path, conn, rows)
    }

    /// (revoked_at, the user's state) of token `t` as `rows` answers.
    fn token(rows: &AuthRows, conn: &Connection) -> (Option<i64>, UserState) {
        let (record, holder) = rows.token(conn, "t").expect("read").expect("token t");
        (record.revoked_at.map(|t| t.0), holder.state)
    }

    #[test]
    fn a_change_on_the_same_connection_is_read_at_once() {
        let (_dir, _path, conn, rows) = database();
        assert_eq!(token(&rows, &conn), (None, UserState::Active));
        conn.execute("UPDATE api_tokens SET revoked_at = 5 WHERE id = 't'", []).expect("revoke");
        assert_eq!(token(&rows, &conn), (Some(5), UserState::Active), "a revocation");
        conn.execute("UPDATE users SET state = 'inactive' WHERE id = 'u'", []).expect("disable");
        assert_eq!(token(&rows, &conn), (Some(5), UserState::Inactive), "a disabled user");
        assert!(rows.token(&conn, "missing").expect("read").is_none());
    }

    #[test]
    fn a_change_another_connection_commits_is_read_at_once() {
        let (_dir, path, conn, rows) = database();
        assert_eq!(token(&rows, &conn), (None, UserState::Active));
        let other = Connection::open(&path).expect("a second connection");
        other.execute("UPDATE api_tokens SET revoked_at = 7 WHERE id = 't'", []).expect("revoke");
        assert_eq!(token(&rows, &conn), (Some(7), UserState::Active), "another process's revocation");
        other.execute("UPDATE users SET state = 'inactive' WHERE id = 'u'", []).expect("disable");
        assert_eq!(token(&rows, &conn), (Some(7), UserState::Inactive), "another process's disabled user");
        // As the database thread runs its jobs: `data_version` asked once, as its transaction begins.
        other.execute("UPDATE api_tokens SET revoked_at = 8 WHERE id = 't'", []).expect("revoke again");
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        rows.transaction_began(&conn);
        assert_eq!(token(&rows, &conn), (Some(8), UserState::Inactive), "committed before the transaction");
        conn.execute_batch("COMMIT").expect("commit");
        rows.transaction_ended();
        other.execute("UPDATE api_tokens SET revoked_at = 9 WHERE id = 't'", []).expect("revoke once more");
        assert_eq!(token(&rows, &conn), (Some(9), UserState::Inactive), "committed after it");
    }

    #[test]
    fn a_row_read_inside_a_transaction_that_rolls_back_is_not_kept() {
        let (_dir, _path, conn, rows) = database();
        assert_eq!(token(&rows, &conn), (None, UserState::Active));
        conn.execute_batch("BEGIN IMMEDIATE; UPDATE users SET state = 'inactive' WHERE id = 'u';").expect("change");
        assert_eq!(token(&rows, &conn), (None, UserState::Inactive), "inside the transaction");
        conn.execute_batch("ROLLBACK").expect("rollback");
        assert_eq!(token(&rows, &conn), (None, UserState::Active), "after its rollback");
    }

    #[test]
    fn a_checked_user_is_read_as_it_is_now() {
        let (_dir, path, conn, rows) = database();
        let locked = |rows: &AuthRows, check: &UserCheck| {
            rows.user(&conn, check).expect("read").map(|u| (u.locked, u.state == UserState::Active))
        };
        let (by_id, by_name) = (UserCheck::ById("u".into()), UserCheck::ByLoginName("u".into()));
        assert_eq!((locked(&rows, &by_id), locked(&rows, &by_name)), (Some((false, true)), Some((false, true))));
        conn.execute("UPDATE users SET locked = 1 WHERE id = 'u'", []).expect("lock");
        assert_eq!((locked(&rows, &by_id), locked(&rows, &by_name)), (Some((true, true)), Some((true, true))));
        let other = Connection::open(&path).expect("a second connection");
        other.execute("UPDATE users SET state = 'inactive' WHERE id = 'u'", []).expect("disable");
        assert_eq!(locked(&rows, &by_name), Some((true, false)), "another process's change");
        assert_eq!(locked(&rows, &UserCheck::ByLoginName("nobody".into())), None);
    }
}

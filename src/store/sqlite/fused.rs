//! The calls fused with their authentication (`Store::token_and_session`, `terminate_session_as`,
//! `create_session_as`): each is one job on the database thread, which reads the token row with
//! the call's own rows and runs the domain's decision between its reads and its write. Nothing
//! runs between them, so a decision never acts on a stale read.

use std::sync::Arc;

use rusqlite::{Connection, params, params_from_iter, types::Value};

use super::{
    SqliteStore, StoreError, StoreResult, Termination, TerminationCheck,
    history::{append_first_history, append_history},
    rows::{read_session, session_params},
    translate,
};
use crate::domain::{
    Error, Timestamp,
    port::{AuthorizedTermination, SessionBuild, TerminationStep, TokenRow, terminated, termination_step},
    session::{HistoryEntry, Session, UserCheck},
};

impl SqliteStore {
    pub(super) async fn read_token_and_session(
        &self,
        token_id: &str,
        id: &str,
    ) -> StoreResult<(TokenRow, Option<Session>)> {
        let (token_id, id, auth) = (token_id.to_owned(), id.to_owned(), Arc::clone(&self.auth));
        self.read(move |conn| Ok((auth.token(conn, &token_id)?, read_session(conn, &id)?))).await
    }

    pub(super) async fn terminate_authorized(
        &self,
        token_id: &str,
        id: &str,
        at: Timestamp,
        decide: AuthorizedTermination,
    ) -> StoreResult<Termination> {
        let (token_id, id, auth) = (token_id.to_owned(), id.to_owned(), Arc::clone(&self.auth));
        self.write_direct(move |conn| {
            let (caller, check) = match decide(auth.token(conn, &token_id)?) {
                Ok(decided) => decided,
                Err(refusal) => return Ok(Termination::Refused(refusal)),
            };
            terminate_in(conn, &id, at, &caller.user_id, check)
        })
        .await
    }

    pub(super) async fn create_built(
        &self,
        token_id: &str,
        user: Option<&UserCheck>,
        _at: Timestamp,
        build: SessionBuild,
    ) -> StoreResult<Result<Session, Error>> {
        let (token_id, user, auth) = (token_id.to_owned(), user.cloned(), Arc::clone(&self.auth));
        self.write_direct(move |conn| {
            let token = auth.token(conn, &token_id)?;
            let user = match &user {
                Some(check) => auth.user(conn, check)?,
                None => None,
            };
            let (session, entry) = match build(token, user) {
                Ok(built) => built,
                Err(refusal) => return Ok(Err(refusal)),
            };
            insert_session(conn, session_params(&session), &entry)?;
            Ok(Ok(session))
        })
        .await
    }
}

/// Reads the session, asks `check`, and unless refused or terminated already writes the
/// termination at `at` by `actor` and its history entry. Runs without a savepoint
/// (`SqliteStore::write_direct`): every refusal comes before the first write, and the update's
/// sequence guard cannot miss a row this same job read under the write lock (should it, the
/// batch rolls back).
pub(super) fn terminate_in(
    conn: &Connection,
    id: &str,
    at: Timestamp,
    actor: &str,
    check: TerminationCheck,
) -> StoreResult<Termination> {
    let current = match termination_step(read_session(conn, id)?, check) {
        TerminationStep::Write(current) => current,
        TerminationStep::Answer(answer) => return Ok(answer),
    };
    let (next, entry) = terminated(&current, at, actor);
    append_history(conn, &entry)?;
    let changed = conn
        .prepare_cached(
            "UPDATE sessions SET change_date = ?3, sequence = ?4, terminated_at = ?5, history_head = last_insert_rowid() \
             WHERE id = ?1 AND sequence = ?2",
        )
        .and_then(|mut s| {
            s.execute(params![
                next.id,
                i64::try_from(current.sequence).unwrap_or(i64::MAX),
                next.change_date.0,
                i64::try_from(next.sequence).unwrap_or(i64::MAX),
                at.0
            ])
        })
        .map_err(translate)?;
    if changed != 1 {
        return Err(StoreError::Conflict);
    }
    Ok(Termination::Terminated(next))
}

/// Inserts a session (its columns as `session_params` lists them) and its first history entry.
/// A taken id is refused before anything is written, so that this runs without a savepoint
/// (`SqliteStore::write_direct`).
pub(super) fn insert_session(conn: &Connection, values: [Value; 12], entry: &HistoryEntry) -> StoreResult<()> {
    let taken = conn
        .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")
        .and_then(|mut s| s.exists([&values[0]]))
        .map_err(translate)?;
    if taken {
        return Err(StoreError::AlreadyExists("a session with this id exists".into()));
    }
    append_first_history(conn, entry)?;
    conn.prepare_cached(
        "INSERT INTO sessions (id, resource_owner, creator_id, user_id, fingerprint_id, creation_date, change_date, \
         sequence, token_hash, expiration_date, terminated_at, state, history_head) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, last_insert_rowid())",
    )
    .and_then(|mut s| s.execute(params_from_iter(values)))
    .map_err(translate)?;
    Ok(())
}

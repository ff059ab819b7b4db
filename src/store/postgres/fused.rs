//! The calls fused with their authentication (`Store::token_and_session`, `terminate_session_as`,
//! `create_session_as`). A read is one statement that reads the token row, its user and the call's
//! own rows together; a write is that statement, the domain's decision on what it read (in Rust:
//! the secret compared in constant time), then one statement that writes only if the token still
//! holds (not revoked, not expired, its user active) and, for a termination, the session is still
//! at the sequence the decision saw. Both statements share one call budget.

use sqlx::{PgConnection, Row as _, postgres::PgRow};
use tokio::time::Instant;

use super::{
    CALL_TIMEOUT, PostgresStore, StoreError, StoreResult, Termination,
    error::Failure,
    rows::{SESSION_COLUMNS, USER_COLUMNS, bind_session, session_at, token_from_row, user_from_row},
};
use crate::{
    domain::{
        Error, Timestamp,
        port::{AuthorizedTermination, SessionBuild, TerminationStep, TokenRow, terminated, termination_step},
        session::{Session, UserCheck},
        user::{User, invalid_token},
    },
    store::codec::encode_changes,
};

/// The token's columns (`TOKEN_COLUMNS`), then its user's (`USER_COLUMNS`): 24 columns.
const TOKEN_AND_USER: &str = "t.id, t.user_id, t.secret_hash, t.permissions, t.expires_at, t.revoked_at, t.created_at, \
     u.id, u.login_name, u.display_name, u.org_id, u.state, u.password_hash, u.failed_attempts, u.locked, \
     u.totp_sealed, u.totp_last_step, u.created_at, u.otp_failed_attempts, u.otp_locked, u.email, u.phone, \
     u.otp_email, u.otp_sms";
/// Where the columns after `TOKEN_AND_USER` start.
const AFTER_TOKEN: usize = 24;

/// The one row every fused read answers (`$1` the token id): the token and its user, or nulls.
const FROM_TOKEN: &str =
    "FROM (SELECT 1) AS one LEFT JOIN (api_tokens t JOIN users u ON u.id = t.user_id) ON t.id = $1";

/// The write's guard (`$1` the token id, `$2` the time of the decision): the token still holds.
const TOKEN_HOLDS: &str = "EXISTS (SELECT 1 FROM api_tokens t JOIN users u ON u.id = t.user_id \
     WHERE t.id = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2) AND u.state = 'active')";

impl PostgresStore {
    pub(super) async fn read_token_and_session(
        &self,
        token_id: &str,
        id: &str,
    ) -> StoreResult<(TokenRow, Option<Session>)> {
        self.token_and_session_until(Instant::now() + CALL_TIMEOUT, token_id, id).await
    }

    async fn token_and_session_until(
        &self,
        deadline: Instant,
        token_id: &str,
        id: &str,
    ) -> StoreResult<(TokenRow, Option<Session>)> {
        let sql = format!(
            "SELECT {TOKEN_AND_USER}, {} {FROM_TOKEN} LEFT JOIN sessions s ON s.id = $2",
            prefixed("s", SESSION_COLUMNS)
        );
        let (token_id, id) = (token_id.to_owned(), id.to_owned());
        self.run_until(deadline, move |conn| {
            let (sql, token_id, id) = (sql.clone(), token_id.clone(), id.clone());
            Box::pin(async move {
                let row = sqlx::query(&sql).bind(token_id).bind(id).fetch_one(conn).await?;
                let session = if present(&row, AFTER_TOKEN)? { Some(session_at(&row, AFTER_TOKEN)?) } else { None };
                Ok((token_row(&row)?, session))
            })
        })
        .await
    }

    pub(super) async fn terminate_authorized(
        &self,
        token_id: &str,
        id: &str,
        at: Timestamp,
        decide: AuthorizedTermination,
    ) -> StoreResult<Termination> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let (token, found) = self.token_and_session_until(deadline, token_id, id).await?;
        let (caller, check) = match decide(token) {
            Ok(decided) => decided,
            Err(refusal) => return Ok(Termination::Refused(refusal)),
        };
        let current = match termination_step(found, check) {
            TerminationStep::Write(current) => current,
            TerminationStep::Answer(answer) => return Ok(answer),
        };
        let (next, entry) = terminated(&current, at, &caller.user_id);
        let sql = format!(
            "WITH ended AS (UPDATE sessions SET change_date = $2, sequence = $4, terminated_at = $2 \
             WHERE id = $3 AND sequence = $5 AND {TOKEN_HOLDS} RETURNING id) \
             INSERT INTO session_history (session_id, sequence, at, actor, changes) \
             SELECT id, $4, $2, $6, $7 FROM ended"
        );
        let (token_id, changes) = (token_id.to_owned(), encode_changes(&entry.changes));
        let (next_sequence, read_sequence) = (sequence(next.sequence), sequence(current.sequence));
        let written = self
            .run_until(deadline, |conn| {
                let (sql, token_id, changes) = (sql.clone(), token_id.clone(), changes.clone());
                let (id, actor) = (entry.session_id.clone(), entry.actor.clone());
                Box::pin(async move {
                    let written = sqlx::query(&sql)
                        .bind(token_id)
                        .bind(at.0)
                        .bind(id)
                        .bind(next_sequence)
                        .bind(read_sequence)
                        .bind(actor)
                        .bind(changes)
                        .execute(conn)
                        .await?;
                    Ok(written.rows_affected() == 1)
                })
            })
            .await?;
        // Moved since the read, or the token no longer holds: the next try reads which.
        if !written {
            return Err(StoreError::Conflict);
        }
        Ok(Termination::Terminated(next))
    }

    pub(super) async fn create_built(
        &self,
        token_id: &str,
        user: Option<&UserCheck>,
        at: Timestamp,
        build: SessionBuild,
    ) -> StoreResult<Result<Session, Error>> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let (token, user) = self.token_and_user_until(deadline, token_id, user).await?;
        let (session, entry) = match build(token, user) {
            Ok(built) => built,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let sql = format!(
            "WITH made AS (INSERT INTO sessions (id, resource_owner, creator_id, user_id, fingerprint_id, \
             creation_date, change_date, sequence, token_hash, expiration_date, terminated_at, state) \
             SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 WHERE {TOKEN_HOLDS} RETURNING id) \
             INSERT INTO session_history (session_id, sequence, at, actor, changes) \
             SELECT id, $15, $16, $17, $18 FROM made"
        );
        let (token_id, changes) = (token_id.to_owned(), encode_changes(&entry.changes));
        let written = self
            .run_until(deadline, |conn| {
                let (sql, token_id, changes, actor) =
                    (sql.clone(), token_id.clone(), changes.clone(), entry.actor.clone());
                let (session, first, made_at) = (session.clone(), sequence(entry.sequence), entry.at.0);
                Box::pin(async move {
                    let insert = sqlx::query(&sql).bind(token_id).bind(at.0);
                    let written = bind_session(insert, &session)
                        .bind(first)
                        .bind(made_at)
                        .bind(actor)
                        .bind(changes)
                        .execute(conn)
                        .await?;
                    Ok(written.rows_affected() == 1)
                })
            })
            .await?;
        // The token was revoked, expired or its user disabled since the read: nothing written.
        Ok(if written { Ok(session) } else { Err(invalid_token()) })
    }

    /// The token, and the user `check` names, in one statement.
    async fn token_and_user_until(
        &self,
        deadline: Instant,
        token_id: &str,
        check: Option<&UserCheck>,
    ) -> StoreResult<(TokenRow, Option<User>)> {
        let (on, key) = match check {
            Some(UserCheck::ById(id)) => ("c.id = $2", Some(id.clone())),
            Some(UserCheck::ByLoginName(name)) => ("c.login_name = $2", Some(name.clone())),
            None => ("FALSE AND $2::TEXT IS NULL", None),
        };
        let sql =
            format!("SELECT {TOKEN_AND_USER}, {} {FROM_TOKEN} LEFT JOIN users c ON {on}", prefixed("c", USER_COLUMNS));
        let token_id = token_id.to_owned();
        self.run_until(deadline, move |conn: &mut PgConnection| {
            let (sql, token_id, key) = (sql.clone(), token_id.clone(), key.clone());
            Box::pin(async move {
                let row = sqlx::query(&sql).bind(token_id).bind(key).fetch_one(conn).await?;
                let user = if present(&row, AFTER_TOKEN)? { Some(user_from_row(&row, AFTER_TOKEN)?) } else { None };
                Ok((token_row(&row)?, user))
            })
        })
        .await
    }
}

/// The token and its user of a fused read's row, when it found them.
fn token_row(row: &PgRow) -> Result<TokenRow, Failure> {
    if !present(row, 0)? {
        return Ok(None);
    }
    Ok(Some((token_from_row(row)?, user_from_row(row, 7)?)))
}

/// Whether the left-joined row starting at column `at` (its id, never null when found) was found.
fn present(row: &PgRow, at: usize) -> Result<bool, Failure> {
    Ok(row.try_get::<Option<String>, _>(at)?.is_some())
}

/// `columns` (a comma-separated list) each qualified by `table`.
fn prefixed(table: &str, columns: &str) -> String {
    columns.split(", ").map(|c| format!("{table}.{c}")).collect::<Vec<_>>().join(", ")
}

fn sequence(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

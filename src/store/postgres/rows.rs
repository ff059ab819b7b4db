//! Rows and SQL shared by the PostgreSQL store's calls: column lists, row readers and binders,
//! history inserts and the session filter's SQL.

use super::*;

pub(super) type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

pub(super) const USER_COLUMNS: &str = "id, login_name, display_name, org_id, state, password_hash, failed_attempts, locked, \
     totp_sealed, totp_last_step, created_at, otp_failed_attempts, otp_locked, email, phone, otp_email, otp_sms";

pub(super) fn user_from_row(row: &PgRow, at: usize) -> Result<User, sqlx::Error> {
    let state: String = row.try_get(at + 4)?;
    let totp_sealed: Option<Vec<u8>> = row.try_get(at + 8)?;
    let last_used_step: Option<i64> = row.try_get(at + 9)?;
    Ok(User {
        id: row.try_get(at)?,
        login_name: row.try_get(at + 1)?,
        display_name: row.try_get(at + 2)?,
        org_id: row.try_get(at + 3)?,
        state: UserState::parse(&state).unwrap_or(UserState::Inactive),
        password_hash: row.try_get(at + 5)?,
        failed_attempts: row.try_get(at + 6)?,
        locked: row.try_get(at + 7)?,
        totp: totp_sealed.map(|sealed| TotpEnrolment { sealed: SealedSecret::from_bytes(sealed), last_used_step }),
        created_at: Timestamp(row.try_get(at + 10)?),
        otp_failed_attempts: row.try_get(at + 11)?,
        otp_locked: row.try_get(at + 12)?,
        email: row.try_get(at + 13)?,
        phone: row.try_get(at + 14)?,
        otp_email: row.try_get(at + 15)?,
        otp_sms: row.try_get(at + 16)?,
    })
}

/// The user's columns after `id`, in `USER_COLUMNS` order, as parameters `$2`...
pub(super) fn bind_user_fields<'q>(query: PgQuery<'q>, user: &User) -> PgQuery<'q> {
    query
        .bind(user.login_name.clone())
        .bind(user.display_name.clone())
        .bind(user.org_id.clone())
        .bind(user.state.as_str())
        .bind(user.password_hash.clone())
        .bind(user.failed_attempts)
        .bind(user.locked)
        .bind(user.totp.as_ref().map(|t| t.sealed.as_bytes().to_vec()))
        .bind(user.totp.as_ref().and_then(|t| t.last_used_step))
}

pub(super) const TOKEN_COLUMNS: &str =
    "t.id, t.user_id, t.secret_hash, t.permissions, t.expires_at, t.revoked_at, t.created_at";

/// What authentication reads of the token's user (`holder_from_row`); the queries write them out.
#[cfg(test)]
pub(super) const HOLDER_COLUMNS: &str = "id, org_id, state";

/// A token and its user's `HOLDER_COLUMNS` in one query (authentication), written out once.
pub(super) const TOKEN_WITH_HOLDER: &str = "SELECT t.id, t.user_id, t.secret_hash, t.permissions, t.expires_at, \
     t.revoked_at, t.created_at, u.id, u.org_id, u.state FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1";

/// The token's user, from `HOLDER_COLUMNS` starting at column `at`.
pub(super) fn holder_from_row(row: &PgRow, at: usize) -> Result<TokenHolder, sqlx::Error> {
    Ok(TokenHolder {
        id: row.try_get(at)?,
        org_id: row.try_get(at + 1)?,
        state: UserState::parse(row.try_get::<&str, _>(at + 2)?).unwrap_or(UserState::Inactive),
    })
}

/// One session by id (on most calls).
pub(super) const SESSION_BY_ID: &str = "SELECT id, resource_owner, creator_id, creation_date, change_date, sequence, token_hash, \
     expiration_date, terminated_at, state FROM sessions WHERE id = $1";

pub(super) fn token_from_row(row: &PgRow) -> Result<ApiTokenRecord, sqlx::Error> {
    let hash: Vec<u8> = row.try_get(2)?;
    let permissions: i16 = row.try_get(3)?;
    Ok(ApiTokenRecord {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        secret_hash: SecretHash::from_slice(&hash).unwrap_or(SecretHash([0; 32])),
        permissions: Permissions::from_bits(u8::try_from(permissions).unwrap_or_default()),
        expires_at: row.try_get::<Option<i64>, _>(4)?.map(Timestamp),
        revoked_at: row.try_get::<Option<i64>, _>(5)?.map(Timestamp),
        created_at: Timestamp(row.try_get(6)?),
    })
}

pub(super) const SESSION_COLUMNS: &str = "id, resource_owner, creator_id, creation_date, change_date, sequence, token_hash, expiration_date, terminated_at, state";

pub(super) fn session_from_row(row: &PgRow) -> Result<Session, Failure> {
    session_at(row, 0)
}

/// The session whose `SESSION_COLUMNS` start at column `at`.
pub(super) fn session_at(row: &PgRow, at: usize) -> Result<Session, Failure> {
    let hash: Vec<u8> = row.try_get(at + 6)?;
    let sequence: i64 = row.try_get(at + 5)?;
    let state: String = row.try_get(at + 9)?;
    let mut session = Session {
        id: row.try_get(at)?,
        resource_owner: row.try_get(at + 1)?,
        creator_id: row.try_get(at + 2)?,
        creation_date: Timestamp(row.try_get(at + 3)?),
        change_date: Timestamp(row.try_get(at + 4)?),
        sequence: u64::try_from(sequence).unwrap_or_default(),
        token_hash: SecretHash::from_slice(&hash).unwrap_or(SecretHash([0; 32])),
        factors: Default::default(),
        metadata: Default::default(),
        user_agent: Default::default(),
        expiration_date: row.try_get::<Option<i64>, _>(at + 7)?.map(Timestamp),
        terminated_at: row.try_get::<Option<i64>, _>(at + 8)?.map(Timestamp),
        otp_challenges: Default::default(),
        passkey_challenge: None,
    };
    decode_state_into(&mut session, &state)?;
    Ok(session)
}

/// A session's columns in insert order, as parameters `$1`...`$12`.
pub(super) fn bind_session<'q>(query: PgQuery<'q>, session: &Session) -> PgQuery<'q> {
    query
        .bind(session.id.clone())
        .bind(session.resource_owner.clone())
        .bind(session.creator_id.clone())
        .bind(session.user_id().map(str::to_owned))
        .bind(session.user_agent.fingerprint_id.clone())
        .bind(session.creation_date.0)
        .bind(session.change_date.0)
        .bind(i64::try_from(session.sequence).unwrap_or(i64::MAX))
        .bind(session.token_hash.0.to_vec())
        .bind(session.expiration_date.map(|t| t.0))
        .bind(session.terminated_at.map(|t| t.0))
        .bind(encode_state(session))
}

pub(super) async fn insert_history(conn: &mut PgConnection, entry: &HistoryEntry) -> Result<(), Failure> {
    sqlx::query("INSERT INTO session_history (session_id, sequence, at, actor, changes) VALUES ($1, $2, $3, $4, $5)")
        .bind(entry.session_id.clone())
        .bind(i64::try_from(entry.sequence).unwrap_or(i64::MAX))
        .bind(entry.at.0)
        .bind(entry.actor.clone())
        .bind(encode_changes(&entry.changes))
        .execute(conn)
        .await?;
    Ok(())
}

/// Appends the `WHERE` clause of a list filter (the same rules as the SQLite store's).
pub(super) fn push_filter(sql: &mut QueryBuilder<'static, Postgres>, filter: &SessionFilter) {
    sql.push(" WHERE terminated_at IS NULL AND (expiration_date IS NULL OR expiration_date > ")
        .push_bind(filter.live_at.0)
        .push(")");
    if let Some(user) = &filter.visible_to_user {
        sql.push(" AND user_id = ").push_bind(user.clone());
    }
    for query in &filter.queries {
        match query {
            SessionQuery::Ids(ids) => {
                if ids.is_empty() {
                    sql.push(" AND FALSE");
                } else {
                    sql.push(" AND id = ANY(").push_bind(ids.clone()).push(")");
                }
            }
            SessionQuery::UserId(id) => {
                sql.push(" AND user_id = ").push_bind(id.clone());
            }
            SessionQuery::CreationDate(cmp, at) => {
                sql.push(format_args!(" AND creation_date {} ", comparison(*cmp))).push_bind(at.0);
            }
            SessionQuery::ExpirationDate(cmp, at) => {
                // No expiration date means never expires: later than any given time.
                let null_matches = matches!(cmp, TimeComparison::Greater | TimeComparison::GreaterOrEquals);
                let null_clause = if null_matches { "expiration_date IS NULL OR " } else { "" };
                sql.push(format_args!(" AND ({null_clause}expiration_date {} ", comparison(*cmp)))
                    .push_bind(at.0)
                    .push(")");
            }
            SessionQuery::Creator(id) => {
                sql.push(" AND creator_id = ").push_bind(id.clone());
            }
            SessionQuery::UserAgentFingerprint(id) => {
                sql.push(" AND fingerprint_id = ").push_bind(id.clone());
            }
        }
    }
}

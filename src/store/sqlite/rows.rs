//! Rows and SQL shared by the SQLite store's jobs: column lists, row readers and writers, the
//! session filter's SQL, and error translation.

use super::*;

pub(super) fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
    run_cached(conn, "SAVEPOINT job")?;
    let result = f(conn);
    if result.is_err() {
        run_cached(conn, "ROLLBACK TO job")?;
    }
    run_cached(conn, "RELEASE job")?;
    result
}

/// Runs a statement without results from the connection's statement cache: the transaction
/// control of every job and batch, which `execute_batch` would parse anew each time.
pub(super) fn run_cached(conn: &Connection, sql: &str) -> StoreResult<()> {
    conn.prepare_cached(sql).and_then(|mut s| s.raw_execute()).map_err(translate)?;
    Ok(())
}

/// Driver errors stop here.
pub(super) fn translate(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::ConstraintViolation => StoreError::AlreadyExists(e.to_string()),
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreError::Unavailable(e.to_string()),
            ErrorCode::CannotOpen | ErrorCode::DiskFull | ErrorCode::SystemIoFailure => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Internal(e.to_string()),
        },
        _ => StoreError::Internal(e.to_string()),
    }
}

pub(super) fn opt_ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp)
}

pub(super) const USER_COLUMNS: &str = "id, login_name, display_name, org_id, state, password_hash, failed_attempts, locked, \
     totp_sealed, totp_last_step, created_at, otp_failed_attempts, otp_locked, email, phone, otp_email, otp_sms";

pub(super) fn user_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<User> {
    let state: String = row.get(at + 4)?;
    let totp_sealed: Option<Vec<u8>> = row.get(at + 8)?;
    Ok(User {
        id: row.get(at)?,
        login_name: row.get(at + 1)?,
        display_name: row.get(at + 2)?,
        org_id: row.get(at + 3)?,
        state: UserState::parse(&state).unwrap_or(UserState::Inactive),
        password_hash: row.get(at + 5)?,
        failed_attempts: row.get(at + 6)?,
        locked: row.get(at + 7)?,
        totp: totp_sealed.map(|sealed| TotpEnrolment {
            sealed: SealedSecret::from_bytes(sealed),
            last_used_step: row.get(at + 9).ok().flatten(),
        }),
        created_at: Timestamp(row.get(at + 10)?),
        otp_failed_attempts: row.get(at + 11)?,
        otp_locked: row.get(at + 12)?,
        email: row.get(at + 13)?,
        phone: row.get(at + 14)?,
        otp_email: row.get(at + 15)?,
        otp_sms: row.get(at + 16)?,
    })
}

pub(super) const TOKEN_COLUMNS: &str =
    "t.id, t.user_id, t.secret_hash, t.permissions, t.expires_at, t.revoked_at, t.created_at";

/// A token and what authentication reads of its user (`holder_from_row`) in one query (on every call: authentication).
pub(super) const TOKEN_WITH_HOLDER: &str = "SELECT t.id, t.user_id, t.secret_hash, t.permissions, t.expires_at, \
     t.revoked_at, t.created_at, u.id, u.org_id, u.state FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?1";

/// The token's user (its id, organization and state) from column `at` on.
pub(super) fn holder_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<TokenHolder> {
    Ok(TokenHolder {
        id: row.get(at)?,
        org_id: row.get(at + 1)?,
        state: UserState::parse(row.get_ref(at + 2)?.as_str()?).unwrap_or(UserState::Inactive),
    })
}

pub(super) fn token_from_row(row: &Row<'_>) -> rusqlite::Result<ApiTokenRecord> {
    let hash: Vec<u8> = row.get(2)?;
    Ok(ApiTokenRecord {
        id: row.get(0)?,
        user_id: row.get(1)?,
        secret_hash: SecretHash::from_slice(&hash).unwrap_or(SecretHash([0; 32])),
        permissions: Permissions::from_bits(row.get(3)?),
        expires_at: opt_ts(row.get(4)?),
        revoked_at: opt_ts(row.get(5)?),
        created_at: Timestamp(row.get(6)?),
    })
}

/// `sessions.terminated_at` of a live session (migration 0008): a value as wide as a time, so
/// that a termination rewrites the row at the same size.
pub(super) const ALIVE: i64 = i64::MAX;

/// A session's end as `sessions.terminated_at` stores it.
pub(super) fn terminated_at_value(at: Option<Timestamp>) -> Value {
    Value::Integer(at.map_or(ALIVE, |t| t.0))
}

/// `sessions.terminated_at` as the session's end: none while live (NULL is not written since
/// migration 0008, and reads as live too).
fn terminated_at_of(stored: Option<i64>) -> Option<Timestamp> {
    stored.filter(|&t| t != ALIVE).map(Timestamp)
}

pub(super) const SESSION_COLUMNS: &str = "id, resource_owner, creator_id, creation_date, change_date, sequence, token_hash, expiration_date, terminated_at, state";
/// `SESSION_COLUMNS` of one session, written out once (most calls run it).
pub(super) const SESSION_BY_ID: &str = "SELECT id, resource_owner, creator_id, creation_date, change_date, sequence, token_hash, \
     expiration_date, terminated_at, state FROM sessions WHERE id = ?1";

/// A session row, its JSON document not decoded yet (decoding errors are ours, not the driver's).
pub(super) struct SessionRow {
    pub(super) session: Session,
    pub(super) state: String,
}

pub(super) fn session_from_row(row: &Row<'_>) -> rusqlite::Result<SessionRow> {
    let hash: Vec<u8> = row.get(6)?;
    let sequence: i64 = row.get(5)?;
    Ok(SessionRow {
        session: Session {
            id: row.get(0)?,
            resource_owner: row.get(1)?,
            creator_id: row.get(2)?,
            creation_date: Timestamp(row.get(3)?),
            change_date: Timestamp(row.get(4)?),
            sequence: u64::try_from(sequence).unwrap_or_default(),
            token_hash: SecretHash::from_slice(&hash).unwrap_or(SecretHash([0; 32])),
            factors: Default::default(),
            metadata: Default::default(),
            user_agent: Default::default(),
            expiration_date: opt_ts(row.get(7)?),
            terminated_at: terminated_at_of(row.get(8)?),
            otp_challenges: Default::default(),
            passkey_challenge: None,
        },
        state: row.get(9)?,
    })
}

impl SessionRow {
    pub(super) fn decode(self) -> StoreResult<Session> {
        let mut session = self.session;
        decode_state_into(&mut session, &self.state)?;
        Ok(session)
    }
}

pub(super) fn read_session(conn: &Connection, id: &str) -> StoreResult<Option<Session>> {
    conn.prepare_cached(SESSION_BY_ID)
        .and_then(|mut s| s.query_row([id], session_from_row).optional())
        .map_err(translate)?
        .map(SessionRow::decode)
        .transpose()
}

pub(super) fn session_params(session: &Session) -> [Value; 12] {
    [
        Value::Text(session.id.clone()),
        Value::Text(session.resource_owner.clone()),
        Value::Text(session.creator_id.clone()),
        session.user_id().map_or(Value::Null, |u| Value::Text(u.to_owned())),
        session.user_agent.fingerprint_id.clone().map_or(Value::Null, Value::Text),
        Value::Integer(session.creation_date.0),
        Value::Integer(session.change_date.0),
        Value::Integer(i64::try_from(session.sequence).unwrap_or(i64::MAX)),
        Value::Blob(session.token_hash.0.to_vec()),
        session.expiration_date.map_or(Value::Null, |t| Value::Integer(t.0)),
        terminated_at_value(session.terminated_at),
        Value::Text(encode_state(session)),
    ]
}

/// `WHERE` clause and parameters for a list filter.
pub(super) fn filter_sql(filter: &SessionFilter) -> (String, Vec<Value>) {
    let mut clauses =
        vec![format!("terminated_at = {ALIVE}"), "(expiration_date IS NULL OR expiration_date > ?)".to_owned()];
    let mut values = vec![Value::Integer(filter.live_at.0)];
    if let Some(user) = &filter.visible_to_user {
        clauses.push("user_id = ?".into());
        values.push(Value::Text(user.clone()));
    }
    for query in &filter.queries {
        match query {
            SessionQuery::Ids(ids) => {
                if ids.is_empty() {
                    clauses.push("0".into());
                } else {
                    clauses.push(format!("id IN ({})", vec!["?"; ids.len()].join(", ")));
                    values.extend(ids.iter().cloned().map(Value::Text));
                }
            }
            SessionQuery::UserId(id) => {
                clauses.push("user_id = ?".into());
                values.push(Value::Text(id.clone()));
            }
            SessionQuery::CreationDate(cmp, at) => {
                clauses.push(format!("creation_date {} ?", comparison(*cmp)));
                values.push(Value::Integer(at.0));
            }
            SessionQuery::ExpirationDate(cmp, at) => {
                // No expiration date means never expires: later than any given time.
                let null_matches = matches!(cmp, TimeComparison::Greater | TimeComparison::GreaterOrEquals);
                let null_clause = if null_matches { "expiration_date IS NULL OR " } else { "" };
                clauses.push(format!("({null_clause}expiration_date {} ?)", comparison(*cmp)));
                values.push(Value::Integer(at.0));
            }
            SessionQuery::Creator(id) => {
                clauses.push("creator_id = ?".into());
                values.push(Value::Text(id.clone()));
            }
            SessionQuery::UserAgentFingerprint(id) => {
                clauses.push("fingerprint_id = ?".into());
                values.push(Value::Text(id.clone()));
            }
        }
    }
    (clauses.join(" AND "), values)
}

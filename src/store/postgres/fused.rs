//! The calls fused with their authentication (`Store::token_and_session`, `terminate_session_as`,
//! `create_session_as`). A read is one statement that reads the token row, its user and the call's
//! own rows together; a write is that read, the domain's decision on what it read (in Rust: the
//! secret compared in constant time), then a write that happens only if the token still holds (not
//! revoked, not expired, its user active) and, for a termination, the session is still at the
//! sequence the decision saw. Both steps share one call budget. The token-and-session read, the
//! termination and the creation are each a row of a statement that concurrent calls share
//! (`batch`): one statement over arrays, answering every row as a statement of its own would.

use futures_util::future::BoxFuture;
use sqlx::{PgConnection, Row as _, postgres::PgRow};
use tokio::time::Instant;

use super::{
    CALL_TIMEOUT, PostgresStore, StoreError, StoreResult, Termination,
    batch::{Batched, Lanes},
    call::Db,
    error::Failure,
    rows::{SESSION_COLUMNS, USER_COLUMNS, holder_from_row, session_at, token_from_row, user_from_row},
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

/// The token's columns (`TOKEN_COLUMNS`), then its user's `HOLDER_COLUMNS`: 10 columns.
const TOKEN_AND_HOLDER: &str =
    "t.id, t.user_id, t.secret_hash, t.permissions, t.expires_at, t.revoked_at, t.created_at, u.id, u.org_id, u.state";
/// Where the columns after `TOKEN_AND_HOLDER` start.
const AFTER_TOKEN: usize = 10;

/// Every fused read's token and user, for the input row `q` (its `token_id`): found, or nulls.
const JOIN_TOKEN: &str = "LEFT JOIN (api_tokens t JOIN users u ON u.id = t.user_id) ON t.id = q.token_id";

/// The fused calls' shared statements, one queue of lanes per kind (`batch`).
#[derive(Debug)]
pub(super) struct Fused {
    reads: Lanes<SessionRead>,
    user_reads: Lanes<UserRead>,
    terminations: Lanes<TerminationWrite>,
    creations: Lanes<CreationWrite>,
}

impl Fused {
    /// Starts every kind's lanes (on the current runtime) over `db`'s pool.
    pub(super) fn start(db: &Db) -> Self {
        Self {
            reads: Lanes::start(db),
            user_reads: Lanes::start(db),
            terminations: Lanes::start(db),
            creations: Lanes::start(db),
        }
    }
}

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
        let read = SessionRead { token_id: token_id.to_owned(), id: id.to_owned() };
        self.fused.reads.run(read, deadline).await
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
        let write = TerminationWrite {
            token_id: token_id.to_owned(),
            at: at.0,
            id: entry.session_id.clone(),
            next: sequence(next.sequence),
            read: sequence(current.sequence),
            actor: entry.actor,
            changes: encode_changes(&entry.changes),
        };
        let written = self.fused.terminations.run(write, deadline).await?;
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
        let write = CreationWrite {
            token_id: token_id.to_owned(),
            at: at.0,
            session: session.clone(),
            first: sequence(entry.sequence),
            made_at: entry.at.0,
            actor: entry.actor,
            changes: encode_changes(&entry.changes),
        };
        let written = self.fused.creations.run(write, deadline).await?;
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
        let (user_id, login_name) = match check {
            Some(UserCheck::ById(id)) => (Some(id.clone()), None),
            Some(UserCheck::ByLoginName(name)) => (None, Some(name.clone())),
            None => (None, None),
        };
        let read = UserRead { token_id: token_id.to_owned(), user_id, login_name };
        self.fused.user_reads.run(read, deadline).await
    }
}

/// The token and its user of a fused read's row, when it found them.
fn token_row(row: &PgRow) -> Result<TokenRow, Failure> {
    if !present(row, 0)? {
        return Ok(None);
    }
    Ok(Some((token_from_row(row)?, holder_from_row(row, 7)?)))
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

/// A guard of the token (`i.token_id`, at `i.at`) in terms of the batch's input row `i`.
const TOKEN_HOLDS: &str = "EXISTS (SELECT 1 FROM api_tokens t JOIN users u ON u.id = t.user_id \
     WHERE t.id = i.token_id AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > i.at) \
     AND u.state = 'active')";

/// A termination the domain decided: the session `id`, read at sequence `read`, ends at `at`.
#[derive(Debug)]
pub(super) struct TerminationWrite {
    pub token_id: String,
    pub at: i64,
    pub id: String,
    pub next: i64,
    pub read: i64,
    pub actor: String,
    pub changes: String,
}

/// A new session the domain built, with its first history entry.
#[derive(Debug)]
pub(super) struct CreationWrite {
    pub token_id: String,
    pub at: i64,
    pub session: Session,
    pub first: i64,
    pub made_at: i64,
    pub actor: String,
    pub changes: String,
}

/// The positions (`n`) the statement returned, as one flag per row.
fn flags(returned: &[sqlx::postgres::PgRow], rows: usize) -> Result<Vec<bool>, Failure> {
    let mut written = vec![false; rows];
    for row in returned {
        let n: i32 = row.try_get(0)?;
        if let Some(flag) = usize::try_from(n).ok().and_then(|n| written.get_mut(n)) {
            *flag = true;
        }
    }
    Ok(written)
}

fn position(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Batched for TerminationWrite {
    /// Whether the row's guard held and it was written.
    type Output = bool;

    fn run<'c>(conn: &'c mut PgConnection, rows: &'c [Self]) -> BoxFuture<'c, Result<Vec<bool>, Failure>> {
        Box::pin(async move {
            // Rows are locked in the order of their ids whichever lane writes them, so that two
            // batches never wait for each other's rows in a cycle.
            let mut order: Vec<usize> = (0..rows.len()).collect();
            order.sort_by(|a, b| rows[*a].id.cmp(&rows[*b].id));
            let column = |f: &dyn Fn(&Self) -> String| order.iter().map(|n| f(&rows[*n])).collect::<Vec<_>>();
            let number = |f: &dyn Fn(&Self) -> i64| order.iter().map(|n| f(&rows[*n])).collect::<Vec<_>>();
            let sql = format!(
                "WITH i AS (SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[], \
                 $6::TEXT[], $7::TEXT[], $8::INT4[]) AS i (token_id, at, id, next_seq, read_seq, actor, changes, n)), \
                 ended AS (UPDATE sessions s SET change_date = i.at, sequence = i.next_seq, terminated_at = i.at \
                 FROM i WHERE s.id = i.id AND s.sequence = i.read_seq AND {TOKEN_HOLDS} \
                 RETURNING s.id, i.next_seq, i.at, i.actor, i.changes, i.n), \
                 logged AS (INSERT INTO session_history (session_id, sequence, at, actor, changes) \
                 SELECT id, next_seq, at, actor, changes FROM ended) \
                 SELECT n FROM ended"
            );
            let returned = sqlx::query(&sql)
                .bind(column(&|r| r.token_id.clone()))
                .bind(number(&|r| r.at))
                .bind(column(&|r| r.id.clone()))
                .bind(number(&|r| r.next))
                .bind(number(&|r| r.read))
                .bind(column(&|r| r.actor.clone()))
                .bind(column(&|r| r.changes.clone()))
                .bind(order.iter().map(|n| position(*n)).collect::<Vec<_>>())
                .fetch_all(conn)
                .await?;
            flags(&returned, rows.len())
        })
    }
}

impl Batched for CreationWrite {
    /// Whether the row's guard held and it was written.
    type Output = bool;

    fn run<'c>(conn: &'c mut PgConnection, rows: &'c [Self]) -> BoxFuture<'c, Result<Vec<bool>, Failure>> {
        Box::pin(async move {
            let text = |f: &dyn Fn(&Self) -> String| rows.iter().map(f).collect::<Vec<_>>();
            let maybe = |f: &dyn Fn(&Self) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
            let number = |f: &dyn Fn(&Self) -> i64| rows.iter().map(f).collect::<Vec<_>>();
            let maybe_number = |f: &dyn Fn(&Self) -> Option<i64>| rows.iter().map(f).collect::<Vec<_>>();
            let sql = format!(
                "WITH i AS (SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
                 $6::TEXT[], $7::TEXT[], $8::BIGINT[], $9::BIGINT[], $10::BIGINT[], $11::BYTEA[], $12::BIGINT[], \
                 $13::BIGINT[], $14::TEXT[], $15::BIGINT[], $16::BIGINT[], $17::TEXT[], $18::TEXT[]) \
                 WITH ORDINALITY AS i (token_id, at, id, resource_owner, creator_id, user_id, fingerprint_id, \
                 creation_date, change_date, sequence, token_hash, expiration_date, terminated_at, state, \
                 first_seq, made_at, actor, changes, n)), \
                 made AS (INSERT INTO sessions (id, resource_owner, creator_id, user_id, fingerprint_id, \
                 creation_date, change_date, sequence, token_hash, expiration_date, terminated_at, state) \
                 SELECT id, resource_owner, creator_id, user_id, fingerprint_id, creation_date, change_date, \
                 sequence, token_hash, expiration_date, terminated_at, state FROM i WHERE {TOKEN_HOLDS} \
                 RETURNING id), \
                 logged AS (INSERT INTO session_history (session_id, sequence, at, actor, changes) \
                 SELECT i.id, i.first_seq, i.made_at, i.actor, i.changes FROM i JOIN made ON made.id = i.id) \
                 SELECT (i.n - 1)::INT4 FROM i JOIN made ON made.id = i.id"
            );
            let returned = sqlx::query(&sql)
                .bind(text(&|r| r.token_id.clone()))
                .bind(number(&|r| r.at))
                .bind(text(&|r| r.session.id.clone()))
                .bind(text(&|r| r.session.resource_owner.clone()))
                .bind(text(&|r| r.session.creator_id.clone()))
                .bind(maybe(&|r| r.session.user_id().map(str::to_owned)))
                .bind(maybe(&|r| r.session.user_agent.fingerprint_id.clone()))
                .bind(number(&|r| r.session.creation_date.0))
                .bind(number(&|r| r.session.change_date.0))
                .bind(number(&|r| sequence(r.session.sequence)))
                .bind(rows.iter().map(|r| r.session.token_hash.0.to_vec()).collect::<Vec<_>>())
                .bind(maybe_number(&|r| r.session.expiration_date.map(|t| t.0)))
                .bind(maybe_number(&|r| r.session.terminated_at.map(|t| t.0)))
                .bind(text(&|r| super::encode_state(&r.session)))
                .bind(number(&|r| r.first))
                .bind(number(&|r| r.made_at))
                .bind(text(&|r| r.actor.clone()))
                .bind(text(&|r| r.changes.clone()))
                .fetch_all(conn)
                .await?;
            flags(&returned, rows.len())
        })
    }
}

/// A fused read: the token `token_id` with its user, and the session `id`.
#[derive(Debug)]
struct SessionRead {
    token_id: String,
    id: String,
}

impl Batched for SessionRead {
    type Output = (TokenRow, Option<Session>);

    fn run<'c>(conn: &'c mut PgConnection, rows: &'c [Self]) -> BoxFuture<'c, Result<Vec<Self::Output>, Failure>> {
        Box::pin(async move {
            // The position comes last, so that the token's and the session's columns keep the
            // offsets every fused read's row has.
            let sql = format!(
                "SELECT {TOKEN_AND_HOLDER}, {}, (q.n - 1)::INT4 \
                 FROM unnest($1::TEXT[], $2::TEXT[]) WITH ORDINALITY AS q (token_id, session_id, n) \
                 {JOIN_TOKEN} LEFT JOIN sessions s ON s.id = q.session_id",
                prefixed("s", SESSION_COLUMNS)
            );
            let returned = sqlx::query(&sql)
                .bind(rows.iter().map(|r| r.token_id.clone()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>())
                .fetch_all(conn)
                .await?;
            by_position(&returned, rows.len(), AFTER_TOKEN + SESSION_COLUMNS.split(", ").count(), |row| {
                let session = if present(row, AFTER_TOKEN)? { Some(session_at(row, AFTER_TOKEN)?) } else { None };
                Ok((token_row(row)?, session))
            })
        })
    }
}

/// A fused read for a creation: the token `token_id` with its user, and the user the creation
/// checks (by id or by login name; neither: no check).
#[derive(Debug)]
struct UserRead {
    token_id: String,
    user_id: Option<String>,
    login_name: Option<String>,
}

impl Batched for UserRead {
    type Output = (TokenRow, Option<User>);

    fn run<'c>(conn: &'c mut PgConnection, rows: &'c [Self]) -> BoxFuture<'c, Result<Vec<Self::Output>, Failure>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {TOKEN_AND_HOLDER}, {}, (q.n - 1)::INT4 \
                 FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[]) WITH ORDINALITY AS q (token_id, user_id, login_name, n) \
                 {JOIN_TOKEN} LEFT JOIN users c ON c.id = q.user_id OR c.login_name = q.login_name",
                prefixed("c", USER_COLUMNS)
            );
            let returned = sqlx::query(&sql)
                .bind(rows.iter().map(|r| r.token_id.clone()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.user_id.clone()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.login_name.clone()).collect::<Vec<_>>())
                .fetch_all(conn)
                .await?;
            by_position(&returned, rows.len(), AFTER_TOKEN + USER_COLUMNS.split(", ").count(), |row| {
                let user = if present(row, AFTER_TOKEN)? { Some(user_from_row(row, AFTER_TOKEN)?) } else { None };
                Ok((token_row(row)?, user))
            })
        })
    }
}

/// A batched read's answers in the order of its input: `read` of each returned row, placed by the
/// position in its column `position`. Every input row must have come back exactly once.
fn by_position<T>(
    returned: &[PgRow],
    rows: usize,
    position: usize,
    read: impl Fn(&PgRow) -> Result<T, Failure>,
) -> Result<Vec<T>, Failure> {
    let mut placed: Vec<Option<T>> = std::iter::repeat_with(|| None).take(rows).collect();
    for row in returned {
        let n: i32 = row.try_get(position)?;
        match usize::try_from(n).ok().and_then(|n| placed.get_mut(n)) {
            Some(slot @ None) => *slot = Some(read(row)?),
            _ => return Err(Failure::Store(StoreError::Internal(format!("a batched read answered row {n} twice")))),
        }
    }
    placed
        .into_iter()
        .map(|row| row.ok_or_else(|| Failure::Store(StoreError::Internal("a batched read lost a row".into()))))
        .collect()
}

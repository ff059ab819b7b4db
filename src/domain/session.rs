//! Login sessions: creating them, running checks, changing metadata and lifetime, reading,
//! listing and terminating them. Every change bumps the sequence, rotates the token and appends
//! one history entry in the same store transaction as the state change.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use super::{
    Caller, Error, ErrorClass, Permission, Result, Timestamp, authz,
    password::PasswordHasher,
    secrets::Secrets,
    token::{Secret, SecretHash, new_session_id},
    totp,
    user::{User, UserState, user_not_found},
};
use crate::store::{SessionFilter, Store, StoreError, Termination, TerminationCheck};

/// `session_id` bounds (ZITADEL's validation rule).
const MAX_SESSION_ID_LEN: usize = 200;
/// Page size when `limit` is 0, and the largest page a caller may ask for.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;
/// How often a terminating call re-reads a session that a concurrent writer changed under it.
const CONFLICT_RETRIES: usize = 3;

/// The user factor: who the session is for, as checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFactor {
    pub id: String,
    pub login_name: String,
    pub display_name: String,
    pub org_id: String,
    pub verified_at: Timestamp,
}

/// The factors checked on a session, each with the time of its latest successful check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Factors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserFactor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<Timestamp>,
}

/// The user agent a request described (never taken from HTTP headers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAgent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, Vec<String>>,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub resource_owner: String,
    pub creator_id: String,
    pub creation_date: Timestamp,
    pub change_date: Timestamp,
    pub sequence: u64,
    pub token_hash: SecretHash,
    pub factors: Factors,
    pub metadata: BTreeMap<String, Vec<u8>>,
    pub user_agent: UserAgent,
    pub expiration_date: Option<Timestamp>,
    pub terminated_at: Option<Timestamp>,
}

impl Session {
    pub fn user_id(&self) -> Option<&str> {
        self.factors.user.as_ref().map(|u| u.id.as_str())
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expiration_date.is_some_and(|at| at <= now)
    }

    /// Neither terminated nor expired.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.terminated_at.is_none() && !self.is_expired(now)
    }

    pub fn details(&self) -> Details {
        Details {
            sequence: self.sequence,
            change_date: self.change_date,
            resource_owner: self.resource_owner.clone(),
            creation_date: self.creation_date,
        }
    }
}

/// `zitadel.object.v2.Details` in domain terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    pub sequence: u64,
    pub change_date: Timestamp,
    pub resource_owner: String,
    pub creation_date: Timestamp,
}

/// One fact a call changed, as recorded in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    Created,
    UserChecked { user_id: String },
    PasswordChecked,
    TotpChecked,
    MetadataSet { key: String },
    MetadataRemoved { key: String },
    LifetimeSet { expiration_date: Timestamp },
    TokenRotated,
    Terminated,
}

/// One appended history entry: the call that moved the session to `sequence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub session_id: String,
    pub sequence: u64,
    pub at: Timestamp,
    pub actor: String,
    pub changes: Vec<Change>,
}

/// How a user check names its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCheck {
    ById(String),
    ByLoginName(String),
}

/// The checks a Create or Set call asks for, in request order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Checks {
    pub user: Option<UserCheck>,
    pub password: Option<String>,
    pub totp: Option<String>,
}

impl std::fmt::Debug for Checks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checks")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("totp", &self.totp.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What CreateSession asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateSession {
    pub checks: Checks,
    pub metadata: BTreeMap<String, Vec<u8>>,
    pub user_agent: UserAgent,
    pub lifetime: Option<Duration>,
}

/// What SetSession asks for.
#[derive(Debug, Clone, Default)]
pub struct SetSession {
    pub session_id: String,
    pub token: Option<String>,
    pub checks: Checks,
    pub metadata: BTreeMap<String, Vec<u8>>,
    pub lifetime: Option<Duration>,
}

/// The answer to a call that may issue a token.
#[derive(Debug, Clone)]
pub struct Issued {
    pub session_id: String,
    pub details: Details,
    /// `None` when the call changed nothing.
    pub token: Option<Secret>,
}

/// How a timestamp filter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeComparison {
    Equals,
    Greater,
    GreaterOrEquals,
    Less,
    LessOrEquals,
}

/// One ListSessions query; all given queries must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionQuery {
    Ids(Vec<String>),
    UserId(String),
    CreationDate(TimeComparison, Timestamp),
    ExpirationDate(TimeComparison, Timestamp),
    Creator(String),
    UserAgentFingerprint(String),
}

/// What ListSessions asks for.
#[derive(Debug, Clone, Default)]
pub struct ListSessions {
    pub queries: Vec<SessionQuery>,
    pub offset: u64,
    pub limit: u32,
    pub ascending: bool,
}

/// A page of sessions and the number of all matches.
#[derive(Debug, Clone)]
pub struct SessionPage {
    pub total: u64,
    pub sessions: Vec<Session>,
    pub timestamp: Timestamp,
}

/// Sessions, over a store.
#[derive(Debug, Clone)]
pub struct Sessions {
    store: Arc<dyn Store>,
    hasher: PasswordHasher,
    max_failed_attempts: i32,
    /// Opens the sealed TOTP seeds.
    secrets: Secrets,
}

impl Sessions {
    pub fn new(store: Arc<dyn Store>, hasher: PasswordHasher, max_failed_attempts: i32, secrets: Secrets) -> Self {
        Self { store, hasher, max_failed_attempts, secrets }
    }

    pub async fn create(&self, caller: &Caller, request: CreateSession) -> Result<Issued> {
        validate_lifetime(request.lifetime)?;
        validate_metadata_keys(&request.metadata)?;
        authz::may_create(caller)?;
        let now = Timestamp::now();
        let token = Secret::generate();
        let mut session = Session {
            id: new_session_id(),
            resource_owner: caller.org_id.clone(),
            creator_id: caller.user_id.clone(),
            creation_date: now,
            change_date: now,
            sequence: 1,
            token_hash: token.hash(),
            factors: Factors::default(),
            metadata: BTreeMap::new(),
            user_agent: request.user_agent,
            expiration_date: None,
            terminated_at: None,
        };
        let mut changes = vec![Change::Created];
        self.run_checks(&mut session, &request.checks, now, &mut changes).await?;
        apply_metadata(&mut session, request.metadata, &mut changes);
        if let Some(lifetime) = request.lifetime {
            apply_lifetime(&mut session, lifetime, now, &mut changes);
        }
        let entry = HistoryEntry {
            session_id: session.id.clone(),
            sequence: 1,
            at: now,
            actor: caller.user_id.clone(),
            changes,
        };
        self.store.create_session(&session, &entry).await?;
        Ok(Issued { session_id: session.id.clone(), details: session.details(), token: Some(token) })
    }

    pub async fn get(&self, caller: &Caller, session_id: &str, token: Option<&str>) -> Result<Session> {
        validate_session_id(session_id)?;
        let session = self.load(session_id).await?;
        if !session.is_live(Timestamp::now()) {
            return Err(session_not_found(session_id));
        }
        authz::may_read(caller, &session, token)?;
        Ok(session)
    }

    pub async fn set(&self, caller: &Caller, request: SetSession) -> Result<Issued> {
        validate_session_id(&request.session_id)?;
        validate_lifetime(request.lifetime)?;
        validate_metadata_keys(&request.metadata)?;
        let current = self.load(&request.session_id).await?;
        authz::may_change(caller, &current, request.token.as_deref())?;
        let now = Timestamp::now();
        if !current.is_live(now) {
            return Err(Error::failed_precondition("SESSION-Terminated", "the session is terminated or expired"));
        }
        let mut next = current.clone();
        let mut changes = Vec::new();
        self.run_checks(&mut next, &request.checks, now, &mut changes).await?;
        apply_metadata(&mut next, request.metadata, &mut changes);
        if let Some(lifetime) = request.lifetime {
            apply_lifetime(&mut next, lifetime, now, &mut changes);
        }
        if changes.is_empty() {
            return Ok(Issued { session_id: current.id.clone(), details: current.details(), token: None });
        }
        let token = Secret::generate();
        next.token_hash = token.hash();
        changes.push(Change::TokenRotated);
        self.commit(&current, next, now, caller, changes).await.map(|s| Issued {
            session_id: s.id.clone(),
            details: s.details(),
            token: Some(token),
        })
    }

    pub async fn delete(&self, caller: &Caller, session_id: &str, token: Option<&str>) -> Result<Details> {
        validate_session_id(session_id)?;
        let mut attempt = 0;
        loop {
            // The store reads, asks this check and writes in one step where it can.
            let (who, presented) = (caller.clone(), token.map(str::to_owned));
            let check: TerminationCheck =
                Box::new(move |current| authz::may_delete(&who, current, presented.as_deref()));
            match self.store.terminate_session(session_id, Timestamp::now(), &caller.user_id, check).await {
                Ok(Termination::NotFound) => return Err(session_not_found(session_id)),
                Ok(Termination::Refused(refusal)) => return Err(refusal),
                // Already terminated: the same answer as the first time, nothing written.
                Ok(Termination::AlreadyTerminated(session) | Termination::Terminated(session)) => {
                    return Ok(session.details());
                }
                Err(StoreError::Conflict) if attempt < CONFLICT_RETRIES => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn list(&self, caller: &Caller, request: ListSessions) -> Result<SessionPage> {
        let limit = match request.limit {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                return Err(Error::invalid_argument(
                    "SESSION-LimitTooLarge",
                    format!("query.limit may be at most {MAX_PAGE_SIZE}, got {n}"),
                ));
            }
            n => n,
        };
        for query in &request.queries {
            match query {
                SessionQuery::Creator(id) if id.is_empty() => {
                    return Err(Error::invalid_argument("SESSION-InvalidQuery", "creator_query.id must not be empty"));
                }
                SessionQuery::UserAgentFingerprint(id) if id.is_empty() => {
                    return Err(Error::invalid_argument(
                        "SESSION-InvalidQuery",
                        "user_agent_query.fingerprint_id must not be empty",
                    ));
                }
                _ => {}
            }
        }
        let now = Timestamp::now();
        let filter = SessionFilter {
            queries: request.queries,
            visible_to_user: (!caller.may(Permission::SessionRead)).then(|| caller.user_id.clone()),
            live_at: now,
            offset: request.offset,
            limit,
            ascending: request.ascending,
        };
        let (total, sessions) = self.store.list_sessions(&filter).await?;
        Ok(SessionPage { total, sessions, timestamp: now })
    }

    /// Appends the history of a session (for operators and tests).
    pub async fn history(&self, session_id: &str) -> Result<Vec<HistoryEntry>> {
        Ok(self.store.session_history(session_id).await?)
    }

    async fn load(&self, session_id: &str) -> Result<Session> {
        self.store.session(session_id).await?.ok_or_else(|| session_not_found(session_id))
    }

    /// Writes `next` as the successor of `current`, or fails with ABORTED if a concurrent writer
    /// got there first.
    async fn commit(
        &self,
        current: &Session,
        mut next: Session,
        now: Timestamp,
        caller: &Caller,
        changes: Vec<Change>,
    ) -> Result<Session> {
        next.sequence = current.sequence + 1;
        next.change_date = now;
        let entry = HistoryEntry {
            session_id: next.id.clone(),
            sequence: next.sequence,
            at: now,
            actor: caller.user_id.clone(),
            changes,
        };
        self.store.update_session(current, &next, &entry).await?;
        Ok(next)
    }

    /// Runs the checks in request order on `session`. Any failure leaves the caller's copy to be
    /// dropped: nothing is written unless all pass.
    async fn run_checks(
        &self,
        session: &mut Session,
        checks: &Checks,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) -> Result<()> {
        if let Some(check) = &checks.user {
            let user =
                match check {
                    UserCheck::ById(id) => self.store.user_by_id(id).await?.ok_or_else(|| user_not_found(id))?,
                    UserCheck::ByLoginName(name) => self.store.user_by_login_name(name).await?.ok_or_else(|| {
                        Error::not_found("USER-NotFound", format!("no user with login name `{name}`"))
                    })?,
                };
            if let Some(existing) = session.user_id()
                && existing != user.id
            {
                return Err(Error::invalid_argument(
                    "SESSION-UserMismatch",
                    "the user check names another user than the session's",
                ));
            }
            ensure_active(&user)?;
            session.factors.user = Some(UserFactor {
                id: user.id.clone(),
                login_name: user.login_name.clone(),
                display_name: user.display_name.clone(),
                org_id: user.org_id.clone(),
                verified_at: now,
            });
            changes.push(Change::UserChecked { user_id: user.id });
        }
        if let Some(password) = &checks.password {
            let user = self.session_user(session, "password").await?;
            self.check_password(&user, password).await?;
            session.factors.password = Some(now);
            changes.push(Change::PasswordChecked);
        }
        if let Some(code) = &checks.totp {
            let user = self.session_user(session, "totp").await?;
            self.check_totp(&user, code, now).await?;
            session.factors.totp = Some(now);
            changes.push(Change::TotpChecked);
        }
        Ok(())
    }

    /// The session's user, freshly read, for a factor check that needs one.
    async fn session_user(&self, session: &Session, check: &str) -> Result<User> {
        let id = session.user_id().ok_or_else(|| {
            Error::failed_precondition(
                "SESSION-UserMissing",
                format!("the {check} check needs a user: check the user first"),
            )
        })?;
        self.store.user_by_id(id).await?.ok_or_else(|| user_not_found(id))
    }

    async fn check_password(&self, user: &User, password: &str) -> Result<()> {
        if user.locked {
            return Err(Error::failed_precondition(
                "USER-Locked",
                "the user is locked after too many failed password checks",
            )
            .with_credentials(user.failed_attempts));
        }
        ensure_active(user)?;
        let phc = user
            .password_hash
            .clone()
            .ok_or_else(|| Error::failed_precondition("USER-NoPassword", "the user has no password"))?;
        if self.hasher.verify(password.to_owned(), phc).await? {
            if user.failed_attempts > 0 {
                self.store.reset_password_failures(&user.id).await?;
            }
            return Ok(());
        }
        let (failed_attempts, locked) = self.store.record_password_failure(&user.id, self.max_failed_attempts).await?;
        let error = if locked {
            Error::failed_precondition("USER-Locked", "the password is invalid; the user is now locked")
        } else {
            Error::invalid_argument("USER-PasswordInvalid", "the password is invalid")
        };
        Err(error.with_credentials(failed_attempts))
    }

    async fn check_totp(&self, user: &User, code: &str, now: Timestamp) -> Result<()> {
        ensure_active(user)?;
        let secret = self.secrets.open_totp(user)?;
        let now_step = totp::step_at(now.micros().div_euclid(1_000_000));
        let step = totp::matching_step(secret.expose(), code, now_step)
            .ok_or_else(|| Error::invalid_argument("USER-TotpInvalid", "the TOTP code is invalid"))?;
        if !self.store.consume_totp_step(&user.id, step).await? {
            return Err(Error::invalid_argument("USER-TotpReused", "the TOTP code was already used"));
        }
        Ok(())
    }
}

fn ensure_active(user: &User) -> Result<()> {
    if user.state != UserState::Active {
        return Err(Error::failed_precondition("USER-Inactive", "the user is not active"));
    }
    if user.locked {
        return Err(Error::failed_precondition("USER-Locked", "the user is locked"));
    }
    Ok(())
}

fn apply_metadata(session: &mut Session, metadata: BTreeMap<String, Vec<u8>>, changes: &mut Vec<Change>) {
    for (key, value) in metadata {
        if value.is_empty() {
            if session.metadata.remove(&key).is_some() {
                changes.push(Change::MetadataRemoved { key });
            }
        } else if session.metadata.get(&key) != Some(&value) {
            session.metadata.insert(key.clone(), value);
            changes.push(Change::MetadataSet { key });
        }
    }
}

fn apply_lifetime(session: &mut Session, lifetime: Duration, now: Timestamp, changes: &mut Vec<Change>) {
    let expiration_date = now.plus(lifetime);
    session.expiration_date = Some(expiration_date);
    changes.push(Change::LifetimeSet { expiration_date });
}

pub(crate) fn session_not_found(id: &str) -> Error {
    Error::not_found("SESSION-NotFound", format!("session `{}` does not exist", truncate(id, 64)))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

pub fn validate_session_id(id: &str) -> Result<()> {
    let len = id.chars().count();
    if len == 0 || len > MAX_SESSION_ID_LEN {
        return Err(Error::invalid_argument("SESSION-InvalidId", "session_id must be 1 to 200 characters"));
    }
    Ok(())
}

fn validate_lifetime(lifetime: Option<Duration>) -> Result<()> {
    if lifetime.is_some_and(|d| d.is_zero()) {
        return Err(Error::invalid_argument("SESSION-InvalidLifetime", "lifetime must be positive"));
    }
    Ok(())
}

fn validate_metadata_keys(metadata: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    if metadata.keys().any(|k| k.is_empty() || k.len() > 200) {
        return Err(Error::invalid_argument("SESSION-InvalidMetadata", "metadata keys must be 1 to 200 bytes"));
    }
    Ok(())
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => Error::new(
                ErrorClass::Aborted,
                "SESSION-Conflict",
                "the session was changed concurrently; retry the call",
            ),
            StoreError::AlreadyExists(what) => Error::new(ErrorClass::AlreadyExists, "STORE-AlreadyExists", what),
            StoreError::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "store unavailable");
                Error::new(
                    ErrorClass::Unavailable,
                    "STORE-Unavailable",
                    "the session store is unavailable; retry later",
                )
            }
            StoreError::Internal(cause) => Error::internal(cause),
        }
    }
}

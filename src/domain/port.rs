//! The store's port, owned by the domain: the one trait every backend implements, over the
//! domain's plain records, and the errors a backend may answer. The domain depends on this port
//! only; the backends (`crate::store`) depend on the domain, never the reverse.

use std::fmt;

use async_trait::async_trait;

use super::{
    Caller, Timestamp,
    keyring::SealedSecret,
    otp::OtpMethod,
    passkey::PasskeyStore,
    secrets::{ClearTotpSecret, KeyCheck},
    session::{Change, HistoryEntry, Session, SessionQuery, UserCheck},
    user::{ApiTokenRecord, Claim, LockoutCounter, TokenHolder, TotpEnrolment, User, UserState},
};

/// What can go wrong in a store, in terms the domain can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// An optimistic write lost: the row changed since it was read.
    #[error("concurrent update")]
    Conflict,
    /// A unique key is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The database cannot be reached (or timed out); the call may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or corrupted data.
    #[error("store failure: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The sessions a list call may see.
#[derive(Debug, Clone)]
pub struct SessionFilter {
    pub queries: Vec<SessionQuery>,
    /// `Some(user)`: only sessions whose checked user is this one.
    pub visible_to_user: Option<String>,
    /// Only sessions neither terminated nor expired at this time.
    pub live_at: Timestamp,
    pub offset: u64,
    pub limit: u32,
    pub ascending: bool,
}

/// Decides, from the session as stored, whether it may be terminated (the domain's authorisation).
pub type TerminationCheck = Box<dyn FnOnce(&Session) -> Result<(), super::Error> + Send>;

/// An API token's row and its user, as the store read them (`None`: no such token).
pub type TokenRow = Option<(ApiTokenRecord, TokenHolder)>;

/// Authenticates the caller from the token row the job read, and decides how it may terminate
/// (the caller is the termination's actor).
pub type AuthorizedTermination = Box<dyn FnOnce(TokenRow) -> Result<(Caller, TerminationCheck), super::Error> + Send>;

/// Builds a new session from the token row and the checked user (`None`: none by that name, or
/// no check) the job read: the session and its first history entry, or the refusal.
pub type SessionBuild = Box<dyn FnOnce(TokenRow, Option<User>) -> Result<(Session, HistoryEntry), super::Error> + Send>;

/// What `Store::terminate_session` did.
#[derive(Debug)]
pub enum Termination {
    /// No session has this id.
    NotFound,
    /// The check refused; nothing was written.
    Refused(super::Error),
    /// It was terminated before; nothing was written.
    AlreadyTerminated(Session),
    /// Terminated now: the session as written.
    Terminated(Session),
}

/// What a termination does with the session as read: write, or answer at once.
#[derive(Debug)]
pub enum TerminationStep {
    /// Terminate this session (as read).
    Write(Session),
    /// Nothing to write: this is the answer.
    Answer(Termination),
}

/// The decision every backend makes on the session it read (none: not found), in this order:
/// not found, then the check, then whether it is terminated already.
pub fn termination_step(current: Option<Session>, check: TerminationCheck) -> TerminationStep {
    let Some(current) = current else { return TerminationStep::Answer(Termination::NotFound) };
    if let Err(refusal) = check(&current) {
        return TerminationStep::Answer(Termination::Refused(refusal));
    }
    if current.terminated_at.is_some() {
        return TerminationStep::Answer(Termination::AlreadyTerminated(current));
    }
    TerminationStep::Write(current)
}

/// `current` terminated at `at`, with the history entry that records it.
pub fn terminated(current: &Session, at: Timestamp, actor: &str) -> (Session, HistoryEntry) {
    let mut next = current.clone();
    next.sequence = current.sequence + 1;
    next.change_date = at;
    next.terminated_at = Some(at);
    let entry = HistoryEntry {
        session_id: next.id.clone(),
        sequence: next.sequence,
        at,
        actor: actor.to_owned(),
        changes: vec![Change::Terminated],
    };
    (next, entry)
}

/// What a backend tells of itself for metrics, read at scrape time (cheap, no I/O to the database).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// SQLite: the write-ahead log's size in bytes.
    pub wal_bytes: Option<u64>,
    /// SQLite: checkpoint passes so far.
    pub checkpoints: Option<u64>,
    /// PostgreSQL: the connection pool.
    pub pool: Option<PoolStats>,
}

/// A connection pool's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open, idle or in use.
    pub size: u32,
    pub idle: u32,
    /// The pool's limit.
    pub max: u32,
    /// Store calls waiting for a connection.
    pub waiting: u64,
}

/// Every store keeps passkeys too (`passkey::PasskeyStore`, a part of its own).
#[async_trait]
pub trait Store: PasskeyStore + Send + Sync + fmt::Debug + 'static {
    /// A trivial query, for the readiness probe: `Ok` when the database answers (callers bound
    /// the wait).
    async fn ping(&self) -> StoreResult<()>;
    /// What the backend tells of itself for metrics; nothing by default.
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }

    // users
    async fn insert_user(&self, user: &User) -> StoreResult<()>;
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>>;
    async fn user_by_login_name(&self, login_name: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    // Administrative changes write only their own columns; `false` when no such user exists.
    async fn set_user_state(&self, id: &str, state: UserState) -> StoreResult<bool>;
    /// A new password hash; the password counter and its lock start over.
    async fn set_password_hash(&self, id: &str, hash: &str) -> StoreResult<bool>;
    /// Both lockout counters and both locks cleared.
    async fn unlock_user(&self, id: &str) -> StoreResult<bool>;
    async fn set_totp(&self, id: &str, enrolment: &TotpEnrolment) -> StoreResult<bool>;
    /// Sets (or clears) where codes of `method` go: the phone for SMS, the email address for email.
    /// Clearing it disables the method.
    async fn set_contact(&self, id: &str, method: OtpMethod, value: Option<&str>) -> StoreResult<bool>;
    /// Enables one-time codes of `method`; `false` when no such user exists or it has nowhere to
    /// send them (no phone, no email).
    async fn enable_otp(&self, id: &str, method: OtpMethod) -> StoreResult<bool>;
    /// Claims one attempt on `counter` before a credential is verified, in one conditional write:
    /// admitted only while the user is locked by neither counter and `counter` is below `max`; the
    /// claim that reaches `max` locks the user. A claim counts as a failure until
    /// `clear_attempts` settles it as a success, so concurrent checks can never verify more than
    /// `max` wrong credentials between two unlocks. `None` when no such user exists.
    async fn claim_attempt(&self, user_id: &str, counter: LockoutCounter, max: i32) -> StoreResult<Option<Claim>>;
    /// A verified success: `counter` starts over and the lock a claim of it may have set is lifted.
    async fn clear_attempts(&self, user_id: &str, counter: LockoutCounter) -> StoreResult<()>;
    /// Marks a TOTP time step used; `false` when it (or a later one) already was (a replay). Atomic.
    async fn consume_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool>;

    // secrets at rest: sealed bytes only, the store never holds a key
    /// Every key's verifier: one per key id that has sealed anything into this database.
    async fn key_checks(&self) -> StoreResult<Vec<KeyCheck>>;
    /// Records a key's verifier unless one with its id is recorded already (that one stays).
    async fn insert_key_check(&self, check: &KeyCheck) -> StoreResult<()>;
    /// `false` when none was recorded.
    async fn remove_key_check(&self, key_id: &str) -> StoreResult<bool>;
    /// The TOTP seeds a version before sealing kept in clear.
    async fn clear_totp_secrets(&self) -> StoreResult<Vec<ClearTotpSecret>>;
    /// Stores the sealed form of a clear seed and removes the clear copy; `false` when the user's
    /// row no longer holds `clear`.
    async fn seal_clear_totp_secret(&self, user_id: &str, clear: &[u8], sealed: &SealedSecret) -> StoreResult<bool>;
    /// Replaces a sealed seed by `new`; `false` when the user's row no longer holds `old`.
    async fn reseal_totp_secret(&self, user_id: &str, old: &SealedSecret, new: &SealedSecret) -> StoreResult<bool>;

    // API tokens
    async fn insert_api_token(&self, token: &ApiTokenRecord) -> StoreResult<()>;
    /// The token and its user, read together.
    async fn api_token(&self, id: &str) -> StoreResult<Option<(ApiTokenRecord, TokenHolder)>>;
    async fn list_api_tokens(&self, user_id: Option<&str>) -> StoreResult<Vec<ApiTokenRecord>>;
    /// `false` when no such token exists.
    async fn revoke_api_token(&self, id: &str, at: Timestamp) -> StoreResult<bool>;

    // sessions
    async fn session(&self, id: &str) -> StoreResult<Option<Session>>;
    /// Inserts a new session and its first history entry in one transaction.
    async fn create_session(&self, session: &Session, entry: &HistoryEntry) -> StoreResult<()>;
    /// Replaces `current`, as read from the store, with `next` and appends `entry`, in one
    /// transaction; `Conflict` if the stored sequence is no longer `current.sequence` (or the
    /// session is gone).
    async fn update_session(&self, current: &Session, next: &Session, entry: &HistoryEntry) -> StoreResult<()>;
    /// Terminates a session in one step: reads it, asks `check`, and unless refused or already
    /// terminated writes the termination at `at` and its history entry by `actor`. This default
    /// reads and writes separately: `Conflict` if the session changed in between (retry).
    /// Backends that can run all of it in one transaction do.
    async fn terminate_session(
        &self,
        id: &str,
        at: Timestamp,
        actor: &str,
        check: TerminationCheck,
    ) -> StoreResult<Termination> {
        let current = match termination_step(self.session(id).await?, check) {
            TerminationStep::Write(current) => current,
            TerminationStep::Answer(answer) => return Ok(answer),
        };
        let (next, entry) = terminated(&current, at, actor);
        self.update_session(&current, &next, &entry).await?;
        Ok(Termination::Terminated(next))
    }
    /// The token `token_id` (with its user) and the session `id`, read together: in one job, or
    /// one statement.
    async fn token_and_session(&self, token_id: &str, id: &str) -> StoreResult<(TokenRow, Option<Session>)>;
    /// `terminate_session` on behalf of an API token, in one step with its authentication: the
    /// token row is read and `decide` asked before the session is; a refused token is answered
    /// `Refused` and nothing is read or written further. A backend that cannot run the decision
    /// between its read and its write re-checks the token in the write (`Conflict` if it no
    /// longer holds).
    async fn terminate_session_as(
        &self,
        token_id: &str,
        id: &str,
        at: Timestamp,
        decide: AuthorizedTermination,
    ) -> StoreResult<Termination>;
    /// Creates a session on behalf of an API token, in one step with its authentication and the
    /// user check: the token row and the user `user` names are read, `build` decides, and unless
    /// it refuses the session and its first history entry are inserted. Nothing is written for a
    /// refusal, nor when the token no longer holds at the write (revoked, expired or its user
    /// disabled meanwhile: refused as `invalid_token`).
    async fn create_session_as(
        &self,
        token_id: &str,
        user: Option<&UserCheck>,
        at: Timestamp,
        build: SessionBuild,
    ) -> StoreResult<Result<Session, super::Error>>;
    /// One page of matching sessions, and the number of all matches.
    async fn list_sessions(&self, filter: &SessionFilter) -> StoreResult<(u64, Vec<Session>)>;
    async fn session_history(&self, id: &str) -> StoreResult<Vec<HistoryEntry>>;
    /// Removes the live rows of up to `limit` sessions terminated or expired before `before`
    /// (their history stays), earliest ended first; returns how many. Bounded, so that one call
    /// never holds the database long.
    async fn sweep(&self, before: Timestamp, limit: u32) -> StoreResult<u64>;
    /// Removes up to `limit` history entries written before `before` (the history's retention),
    /// oldest first; returns how many. Bounded, so that one call never holds the database long.
    async fn sweep_history(&self, before: Timestamp, limit: u32) -> StoreResult<u64>;
    /// Finishes queued writes and releases the database; later calls answer `Unavailable`.
    async fn close(&self);
}

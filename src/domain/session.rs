//! Login sessions: creating them, running checks, changing metadata and lifetime, reading,
//! listing and terminating them. Every change bumps the sequence, rotates the token and appends
//! one history entry in the same store transaction as the state change.

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use super::port::{SessionFilter, Store, StoreError, Termination, TerminationCheck};
use super::{
    Caller, Error, ErrorClass, Permission, Result, Timestamp, authz,
    events::{CheckOutcome, Factor, LoginEvents, Unobserved},
    limits::{self, Limits},
    otp::{self, CodeSender, NoDelivery, OtpChallenges, OtpMethod},
    passkey::RelyingParty,
    password::PasswordHasher,
    secrets::Secrets,
    token::{Secret, SecretHash, new_session_id},
    totp,
    user::{Claim, LockoutCounter, User, UserState, user_not_found},
};

/// Page size when `limit` is 0, and the largest page a caller may ask for.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;
mod fused;
mod records;

pub use records::*;

/// How often a terminating call re-reads a session that a concurrent writer changed under it.
const CONFLICT_RETRIES: usize = 3;

/// How many failed credential checks lock a user, per counter (ZITADEL's `max_password_attempts`
/// and `max_otp_attempts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub max_password_attempts: i32,
    pub max_otp_attempts: i32,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self { max_password_attempts: 5, max_otp_attempts: 5 }
    }
}

impl LockoutPolicy {
    fn max(self, counter: LockoutCounter) -> i32 {
        match counter {
            LockoutCounter::Password => self.max_password_attempts,
            LockoutCounter::OneTimeCode => self.max_otp_attempts,
        }
    }
}

/// Sessions, over a store.
#[derive(Debug, Clone)]
pub struct Sessions {
    pub(super) store: Arc<dyn Store>,
    hasher: PasswordHasher,
    lockout: LockoutPolicy,
    limits: Limits,
    /// Opens the sealed TOTP seeds; seals the passkey challenges.
    pub(super) secrets: Secrets,
    /// Delivers one-time codes by SMS and email.
    pub(super) code_sender: Arc<dyn CodeSender>,
    /// How long a one-time code stays valid.
    pub(super) code_lifetime: Duration,
    /// The browser origins passkeys may be used from.
    pub(super) relying_party: RelyingParty,
    /// Who hears of factor checks and lockouts (the metrics).
    events: Arc<dyn LoginEvents>,
}

impl Sessions {
    pub fn new(store: Arc<dyn Store>, hasher: PasswordHasher, lockout: LockoutPolicy, secrets: Secrets) -> Self {
        Self {
            store,
            hasher,
            lockout,
            limits: Limits::default(),
            secrets,
            code_sender: Arc::new(NoDelivery),
            code_lifetime: otp::DEFAULT_CODE_LIFETIME,
            relying_party: RelyingParty::default(),
            events: Arc::new(Unobserved),
        }
    }

    /// The same, allowing passkeys from the relying party's origins.
    pub fn with_relying_party(self, relying_party: RelyingParty) -> Self {
        Self { relying_party, ..self }
    }

    /// The same, reporting factor checks and lockouts to `events`.
    pub fn with_events(self, events: Arc<dyn LoginEvents>) -> Self {
        Self { events, ..self }
    }

    /// `result` of a `factor` check, reported.
    pub(super) fn observed(&self, factor: Factor, result: Result<()>) -> Result<()> {
        self.events.checked(factor, CheckOutcome::of(&result));
        result
    }

    /// The same, delivering one-time codes through `sender`, valid for `lifetime`.
    pub fn with_code_delivery(self, sender: Arc<dyn CodeSender>, lifetime: Duration) -> Self {
        Self { code_sender: sender, code_lifetime: lifetime, ..self }
    }

    /// The same, holding requests to `limits` instead of the defaults.
    pub fn with_limits(self, limits: Limits) -> Self {
        Self { limits, ..self }
    }

    pub async fn create(&self, caller: &Caller, request: CreateSession) -> Result<Issued> {
        self.limits.check_create(&request)?;
        authz::may_create(caller)?;
        let now = Timestamp::now();
        let token = Secret::generate();
        let mut session = new_session(caller, token.hash(), request.user_agent, now);
        let mut changes = vec![Change::Created];
        let metadata = self.merge_metadata(&session.metadata, request.metadata)?;
        self.run_checks(&mut session, &request.checks, now, &mut changes).await?;
        metadata.apply(&mut session, &mut changes);
        if let Some(lifetime) = request.lifetime {
            apply_lifetime(&mut session, lifetime, now, &mut changes);
        }
        let issued = self.issue_challenges(&mut session, &request.challenges, now, &mut changes).await?;
        let entry = first_entry(&session, caller, changes);
        self.store.create_session(&session, &entry).await?;
        let codes = issued.deliver();
        Ok(Issued { session_id: session.id.clone(), details: session.details(), token: Some(token), codes })
    }

    pub async fn get(&self, caller: &Caller, session_id: &str, token: Option<&str>) -> Result<Session> {
        validate_session_id(session_id)?;
        readable(caller, session_id, self.store.session(session_id).await?, token, Timestamp::now())
    }

    pub async fn set(&self, caller: &Caller, request: SetSession) -> Result<Issued> {
        self.limits.check_set(&request)?;
        let current = self.load(&request.session_id).await?;
        authz::may_change(caller, &current, request.token.as_ref().map(Secret::expose))?;
        let now = Timestamp::now();
        if !current.is_live(now) {
            return Err(Error::failed_precondition("SESSION-Terminated", "the session is terminated or expired"));
        }
        let mut next = current.clone();
        let mut changes = Vec::new();
        let metadata = self.merge_metadata(&next.metadata, request.metadata)?;
        self.run_checks(&mut next, &request.checks, now, &mut changes).await?;
        metadata.apply(&mut next, &mut changes);
        if let Some(lifetime) = request.lifetime {
            apply_lifetime(&mut next, lifetime, now, &mut changes);
        }
        let issued = self.issue_challenges(&mut next, &request.challenges, now, &mut changes).await?;
        if changes.is_empty() {
            let (session_id, details) = (current.id.clone(), current.details());
            return Ok(Issued { session_id, details, token: None, codes: ReturnedCodes::default() });
        }
        let token = Secret::generate();
        next.token_hash = token.hash();
        changes.push(Change::TokenRotated);
        let written = self.commit(&current, next, now, caller, changes).await?;
        let codes = issued.deliver();
        Ok(Issued { session_id: written.id.clone(), details: written.details(), token: Some(token), codes })
    }

    pub async fn delete(&self, caller: &Caller, session_id: &str, token: Option<&str>) -> Result<Details> {
        validate_session_id(session_id)?;
        self.terminating(session_id, || {
            // The store reads, asks this check and writes in one step where it can.
            let (who, presented) = (caller.clone(), token.map(str::to_owned));
            let check: TerminationCheck =
                Box::new(move |current| authz::may_delete(&who, current, presented.as_deref()));
            self.store.terminate_session(session_id, Timestamp::now(), &caller.user_id, check)
        })
        .await
    }

    /// Runs `terminate` (one store step) until it does not conflict, a few times at most, and
    /// answers what it did.
    async fn terminating<F, Fut>(&self, session_id: &str, mut terminate: F) -> Result<Details>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<Termination, StoreError>>,
    {
        let mut attempt = 0;
        loop {
            match terminate().await {
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
        limits::check_list(&request)?;
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

    /// The session's metadata after a request's changes (an empty value removes its key), refused
    /// when the result would pass the per-session bounds. Merged before any check runs, so that a
    /// refused request leaves no trace (no TOTP code used up, no failed attempt counted).
    fn merge_metadata(
        &self,
        current: &BTreeMap<String, Vec<u8>>,
        request: BTreeMap<String, Vec<u8>>,
    ) -> Result<MetadataMerge> {
        let mut metadata = current.clone();
        let mut changes = Vec::new();
        for (key, value) in request {
            if value.is_empty() {
                if metadata.remove(&key).is_some() {
                    changes.push(Change::MetadataRemoved { key });
                }
            } else if metadata.get(&key) != Some(&value) {
                metadata.insert(key.clone(), value);
                changes.push(Change::MetadataSet { key });
            }
        }
        self.limits.check_metadata_total(current, &metadata)?;
        Ok(MetadataMerge { metadata, changes })
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
            let found = match check {
                UserCheck::ById(id) => self.store.user_by_id(id).await?,
                UserCheck::ByLoginName(name) => self.store.user_by_login_name(name).await?,
            };
            if found.is_none()
                && let Some(password) = &checks.password
            {
                // A password check for nobody takes as long as one for somebody: the answer's
                // timing must not tell which login names exist.
                self.hasher.slot().await?.verify_dummy(password.clone()).await?;
            }
            check_user(session, check, found, now, changes)?;
        }
        if let Some(password) = &checks.password {
            let user = self.session_user(session, "password").await?;
            self.observed(Factor::Password, self.check_password(&user, password).await)?;
            session.factors.password = Some(now);
            changes.push(Change::PasswordChecked);
        }
        if let Some(assertion) = &checks.web_auth_n {
            self.check_passkey(session, assertion, now, changes).await?;
        }
        if let Some(code) = &checks.totp {
            let user = self.session_user(session, "totp").await?;
            self.observed(Factor::Totp, self.check_totp(&user, code, now).await)?;
            session.factors.totp = Some(now);
            changes.push(Change::TotpChecked);
        }
        self.check_otps(session, checks, now, changes).await
    }

    /// The session's user, freshly read, for a factor check that needs one.
    pub(super) async fn session_user(&self, session: &Session, check: &str) -> Result<User> {
        let id = session.user_id().ok_or_else(|| {
            Error::failed_precondition(
                "SESSION-UserMissing",
                format!("the {check} check needs a user: check the user first"),
            )
        })?;
        self.store.user_by_id(id).await?.ok_or_else(|| user_not_found(id))
    }

    async fn check_password(&self, user: &User, password: &str) -> Result<()> {
        ensure_may_check(user, LockoutCounter::Password)?;
        // The slot first: a check shed for want of one has counted nothing against the user.
        let slot = self.hasher.slot().await?;
        let password = password.to_owned();
        let Some(phc) = user.password_hash.clone() else {
            slot.verify_dummy(password).await?;
            return Err(Error::failed_precondition("USER-NoPassword", "the user has no password"));
        };
        self.guarded(user, LockoutCounter::Password, async move {
            Ok(if slot.verify(password, phc).await? {
                Ok(())
            } else {
                Err(Error::invalid_argument("USER-PasswordInvalid", "the password is invalid"))
            })
        })
        .await
    }

    async fn check_totp(&self, user: &User, code: &str, now: Timestamp) -> Result<()> {
        ensure_may_check(user, LockoutCounter::OneTimeCode)?;
        let secret = self.secrets.open_totp(user)?;
        let now_step = totp::step_at(now.micros().div_euclid(1_000_000));
        let step = totp::matching_step(secret.expose(), code, now_step);
        drop(secret);
        let (store, user_id) = (Arc::clone(&self.store), user.id.clone());
        self.guarded(user, LockoutCounter::OneTimeCode, async move {
            let Some(step) = step else {
                return Ok(Err(Error::invalid_argument("USER-TotpInvalid", "the TOTP code is invalid")));
            };
            Ok(if store.consume_totp_step(&user_id, step).await? {
                Ok(())
            } else {
                Err(Error::invalid_argument("USER-TotpReused", "the TOTP code was already used"))
            })
        })
        .await
    }

    /// Runs one credential check under the user's lockout: claims an attempt on `counter` in the
    /// store (refused, before anything is verified, once the limit is reached), then runs `verify`,
    /// then settles: a success clears the counter, a failure leaves its claim counted. `verify`
    /// answers the verdict, or an error of its own (the claim then stays counted too).
    ///
    /// It runs as a task of its own, so that a caller who hangs up mid-check cannot leave a claim
    /// unsettled after a success.
    pub(super) async fn guarded(
        &self,
        user: &User,
        counter: LockoutCounter,
        verify: impl Future<Output = Result<Result<()>>> + Send + 'static,
    ) -> Result<()> {
        let (store, user_id, max) = (Arc::clone(&self.store), user.id.clone(), self.lockout.max(counter));
        let events = Arc::clone(&self.events);
        let check = tokio::spawn(
            async move {
                let attempt = match store.claim_attempt(&user_id, counter, max).await? {
                    None => return Err(user_not_found(&user_id)),
                    Some(Claim::Refused(failed_attempts)) => return Err(locked(failed_attempts)),
                    Some(Claim::Admitted(attempt)) => attempt,
                };
                let verdict = verify.await?;
                if verdict.is_err() && attempt >= max {
                    events.locked(counter);
                }
                match verdict {
                    Ok(()) => Ok(store.clear_attempts(&user_id, counter).await?),
                    // A wrong password carries the count (ZITADEL's `CredentialsCheckError`); the
                    // claim that reached the limit is still a wrong password, not a locked user.
                    Err(failure) if counter == LockoutCounter::Password => Err(failure.with_credentials(attempt)),
                    Err(failure) => Err(failure),
                }
            }
            .in_current_span(),
        );
        check.await.map_err(Error::internal)?
    }
}

/// The user check on `session` with the user it names as read (`None`: nobody by that id or
/// name): the user factor, or the refusal.
pub(super) fn check_user(
    session: &mut Session,
    check: &UserCheck,
    found: Option<User>,
    now: Timestamp,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let Some(user) = found else {
        return Err(match check {
            UserCheck::ById(id) => user_not_found(id),
            UserCheck::ByLoginName(name) => {
                Error::not_found("USER-NotFound", format!("no user with login name `{name}`"))
            }
        });
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
    Ok(())
}

/// Get's decision on the session as read (`None`: no such session): live and readable by the
/// caller, or refused.
fn readable(caller: &Caller, id: &str, found: Option<Session>, token: Option<&str>, now: Timestamp) -> Result<Session> {
    let session = found.filter(|s| s.is_live(now)).ok_or_else(|| session_not_found(id))?;
    authz::may_read(caller, &session, token)?;
    Ok(session)
}

/// A user check may pass: the user is active and not locked (a locked user's refusal carries the
/// failed attempts of the counter that locked it).
pub(super) fn ensure_active(user: &User) -> Result<()> {
    let counter = if user.locked { LockoutCounter::Password } else { LockoutCounter::OneTimeCode };
    ensure_may_check(user, counter)
}

/// A factor check may start: the user is active and not locked (a locked user's refusal carries
/// the counter's failed attempts).
pub(super) fn ensure_may_check(user: &User, counter: LockoutCounter) -> Result<()> {
    if user.state != UserState::Active {
        return Err(Error::failed_precondition("USER-Inactive", "the user is not active"));
    }
    if user.is_locked() {
        return Err(locked(user.lockout(counter).0));
    }
    Ok(())
}

fn locked(failed_attempts: i32) -> Error {
    Error::failed_precondition("USER-Locked", "the user is locked after too many failed checks")
        .with_credentials(failed_attempts)
}

/// A metadata change that passed the bounds, to apply once the checks passed.
struct MetadataMerge {
    metadata: BTreeMap<String, Vec<u8>>,
    changes: Vec<Change>,
}

impl MetadataMerge {
    fn apply(self, session: &mut Session, changes: &mut Vec<Change>) {
        session.metadata = self.metadata;
        changes.extend(self.changes);
    }
}

/// A new session of `caller`'s, before any check or change.
fn new_session(caller: &Caller, token_hash: SecretHash, user_agent: UserAgent, now: Timestamp) -> Session {
    Session {
        id: new_session_id(),
        resource_owner: caller.org_id.clone(),
        creator_id: caller.user_id.clone(),
        creation_date: now,
        change_date: now,
        sequence: 1,
        token_hash,
        factors: Factors::default(),
        metadata: BTreeMap::new(),
        user_agent,
        expiration_date: None,
        terminated_at: None,
        otp_challenges: OtpChallenges::default(),
        passkey_challenge: None,
    }
}

/// A new session's first history entry, by its creator.
fn first_entry(session: &Session, caller: &Caller, changes: Vec<Change>) -> HistoryEntry {
    HistoryEntry {
        session_id: session.id.clone(),
        sequence: 1,
        at: session.creation_date,
        actor: caller.user_id.clone(),
        changes,
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
    limits::check_session_id(id)
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
                tracing::warn!(cause = %super::error::bounded(&cause), "store unavailable");
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

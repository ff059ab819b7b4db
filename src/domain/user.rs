//! Users and their API tokens: creation, state changes, and turning a presented bearer token
//! into a `Caller`.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::port::Store;
use super::{
    Caller, Error, Permission, Permissions, Result, Timestamp,
    keyring::{Purpose, SealedSecret},
    otp::OtpMethod,
    passkey::PasskeyRecord,
    password::PasswordHasher,
    secrets::Secrets,
    token::{ApiToken, SecretHash, new_id},
    totp,
};

/// Whether a user may sign in at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserState {
    Active,
    Inactive,
}

impl UserState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }
}

/// A TOTP enrolment: the shared secret, sealed for this user (`Secrets::open_totp` opens it), and
/// the last time step a code was accepted for (no replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpEnrolment {
    pub sealed: SealedSecret,
    pub last_used_step: Option<i64>,
}

/// A user as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub login_name: String,
    pub display_name: String,
    pub org_id: String,
    pub state: UserState,
    /// argon2id PHC string; `None` when the user has no password.
    pub password_hash: Option<String>,
    /// Password checks claimed since the last success (each counts as failed until it passes).
    pub failed_attempts: i32,
    /// Set once `failed_attempts` reached the limit; cleared by `users unlock`.
    pub locked: bool,
    /// One-time-code checks (TOTP) claimed since the last success: a counter of their own.
    pub otp_failed_attempts: i32,
    /// Set once `otp_failed_attempts` reached its limit; cleared by `users unlock`.
    pub otp_locked: bool,
    pub totp: Option<TotpEnrolment>,
    pub created_at: Timestamp,
    /// The verified email address one-time codes by email go to.
    pub email: Option<String>,
    /// The verified phone number one-time codes by SMS go to.
    pub phone: Option<String>,
    /// One-time codes by email are enabled (`users add-otp-email`).
    pub otp_email: bool,
    /// One-time codes by SMS are enabled (`users add-otp-sms`).
    pub otp_sms: bool,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("login_name", &self.login_name)
            .field("org_id", &self.org_id)
            .field("state", &self.state)
            .field("locked", &self.locked)
            .field("otp_locked", &self.otp_locked)
            .finish_non_exhaustive()
    }
}

impl User {
    /// Locked by either counter: no factor check and no user check passes until `users unlock`.
    pub fn is_locked(&self) -> bool {
        self.locked || self.otp_locked
    }

    /// The state of one lockout counter.
    pub fn lockout(&self, counter: LockoutCounter) -> (i32, bool) {
        match counter {
            LockoutCounter::Password => (self.failed_attempts, self.locked),
            LockoutCounter::OneTimeCode => (self.otp_failed_attempts, self.otp_locked),
        }
    }
}

/// Which failed-attempt counter a credential check counts on (ZITADEL's `max_password_attempts`
/// and `max_otp_attempts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockoutCounter {
    Password,
    /// TOTP, and every later one-time code.
    OneTimeCode,
}

/// The store's answer to a claim on a lockout counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The check may run; this is its attempt number (the counter after the claim).
    Admitted(i32),
    /// The user is locked, or concurrent claims reached the limit: nothing may be verified.
    Refused(i32),
}

/// An API token as stored: only the hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: String,
    pub user_id: String,
    pub secret_hash: SecretHash,
    pub permissions: Permissions,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// What `users add` needs.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub login_name: String,
    pub display_name: Option<String>,
    pub org_id: Option<String>,
    pub password: Option<String>,
    /// A verified email address (one-time codes by email go there).
    pub email: Option<String>,
    /// A verified phone number (one-time codes by SMS go there).
    pub phone: Option<String>,
}

/// The organization a user belongs to when none is given.
pub const DEFAULT_ORG: &str = "default";

/// User and token administration, and authentication of API tokens.
#[derive(Debug, Clone)]
pub struct Users {
    store: Arc<dyn Store>,
    hasher: PasswordHasher,
    /// Needed only to enrol TOTP; the commands that never seal anything run without a key.
    secrets: Option<Secrets>,
}

impl Users {
    pub fn new(store: Arc<dyn Store>, hasher: PasswordHasher) -> Self {
        Self { store, hasher, secrets: None }
    }

    /// With the keyring that seals TOTP seeds.
    pub fn with_secrets(self, secrets: Secrets) -> Self {
        Self { secrets: Some(secrets), ..self }
    }

    /// Resolves a presented bearer token to its caller (`invalid_token` when it names none).
    pub async fn authenticate(&self, presented: &str) -> Result<Caller> {
        let token = ApiToken::parse(presented).ok_or_else(invalid_token)?;
        authenticate_token(self.store.as_ref(), &token).await
    }

    /// The caller for a user an outside issuer vouched for (a verified OIDC access token): the
    /// user must exist and be active, as for API tokens; the permissions are the token's.
    pub async fn authenticate_vouched(
        &self,
        user_id: &str,
        permissions: Permissions,
        token_id: String,
    ) -> Result<Caller> {
        match self.store.user_by_id(user_id).await? {
            Some(user) if user.state == UserState::Active => {
                Ok(Caller { user_id: user.id, org_id: user.org_id, token_id, permissions })
            }
            _ => Err(Error::unauthenticated("AUTH-UnknownUser", "the token's user is not an active sessiond user")),
        }
    }

    pub async fn add_user(&self, new: NewUser) -> Result<User> {
        for (method, value) in [(OtpMethod::Email, &new.email), (OtpMethod::Sms, &new.phone)] {
            value.as_deref().map_or(Ok(()), |v| check_contact(method, v))?;
        }
        let login_name = new.login_name.trim().to_owned();
        // Only what a user check may name later (see `limits`).
        super::limits::check_login_name(&login_name)?;
        let password_hash = match new.password {
            Some(password) => Some(self.hasher.hash(password).await?),
            None => None,
        };
        let user = User {
            id: new_id(),
            display_name: new.display_name.unwrap_or_else(|| login_name.clone()),
            login_name,
            org_id: new.org_id.unwrap_or_else(|| DEFAULT_ORG.to_owned()),
            state: UserState::Active,
            password_hash,
            failed_attempts: 0,
            locked: false,
            otp_failed_attempts: 0,
            otp_locked: false,
            email: new.email,
            phone: new.phone,
            otp_email: false,
            otp_sms: false,
            totp: None,
            created_at: Timestamp::now(),
        };
        self.store.insert_user(&user).await?;
        Ok(user)
    }

    pub async fn user(&self, id: &str) -> Result<User> {
        self.store.user_by_id(id).await?.ok_or_else(|| user_not_found(id))
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        Ok(self.store.list_users().await?)
    }

    // Each administrative change writes only the columns it means to change, so that it never
    // undoes what a concurrent call did to the others (a lock, a used TOTP step).

    pub async fn set_state(&self, id: &str, state: UserState) -> Result<()> {
        found(id, self.store.set_user_state(id, state).await?)
    }

    /// Sets a new password; the password counter starts over (a one-time-code lock stays).
    pub async fn set_password(&self, id: &str, password: String) -> Result<()> {
        let hash = self.hasher.hash(password).await?;
        found(id, self.store.set_password_hash(id, &hash).await?)
    }

    /// Clears both lockout counters and both locks.
    pub async fn unlock(&self, id: &str) -> Result<()> {
        found(id, self.store.unlock_user(id).await?)
    }

    /// Sets (or, with `None`, clears and disables) where the user's codes of `method` go: the
    /// phone number for SMS, the email address for email. The CLI's operator vouches that it is
    /// the user's, verified.
    pub async fn set_contact(&self, id: &str, method: OtpMethod, value: Option<String>) -> Result<()> {
        if let Some(value) = &value {
            check_contact(method, value)?;
        }
        found(id, self.store.set_contact(id, method, value.as_deref()).await?)
    }

    /// Enables one-time codes of `method` for the user, who needs a phone (SMS) or email first.
    pub async fn enable_otp(&self, id: &str, method: OtpMethod) -> Result<()> {
        if self.store.enable_otp(id, method).await? {
            return Ok(());
        }
        self.user(id).await?;
        let (id_, what, how) = match method {
            OtpMethod::Sms => ("USER-NoPhone", "a phone number", "users set-phone"),
            OtpMethod::Email => ("USER-NoEmail", "an email address", "users set-email"),
        };
        Err(Error::failed_precondition(id_, format!("the user has no {what}: set one first ({how})")))
    }

    /// The user's passkeys, oldest first.
    pub async fn passkeys(&self, id: &str) -> Result<Vec<PasskeyRecord>> {
        self.user(id).await?;
        Ok(self.store.passkeys_of_user(id).await?)
    }

    /// Removes one of the user's passkeys: it signs nobody in any more.
    pub async fn remove_passkey(&self, id: &str, passkey_id: &str) -> Result<()> {
        self.user(id).await?;
        if self.store.remove_passkey(id, passkey_id).await? {
            return Ok(());
        }
        Err(Error::not_found("PASSKEY-NotFound", format!("the user has no passkey `{passkey_id}`")))
    }

    /// Enrols a new TOTP secret (replacing any old one), sealed for this user, and returns the
    /// `otpauth://` URI: the only place the secret appears in clear.
    pub async fn add_totp(&self, id: &str, issuer: &str) -> Result<String> {
        let secrets = self.secrets.as_ref().ok_or_else(|| {
            Error::failed_precondition("SECRETS-NotLoaded", "enrolling TOTP needs the secrets key, and none is loaded")
        })?;
        let secret = Zeroizing::new(totp::generate_secret());
        let user = self.user(id).await?;
        let uri = totp::otpauth_uri(issuer, &user.login_name, &secret);
        let sealed = secrets.seal(Purpose::Totp, &user.id, &secret).await?;
        found(id, self.store.set_totp(id, &TotpEnrolment { sealed, last_used_step: None }).await?)?;
        Ok(uri)
    }

    /// Issues a token for `user_id`; the returned secret is shown once and never stored.
    pub async fn add_token(
        &self,
        user_id: &str,
        permissions: Permissions,
        expires_at: Option<Timestamp>,
    ) -> Result<(ApiTokenRecord, ApiToken)> {
        self.user(user_id).await?;
        let token = ApiToken::generate();
        let record = ApiTokenRecord {
            id: token.id.clone(),
            user_id: user_id.to_owned(),
            secret_hash: token.secret.hash(),
            permissions,
            expires_at,
            revoked_at: None,
            created_at: Timestamp::now(),
        };
        self.store.insert_api_token(&record).await?;
        Ok((record, token))
    }

    pub async fn list_tokens(&self, user_id: Option<&str>) -> Result<Vec<ApiTokenRecord>> {
        Ok(self.store.list_api_tokens(user_id).await?)
    }

    pub async fn revoke_token(&self, token_id: &str) -> Result<()> {
        if self.store.revoke_api_token(token_id, Timestamp::now()).await? {
            Ok(())
        } else {
            Err(Error::not_found("TOKEN-NotFound", format!("no token with id `{token_id}`")))
        }
    }
}

/// The caller `token` names, looked up in a store call of its own.
pub(crate) async fn authenticate_token(store: &dyn Store, token: &ApiToken) -> Result<Caller> {
    authenticated(token, store.api_token(&token.id).await?, Timestamp::now())
}

/// What authentication reads of a token's user, with the token: who it is, its organization and
/// whether it may act (nothing else of the user travels on every call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHolder {
    pub id: String,
    pub org_id: String,
    pub state: UserState,
}

/// The caller a presented token names, decided on its row and its user as the store read them
/// (`None`: no such token), wherever they were read: in a lookup of their own or in the job that
/// does the call's work. The secret is compared in constant time.
pub fn authenticated(token: &ApiToken, found: Option<(ApiTokenRecord, TokenHolder)>, now: Timestamp) -> Result<Caller> {
    let (record, user) = found.ok_or_else(invalid_token)?;
    let valid = record.secret_hash.matches(token.secret.expose())
        && record.revoked_at.is_none()
        && record.expires_at.is_none_or(|at| at > now)
        && user.state == UserState::Active;
    if !valid {
        return Err(invalid_token());
    }
    Ok(Caller { user_id: user.id, org_id: user.org_id, token_id: record.id, permissions: record.permissions })
}

/// Unknown, malformed, revoked and expired tokens, and tokens of inactive users, are all the same
/// UNAUTHENTICATED to the client.
pub fn invalid_token() -> Error {
    Error::unauthenticated("AUTH-InvalidToken", "the bearer token is invalid, expired or revoked")
}

/// A phone number in E.164 form (`+` and 8 to 15 digits), or an email address with one `@`,
/// at most 254 bytes, without spaces or control characters.
fn check_contact(method: OtpMethod, value: &str) -> Result<()> {
    let valid = match method {
        OtpMethod::Sms => value
            .strip_prefix('+')
            .is_some_and(|digits| (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())),
        OtpMethod::Email => {
            value.len() <= 254
                && value.split('@').count() == 2
                && value.split('@').all(|part| !part.is_empty())
                && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        }
    };
    if valid {
        return Ok(());
    }
    Err(match method {
        OtpMethod::Sms => {
            Error::invalid_argument("USER-InvalidPhone", "a phone number is + and 8 to 15 digits (E.164)")
        }
        OtpMethod::Email => {
            Error::invalid_argument("USER-InvalidEmail", "an email address is local@domain, at most 254 bytes")
        }
    })
}

/// `Ok` when a targeted write found its user.
fn found(id: &str, found: bool) -> Result<()> {
    if found { Ok(()) } else { Err(user_not_found(id)) }
}

pub(crate) fn user_not_found(id: &str) -> Error {
    Error::not_found("USER-NotFound", format!("no user `{id}`"))
}

/// Parses `session.read`-style names into a permission set.
pub fn parse_permissions<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Permissions, String> {
    names.into_iter().map(str::parse::<Permission>).collect()
}

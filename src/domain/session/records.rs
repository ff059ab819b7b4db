//! The plain records of sessions that the store's port speaks and the service converts: a
//! session, its factors and history, and the inputs and answers of the session operations.

use super::*;
pub use crate::domain::passkey_login::PasskeyChallenge;

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otp_sms: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otp_email: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_auth_n: Option<WebAuthnFactor>,
}

/// A passkey check: when it passed, and whether the authenticator verified the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebAuthnFactor {
    pub verified_at: Timestamp,
    pub user_verified: bool,
}

impl Factors {
    /// The factor a one-time-code method sets.
    pub fn otp_mut(&mut self, method: OtpMethod) -> &mut Option<Timestamp> {
        match method {
            OtpMethod::Sms => &mut self.otp_sms,
            OtpMethod::Email => &mut self.otp_email,
        }
    }
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
    /// One-time codes issued and not yet used (never shown to clients).
    pub otp_challenges: OtpChallenges,
    /// The passkey challenge issued and not yet answered (sealed).
    pub passkey_challenge: Option<PasskeyChallenge>,
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
    OtpChallenged { method: OtpMethod },
    OtpChecked { method: OtpMethod },
    PasskeyChallenged,
    PasskeyChecked { user_verified: bool },
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    pub otp_sms: Option<String>,
    pub otp_email: Option<String>,
    /// `checks.webAuthN.credentialAssertionData`: the browser's PublicKeyCredential as JSON.
    pub web_auth_n: Option<serde_json::Value>,
}

impl Checks {
    /// The one-time-code checks, by method.
    pub fn otp(&self) -> [(OtpMethod, Option<&String>); 2] {
        [(OtpMethod::Sms, self.otp_sms.as_ref()), (OtpMethod::Email, self.otp_email.as_ref())]
    }
}

impl std::fmt::Debug for Checks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("Checks")
            .field("user", &self.user)
            .field("password", &redacted(&self.password))
            .field("totp", &redacted(&self.totp))
            .field("otp_sms", &redacted(&self.otp_sms))
            .field("otp_email", &redacted(&self.otp_email))
            .field("web_auth_n", &self.web_auth_n.as_ref().map(|_| "<assertion>"))
            .finish()
    }
}

/// How a requested one-time code reaches the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpRequest {
    /// Return the code in the response (the UI delivers it) instead of sending it.
    pub return_code: bool,
    /// For email: the link template the UI asked for, passed on to the delivery.
    pub url_template: Option<String>,
}

/// The challenges a Create or Set call asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChallengeRequest {
    pub otp_sms: Option<OtpRequest>,
    pub otp_email: Option<OtpRequest>,
    pub web_auth_n: Option<PasskeyChallengeRequest>,
}

/// `challenges.webAuthN`: a passkey challenge for the RP ID `domain` (empty: the first
/// `--webauthn-origin`'s host). Passkeys always verify the user, whatever the request's
/// `user_verification_requirement` (webauthn-rs's passkey ceremonies require it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasskeyChallengeRequest {
    pub domain: String,
}

impl ChallengeRequest {
    pub fn otp(&self) -> [(OtpMethod, Option<&OtpRequest>); 2] {
        [(OtpMethod::Sms, self.otp_sms.as_ref()), (OtpMethod::Email, self.otp_email.as_ref())]
    }
}

/// Codes returned to the caller (`return_code`), by method.
#[derive(Debug, Clone, Default)]
pub struct ReturnedCodes {
    pub otp_sms: Option<Secret>,
    pub otp_email: Option<Secret>,
    /// The passkey challenge's PublicKeyCredentialRequestOptions, `{"publicKey": {...}}`.
    pub web_auth_n: Option<serde_json::Value>,
}

impl ReturnedCodes {
    pub(in crate::domain) fn slot(&mut self, method: OtpMethod) -> &mut Option<Secret> {
        match method {
            OtpMethod::Sms => &mut self.otp_sms,
            OtpMethod::Email => &mut self.otp_email,
        }
    }
}

/// What CreateSession asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateSession {
    pub checks: Checks,
    pub challenges: ChallengeRequest,
    pub metadata: BTreeMap<String, Vec<u8>>,
    pub user_agent: UserAgent,
    pub lifetime: Option<Duration>,
}

/// What SetSession asks for.
#[derive(Debug, Clone, Default)]
pub struct SetSession {
    pub session_id: String,
    /// The session token presented (redacted in `Debug`).
    pub token: Option<Secret>,
    pub checks: Checks,
    pub challenges: ChallengeRequest,
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
    /// One-time codes the caller asked to get back.
    pub codes: ReturnedCodes,
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

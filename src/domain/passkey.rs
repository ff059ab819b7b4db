//! Passkeys: WebAuthn discoverable credentials a user registers (RegisterPasskey, then
//! VerifyPasskeyRegistration) and later signs in with (`passkey_login`). webauthn-rs does the
//! WebAuthn work (COSE keys, attestation, signatures, counters); this module keeps its state:
//! the registration in flight, sealed in its own table and used once, and the registered
//! credentials, keyed by credential id.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyRegistration, RegisterPublicKeyCredential, Url, Uuid, Webauthn,
    WebauthnBuilder, WebauthnError,
};

use super::{
    Caller, Error, Permission, Result, Timestamp,
    keyring::{Purpose, SealedSecret},
    limits,
    port::{Store, StoreError, StoreResult},
    secrets::Secrets,
    session::Details,
    token::new_id,
    user::{User, UserState, user_not_found},
};

/// How long a registration (and a login challenge) may take by default: webauthn-rs's
/// authenticator timeout (5 minutes).
pub const DEFAULT_CEREMONY_LIFETIME: Duration = webauthn_rs::DEFAULT_AUTHENTICATOR_TIMEOUT;
/// Passkeys one user may hold: every login challenge for the user lists them all.
pub const MAX_PASSKEYS_PER_USER: usize = 32;
/// Registrations one user may have in flight; a new one beyond it replaces the oldest.
pub const MAX_PENDING_REGISTRATIONS: u32 = 8;
/// Largest browser answer (a PublicKeyCredential as JSON) accepted, in bytes; attestation
/// certificate chains are a few kilobytes.
pub const MAX_CREDENTIAL_JSON: usize = 64 * 1024;
/// Longest relying party id (a DNS name).
const MAX_DOMAIN_LEN: usize = 253;

/// A registered passkey, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    /// The credential id, base64url without padding: the key of the table.
    pub credential_id: String,
    pub user_id: String,
    /// The id RegisterPasskey handed out (what the user service and the CLI name it by).
    pub id: String,
    pub name: String,
    /// The relying party id it was registered for.
    pub rp_id: String,
    /// webauthn-rs's `Passkey` as JSON: the public key, the signature counter, backup flags.
    pub credential: String,
    /// The signature counter last seen (0 for authenticators that keep none).
    pub counter: i64,
    pub created_at: Timestamp,
}

/// A registration between RegisterPasskey and VerifyPasskeyRegistration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRegistration {
    pub passkey_id: String,
    pub user_id: String,
    pub rp_id: String,
    /// webauthn-rs's `PasskeyRegistration`, sealed for the passkey id.
    pub state: SealedSecret,
    pub expires_at: Timestamp,
}

/// The store's passkey part (`Store` includes it).
#[async_trait]
pub trait PasskeyStore: Send + Sync {
    /// Records a registration in flight; in the same transaction removes the expired ones (at
    /// `now`) and the user's oldest beyond `keep`.
    async fn insert_passkey_registration(
        &self,
        pending: &PendingRegistration,
        now: Timestamp,
        keep: u32,
    ) -> StoreResult<()>;
    /// Removes and returns the user's registration `passkey_id`, in one statement: of two
    /// concurrent calls, one gets it.
    async fn take_passkey_registration(
        &self,
        user_id: &str,
        passkey_id: &str,
    ) -> StoreResult<Option<PendingRegistration>>;
    /// `AlreadyExists` when the credential id is registered already.
    async fn insert_passkey(&self, passkey: &PasskeyRecord) -> StoreResult<()>;
    /// The user's passkeys, oldest first.
    async fn passkeys_of_user(&self, user_id: &str) -> StoreResult<Vec<PasskeyRecord>>;
    async fn passkey_by_credential(&self, credential_id: &str) -> StoreResult<Option<PasskeyRecord>>;
    /// Records a use: the new counter and credential, only while the stored counter is still
    /// `seen_counter` (a conditional write); `false` when a concurrent use got there first or the
    /// passkey is gone.
    async fn record_passkey_use(
        &self,
        credential_id: &str,
        seen_counter: i64,
        counter: i64,
        credential: &str,
    ) -> StoreResult<bool>;
    /// `false` when the user has no such passkey.
    async fn remove_passkey(&self, user_id: &str, passkey_id: &str) -> StoreResult<bool>;
}

/// The relying party: the browser origins passkeys may be used from (`--webauthn-origin`). The
/// RP ID of a ceremony is the domain a request names, and only the origins on that domain (or
/// below it) are allowed for it.
#[derive(Debug, Clone)]
pub struct RelyingParty {
    origins: Vec<Url>,
    /// How long a registration or a login challenge stays valid.
    pub(super) lifetime: Duration,
}

impl Default for RelyingParty {
    fn default() -> Self {
        Self { origins: Vec::new(), lifetime: DEFAULT_CEREMONY_LIFETIME }
    }
}

impl RelyingParty {
    /// Checks each origin: `https://host[:port]` (or `http://localhost[:port]` and its subdomains,
    /// which browsers treat as secure), naming a domain, with no path.
    pub fn new(origins: &[String]) -> anyhow::Result<Self> {
        let origins = origins
            .iter()
            .map(|origin| {
                let url = Url::parse(origin).map_err(|e| anyhow::anyhow!("--webauthn-origin `{origin}`: {e}"))?;
                let local = url.domain().is_some_and(|d| d == "localhost" || d.ends_with(".localhost"));
                let secure = url.scheme() == "https" || (url.scheme() == "http" && local);
                anyhow::ensure!(
                    secure && url.domain().is_some() && matches!(url.path(), "" | "/") && url.query().is_none(),
                    "--webauthn-origin `{origin}` must be https://DOMAIN[:PORT] (or http://localhost[:PORT])"
                );
                Ok(url)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { origins, lifetime: DEFAULT_CEREMONY_LIFETIME })
    }

    /// The same, with registrations and login challenges valid for `lifetime`.
    pub fn with_lifetime(self, lifetime: Duration) -> Self {
        Self { lifetime, ..self }
    }

    /// The RP ID a request's `domain` names (empty: the first origin's host) and the WebAuthn
    /// instance that checks ceremonies for it. `field` names the request field in messages.
    pub(super) fn for_domain(&self, domain: &str, field: &str, invalid_id: &'static str) -> Result<(String, Webauthn)> {
        let first = self.origins.first().ok_or_else(|| {
            Error::failed_precondition(
                "WEBAUTHN-NotConfigured",
                "passkeys need the browser origins they are used from: configure --webauthn-origin",
            )
        })?;
        check_domain(domain, field, invalid_id)?;
        let rp_id = if domain.is_empty() { first.domain().unwrap_or_default().to_owned() } else { domain.to_owned() };
        let mut on_domain = self
            .origins
            .iter()
            .filter(|o| o.domain().is_some_and(|host| host == rp_id || host.ends_with(&format!(".{rp_id}"))));
        let not_allowed = || {
            Error::failed_precondition(
                "WEBAUTHN-DomainNotAllowed",
                format!("no --webauthn-origin is on the domain `{rp_id}`"),
            )
        };
        let first = on_domain.next().ok_or_else(not_allowed)?;
        let mut builder = WebauthnBuilder::new(&rp_id, first).map_err(|_| not_allowed())?.timeout(self.lifetime);
        for origin in on_domain {
            builder = builder.append_allowed_origin(origin);
        }
        let webauthn = builder.build().map_err(Error::internal)?;
        Ok((rp_id, webauthn))
    }
}

/// A request's `domain`: empty (the first origin's host), or a lowercase DNS name of at most 253
/// characters. Checked with the request's other fields, before anything is looked up.
pub fn check_domain(domain: &str, field: &str, invalid_id: &'static str) -> Result<()> {
    let valid = domain.len() <= MAX_DOMAIN_LEN
        && !domain.starts_with(['.', '-'])
        && !domain.ends_with('.')
        && domain.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if valid {
        return Ok(());
    }
    Err(Error::invalid_argument(
        invalid_id,
        format!("{field} must be a lowercase DNS name of at most {MAX_DOMAIN_LEN} characters"),
    ))
}

/// The WebAuthn user handle of a user: webauthn-rs names users by UUID. sessiond's ids are 128
/// random bits in hex, which are one; any other id maps to a hash of it.
pub fn user_handle(user_id: &str) -> Uuid {
    Uuid::try_parse(user_id).unwrap_or_else(|_| {
        let digest = Sha256::digest(user_id.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Uuid::from_bytes(bytes)
    })
}

/// Which authenticators a registration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Attachment {
    #[default]
    Any,
    Platform,
    CrossPlatform,
}

/// What RegisterPasskey asks for.
#[derive(Debug, Clone, Default)]
pub struct RegisterPasskey {
    pub user_id: String,
    pub domain: String,
    pub attachment: Attachment,
    /// A registration code came with the request (not supported).
    pub with_code: bool,
}

/// RegisterPasskey's answer.
#[derive(Debug, Clone)]
pub struct Registration {
    pub details: Details,
    pub passkey_id: String,
    /// PublicKeyCredentialCreationOptions, `{"publicKey": {...}}`.
    pub options: Value,
}

/// What VerifyPasskeyRegistration asks for.
#[derive(Debug, Clone)]
pub struct VerifyPasskey {
    pub user_id: String,
    pub passkey_id: String,
    /// The browser's PublicKeyCredential as JSON.
    pub credential: Value,
    pub name: String,
}

/// Passkey registration, over a store.
#[derive(Debug, Clone)]
pub struct Passkeys {
    store: Arc<dyn Store>,
    secrets: Secrets,
    rp: RelyingParty,
}

impl Passkeys {
    pub fn new(store: Arc<dyn Store>, secrets: Secrets, rp: RelyingParty) -> Self {
        Self { store, secrets, rp }
    }

    /// Starts a registration: the options for `navigator.credentials.create()`, asking for a
    /// discoverable credential with user verification, excluding the user's passkeys.
    pub async fn register(&self, caller: &Caller, request: RegisterPasskey) -> Result<Registration> {
        limits::check_required_text("user_id", &request.user_id, "USER-InvalidId")?;
        check_domain(&request.domain, "domain", "PASSKEY-InvalidDomain")?;
        if request.with_code {
            return Err(Error::unimplemented(
                "PASSKEY-CodeUnsupported",
                "registration codes are not supported: the user (or a user.write token) registers directly",
            ));
        }
        may_manage(caller, &request.user_id)?;
        let (rp_id, webauthn) = self.rp.for_domain(&request.domain, "domain", "PASSKEY-InvalidDomain")?;
        let user = self.active_user(&request.user_id).await?;
        let existing = self.store.passkeys_of_user(&user.id).await?;
        if existing.len() >= MAX_PASSKEYS_PER_USER {
            return Err(Error::failed_precondition(
                "PASSKEY-TooMany",
                format!("the user has {MAX_PASSKEYS_PER_USER} passkeys, the most one may hold: remove one first"),
            ));
        }
        let exclude =
            existing.iter().map(stored_passkey).map(|p| p.map(|p| p.cred_id().clone())).collect::<Result<_>>()?;
        let (challenge, state) = webauthn
            .start_passkey_registration(user_handle(&user.id), &user.login_name, &user.display_name, Some(exclude))
            .map_err(Error::internal)?;
        let options = creation_options(challenge, request.attachment)?;
        let now = Timestamp::now();
        let passkey_id = new_id();
        let state = serde_json::to_vec(&state).map_err(Error::internal)?;
        let pending = PendingRegistration {
            state: self.secrets.seal(Purpose::PasskeyRegistration, &passkey_id, &state).await?,
            passkey_id: passkey_id.clone(),
            user_id: user.id.clone(),
            rp_id,
            expires_at: now.plus(self.rp.lifetime),
        };
        self.store.insert_passkey_registration(&pending, now, MAX_PENDING_REGISTRATIONS).await?;
        Ok(Registration { details: user_details(&user, now), passkey_id, options })
    }

    /// Finishes a registration with the browser's answer. The registration is used up whatever
    /// the outcome (a second try starts over with RegisterPasskey), once the answer parsed.
    pub async fn verify(&self, caller: &Caller, request: VerifyPasskey) -> Result<Details> {
        limits::check_required_text("user_id", &request.user_id, "USER-InvalidId")?;
        limits::check_required_text("passkey_id", &request.passkey_id, "PASSKEY-InvalidId")?;
        limits::check_required_text("passkey_name", &request.name, "PASSKEY-InvalidName")?;
        let credential: RegisterPublicKeyCredential = parse_credential(request.credential, "public_key_credential")?;
        may_manage(caller, &request.user_id)?;
        let user = self.active_user(&request.user_id).await?;
        let pending = self.store.take_passkey_registration(&user.id, &request.passkey_id).await?.ok_or_else(|| {
            Error::not_found(
                "PASSKEY-RegistrationNotFound",
                format!("the user has no passkey registration `{}` in progress (or it was used)", request.passkey_id),
            )
        })?;
        let now = Timestamp::now();
        if pending.expires_at <= now {
            return Err(Error::failed_precondition(
                "PASSKEY-RegistrationExpired",
                "the passkey registration has expired: start again with RegisterPasskey",
            ));
        }
        let state = self.secrets.open(Purpose::PasskeyRegistration, &pending.passkey_id, &pending.state)?;
        let state: PasskeyRegistration = serde_json::from_slice(state.expose()).map_err(Error::internal)?;
        let (_, webauthn) = self.rp.for_domain(&pending.rp_id, "domain", "PASSKEY-InvalidDomain")?;
        let passkey = webauthn.finish_passkey_registration(&credential, &state).map_err(registration_refused)?;
        let record = PasskeyRecord {
            credential_id: credential_id_text(passkey.cred_id().as_ref()),
            user_id: user.id.clone(),
            id: pending.passkey_id,
            name: request.name,
            rp_id: pending.rp_id,
            counter: stored_counter(&passkey),
            credential: serde_json::to_string(&passkey).map_err(Error::internal)?,
            created_at: now,
        };
        match self.store.insert_passkey(&record).await {
            Err(StoreError::AlreadyExists(_)) => {
                Err(Error::failed_precondition("PASSKEY-AlreadyRegistered", "this credential is registered already"))
            }
            other => Ok(other?),
        }?;
        Ok(user_details(&user, now))
    }

    async fn active_user(&self, user_id: &str) -> Result<User> {
        let user = self.store.user_by_id(user_id).await?.ok_or_else(|| user_not_found(user_id))?;
        if user.state != UserState::Active {
            return Err(Error::failed_precondition("USER-Inactive", "the user is not active"));
        }
        Ok(user)
    }
}

/// The user themself, or a `user.write` holder.
pub fn may_manage(caller: &Caller, user_id: &str) -> Result<()> {
    if caller.user_id == user_id || caller.may(Permission::UserWrite) {
        return Ok(());
    }
    Err(Error::permission_denied(
        "USER-PermissionDenied",
        "only the user themself or a token with user.write may manage the user's passkeys",
    ))
}

/// `zitadel.object.v2.Details` of a change to a user (sessiond keeps no per-user sequence).
fn user_details(user: &User, now: Timestamp) -> Details {
    Details { sequence: 0, change_date: now, resource_owner: user.org_id.clone(), creation_date: user.created_at }
}

/// The creation options as sent: a discoverable credential, user verification required (as
/// ZITADEL asks), from the kind of authenticator the request names.
fn creation_options(challenge: CreationChallengeResponse, attachment: Attachment) -> Result<Value> {
    let mut options = serde_json::to_value(challenge).map_err(Error::internal)?;
    let selection = options
        .pointer_mut("/publicKey/authenticatorSelection")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Error::internal("webauthn-rs sent no authenticatorSelection"))?;
    selection.insert("residentKey".into(), "required".into());
    selection.insert("requireResidentKey".into(), true.into());
    selection.insert("userVerification".into(), "required".into());
    match attachment {
        Attachment::Any => selection.remove("authenticatorAttachment"),
        Attachment::Platform => selection.insert("authenticatorAttachment".into(), "platform".into()),
        Attachment::CrossPlatform => selection.insert("authenticatorAttachment".into(), "cross-platform".into()),
    };
    Ok(options)
}

/// A browser answer (RegisterPublicKeyCredential, PublicKeyCredential) from its JSON, bounded.
pub(super) fn parse_credential<T: serde::de::DeserializeOwned>(value: Value, field: &str) -> Result<T> {
    let invalid = |why: String| Error::invalid_argument("WEBAUTHN-InvalidCredential", format!("{field} {why}"));
    let size = serde_json::to_vec(&value).map_err(Error::internal)?.len();
    if size > MAX_CREDENTIAL_JSON {
        return Err(invalid(format!("is {size} bytes of JSON; at most {MAX_CREDENTIAL_JSON} are accepted")));
    }
    if value.as_object().is_none_or(serde_json::Map::is_empty) {
        return Err(invalid("is required: the browser's PublicKeyCredential as JSON".into()));
    }
    serde_json::from_value(value).map_err(|e| invalid(format!("is not a WebAuthn credential: {e}")))
}

/// A stored passkey as webauthn-rs reads it.
pub(super) fn stored_passkey(record: &PasskeyRecord) -> Result<Passkey> {
    serde_json::from_str(&record.credential)
        .map_err(|e| Error::internal(format_args!("passkey {} does not decode: {e}", record.id)))
}

/// The signature counter webauthn-rs keeps inside a passkey (it offers no getter).
pub(super) fn stored_counter(passkey: &Passkey) -> i64 {
    serde_json::to_value(passkey).ok().and_then(|v| v.pointer("/cred/counter").and_then(Value::as_i64)).unwrap_or(0)
}

/// A credential id as the table keys it: base64url without padding.
pub fn credential_id_text(id: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

fn registration_refused(e: WebauthnError) -> Error {
    Error::invalid_argument(
        "PASSKEY-RegistrationInvalid",
        format!("the passkey registration does not verify: {}", explain(&e)),
    )
}

/// webauthn-rs's reasons in a client's words, for the failures a client can cause.
pub(super) fn explain(e: &WebauthnError) -> String {
    match e {
        WebauthnError::MismatchedChallenge => "it answers another challenge".into(),
        WebauthnError::InvalidRPOrigin => "it comes from an origin that is not allowed (--webauthn-origin)".into(),
        WebauthnError::InvalidRPIDHash => "it was made for another RP ID than the requested domain".into(),
        WebauthnError::UserNotVerified => "the authenticator did not verify the user".into(),
        WebauthnError::UserNotPresent => "the authenticator did not see the user present".into(),
        WebauthnError::CredentialPossibleCompromise => {
            "the signature counter did not increase (a cloned authenticator, or a replay)".into()
        }
        WebauthnError::AuthenticationFailure => "the signature does not verify".into(),
        WebauthnError::InvalidClientDataType => "the client data is of the wrong type".into(),
        WebauthnError::CredentialNotFound => "the credential is not one of the passkeys this challenge allows".into(),
        WebauthnError::CredentialExcludedFromRequest => "the authenticator already holds a passkey of this user".into(),
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_secure_and_bare() {
        for good in
            ["https://login.example.com", "https://example.com:8443", "http://localhost:3000", "http://a.localhost"]
        {
            assert!(RelyingParty::new(&[good.into()]).is_ok(), "{good}");
        }
        for bad in
            ["http://example.com", "https://example.com/login", "https://10.0.0.1", "not a url", "https://a.b?x=1"]
        {
            assert!(RelyingParty::new(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_domain_takes_only_the_origins_on_it() {
        let rp = RelyingParty::new(&["https://login.example.com".into(), "https://other.test".into()]).unwrap();
        let (rp_id, webauthn) = rp.for_domain("", "domain", "X").unwrap();
        assert_eq!(rp_id, "login.example.com", "empty: the first origin's host");
        assert_eq!(webauthn.get_allowed_origins().len(), 1);
        let (rp_id, webauthn) = rp.for_domain("example.com", "domain", "X").unwrap();
        assert_eq!(
            (rp_id.as_str(), webauthn.get_allowed_origins()[0].as_str()),
            ("example.com", "https://login.example.com/")
        );
        assert_eq!(rp.for_domain("notexample.com", "domain", "X").unwrap_err().id, "WEBAUTHN-DomainNotAllowed");
        assert_eq!(rp.for_domain("Example.com", "domain", "X").unwrap_err().id, "X");
        assert_eq!(rp.for_domain(&"a".repeat(254), "domain", "X").unwrap_err().id, "X");
        let none = RelyingParty::default().for_domain("example.com", "domain", "X").unwrap_err();
        assert_eq!(none.id, "WEBAUTHN-NotConfigured");
    }

    #[test]
    fn user_handles_are_the_user_ids_or_their_hash() {
        let id = new_id();
        assert_eq!(user_handle(&id).simple().to_string(), id);
        assert_eq!(user_handle("alice"), user_handle("alice"));
        assert_ne!(user_handle("alice"), user_handle("bob"));
    }
}

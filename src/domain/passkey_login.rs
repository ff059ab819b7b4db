//! Passkey sign-in on a session: `challenges.webAuthN` issues a WebAuthn challenge (for the
//! session's user's passkeys, or, before any user is known, for whichever discoverable passkey the
//! browser offers), kept sealed in the session; `checks.webAuthN` verifies the browser's assertion
//! against it. The challenge is used up in the same conditional write (on the session's sequence)
//! that records the factor, so one assertion passes at most once; the passkey's signature counter
//! moves forward with a conditional write of its own.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, PasskeyAuthentication, PublicKeyCredential, WebauthnError,
};

use super::{
    Error, Result, Timestamp,
    keyring::{Purpose, SealedSecret},
    passkey::{credential_id_text, explain, parse_credential, stored_passkey, user_handle},
    session::{ChallengeRequest, Change, Session, Sessions, UserFactor, WebAuthnFactor, ensure_active},
    user::{User, user_not_found},
};

/// A passkey challenge as the session keeps it: webauthn-rs's state, sealed for the session.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyChallenge {
    /// The sealed `LoginState`, base64.
    state: String,
    pub expires_at: Timestamp,
}

impl fmt::Debug for PasskeyChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasskeyChallenge").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

/// What the sealed state holds: the RP ID the challenge is for, and webauthn-rs's state.
#[derive(Serialize, Deserialize)]
struct LoginState {
    rp_id: String,
    flow: Flow,
}

#[derive(Serialize, Deserialize)]
enum Flow {
    /// The session's user was known: the challenge lists their passkeys.
    User(PasskeyAuthentication),
    /// No user yet: the passkey the browser picks names its user.
    Discoverable(DiscoverableAuthentication),
}

const CHALLENGE_FIELD: &str = "challenges.webAuthN.domain";
const ASSERTION_FIELD: &str = "checks.webAuthN.credentialAssertionData";

impl Sessions {
    /// Issues the requested passkey challenge on `session` (replacing an open one); answers its
    /// PublicKeyCredentialRequestOptions.
    pub(super) async fn issue_passkey_challenge(
        &self,
        session: &mut Session,
        request: &ChallengeRequest,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) -> Result<Option<Value>> {
        let Some(wanted) = &request.web_auth_n else { return Ok(None) };
        let (rp_id, webauthn) =
            self.relying_party.for_domain(&wanted.domain, CHALLENGE_FIELD, "SESSION-InvalidChallenge")?;
        let (options, flow) = if session.user_id().is_some() {
            let user = self.session_user(session, "webAuthN").await?;
            ensure_active(&user)?;
            let passkeys = self
                .store
                .passkeys_of_user(&user.id)
                .await?
                .iter()
                .filter(|p| p.rp_id == rp_id)
                .map(stored_passkey)
                .collect::<Result<Vec<_>>>()?;
            if passkeys.is_empty() {
                return Err(Error::failed_precondition(
                    "USER-NoPasskey",
                    format!("the user has no passkey for `{rp_id}`: register one first"),
                ));
            }
            let (options, state) = webauthn.start_passkey_authentication(&passkeys).map_err(Error::internal)?;
            (options.public_key, Flow::User(state))
        } else {
            let (options, state) = webauthn.start_discoverable_authentication().map_err(Error::internal)?;
            // Only the options: the mediation webauthn-rs adds is the page's choice.
            (options.public_key, Flow::Discoverable(state))
        };
        let state = serde_json::to_vec(&LoginState { rp_id, flow }).map_err(Error::internal)?;
        let sealed = self.secrets.seal(Purpose::PasskeyLogin, &session.id, &state).await?;
        session.passkey_challenge = Some(PasskeyChallenge {
            state: STANDARD.encode(sealed.as_bytes()),
            expires_at: now.plus(self.relying_party.lifetime),
        });
        changes.push(Change::PasskeyChallenged);
        Ok(Some(serde_json::json!({ "publicKey": options })))
    }

    /// Verifies a passkey assertion against the session's open challenge. Failures count on no
    /// lockout: an assertion is a signature, not a guessable secret, and the wire contract names
    /// only passwords and one-time codes.
    pub(super) async fn check_passkey(
        &self,
        session: &mut Session,
        assertion: &Value,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) -> Result<()> {
        let credential: PublicKeyCredential = parse_credential(assertion.clone(), ASSERTION_FIELD)?;
        let challenge = session.passkey_challenge.clone().ok_or_else(|| {
            Error::failed_precondition(
                "SESSION-WebAuthNNotRequested",
                "no passkey challenge is open on this session: request challenges.webAuthN first",
            )
        })?;
        if challenge.expires_at <= now {
            return Err(Error::failed_precondition(
                "SESSION-WebAuthNExpired",
                "the passkey challenge has expired: request a new one",
            ));
        }
        let sealed = STANDARD
            .decode(&challenge.state)
            .map_err(|e| Error::internal(format_args!("corrupt passkey challenge: {e}")))?;
        let state = self.secrets.open(Purpose::PasskeyLogin, &session.id, &SealedSecret::from_bytes(sealed))?;
        let state: LoginState = serde_json::from_slice(state.expose()).map_err(Error::internal)?;
        let (_, webauthn) = self.relying_party.for_domain(&state.rp_id, CHALLENGE_FIELD, "SESSION-InvalidChallenge")?;

        let record = self
            .store
            .passkey_by_credential(&credential_id_text(credential.get_credential_id()))
            .await?
            .ok_or_else(|| refused("the credential is not a registered passkey"))?;
        if session.user_id().is_some_and(|id| id != record.user_id) {
            return Err(Error::invalid_argument(
                "SESSION-UserMismatch",
                "the passkey belongs to another user than the session's",
            ));
        }
        let user = self.store.user_by_id(&record.user_id).await?.ok_or_else(|| user_not_found(&record.user_id))?;
        ensure_active(&user)?;
        let mut passkey = stored_passkey(&record)?;
        let result = match state.flow {
            Flow::User(state) => webauthn.finish_passkey_authentication(&credential, &state),
            Flow::Discoverable(state) => {
                let (handle, _) =
                    webauthn.identify_discoverable_authentication(&credential).map_err(assertion_refused)?;
                if handle != user_handle(&record.user_id) {
                    return Err(refused("the assertion's user handle is not the passkey's user"));
                }
                webauthn.finish_discoverable_authentication(&credential, state, &[DiscoverableKey::from(&passkey)])
            }
        }
        .map_err(assertion_refused)?;

        // The counter moves only forward, and only from the value this check read: of two
        // concurrent uses of one passkey, one records its counter and the other is refused.
        passkey.update_credential(&result);
        let counter = i64::from(result.counter()).max(record.counter);
        let updated = serde_json::to_string(&passkey).map_err(Error::internal)?;
        if !self.store.record_passkey_use(&record.credential_id, record.counter, counter, &updated).await? {
            return Err(refused("the passkey was used concurrently; this assertion is refused"));
        }
        if session.user_id().is_none() {
            session.factors.user = Some(user_factor(&user, now));
            changes.push(Change::UserChecked { user_id: user.id.clone() });
        }
        session.passkey_challenge = None;
        let user_verified = result.user_verified();
        session.factors.web_auth_n = Some(WebAuthnFactor { verified_at: now, user_verified });
        changes.push(Change::PasskeyChecked { user_verified });
        Ok(())
    }
}

fn user_factor(user: &User, now: Timestamp) -> UserFactor {
    UserFactor {
        id: user.id.clone(),
        login_name: user.login_name.clone(),
        display_name: user.display_name.clone(),
        org_id: user.org_id.clone(),
        verified_at: now,
    }
}

fn refused(why: &str) -> Error {
    Error::invalid_argument("SESSION-WebAuthNInvalid", format!("the passkey assertion is refused: {why}"))
}

fn assertion_refused(e: WebauthnError) -> Error {
    refused(&explain(&e))
}

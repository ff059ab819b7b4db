//! The hot calls on behalf of an API token, each in one store step with its authentication: the
//! token row is re-read in the same job (SQLite) or statements (PostgreSQL) as the call's work,
//! and the domain's decisions run on what that step read, so a revocation, an expiry or a
//! disabled user is never missed and nothing is written for a refused token.
//!
//! Errors found before the store step (a malformed id, a request over the limits) are answered
//! without the token decided: the service then authenticates separately, so that an invalid token
//! is still answered UNAUTHENTICATED before anything else (`service::auth`).

use std::collections::BTreeMap;

use super::{
    CreateSession, Details, Issued, ReturnedCodes, Session, Sessions, apply_lifetime, check_user, first_entry,
    new_session, readable, validate_session_id,
};
use crate::domain::{
    Principal, Result, Timestamp, authz,
    port::{AuthorizedTermination, SessionBuild, TerminationCheck},
    token::Secret,
    user::{authenticate_token, authenticated},
};

impl Sessions {
    /// Get, for a caller authenticated already or in one store step with its token.
    pub async fn get_as(&self, principal: &Principal, session_id: &str, token: Option<&str>) -> Result<Session> {
        let presented = match principal {
            Principal::Caller(caller) => return self.get(caller, session_id, token).await,
            Principal::Token(presented) => presented,
        };
        validate_session_id(session_id)?;
        let (row, found) = self.store.token_and_session(&presented.token.id, session_id).await?;
        let now = Timestamp::now();
        let caller = authenticated(&presented.token, row, now)?;
        presented.proven();
        readable(&caller, session_id, found, token, now)
    }

    /// Delete, for a caller authenticated already or in one store step with its token.
    pub async fn delete_as(&self, principal: &Principal, session_id: &str, token: Option<&str>) -> Result<Details> {
        let presented = match principal {
            Principal::Caller(caller) => return self.delete(caller, session_id, token).await,
            Principal::Token(presented) => presented,
        };
        validate_session_id(session_id)?;
        self.terminating(session_id, || {
            let now = Timestamp::now();
            let (bearer, session_token) = (presented.clone(), token.map(str::to_owned));
            let decide: AuthorizedTermination = Box::new(move |row| {
                let caller = authenticated(&bearer.token, row, now)?;
                bearer.proven();
                let who = caller.clone();
                let check: TerminationCheck =
                    Box::new(move |current| authz::may_delete(&who, current, session_token.as_deref()));
                Ok((caller, check))
            });
            self.store.terminate_session_as(&presented.token.id, session_id, now, decide)
        })
        .await
    }

    /// Create, for a caller authenticated already or in one store step with its token when the
    /// request needs nothing but the store's reads (no credential check, no challenge: those keep
    /// their own store calls, after a separate authentication).
    pub async fn create_as(&self, principal: &Principal, request: CreateSession) -> Result<Issued> {
        let presented = match principal {
            Principal::Token(presented) if fusable(&request) => presented,
            Principal::Token(presented) => {
                let caller = authenticate_token(self.store.as_ref(), &presented.token).await?;
                presented.proven();
                return self.create(&caller, request).await;
            }
            Principal::Caller(caller) => return self.create(caller, request).await,
        };
        self.limits.check_create(&request)?;
        // Today's order of refusals: the permission before the metadata's bounds.
        let metadata = self.merge_metadata(&BTreeMap::new(), request.metadata);
        let (now, token) = (Timestamp::now(), Secret::generate());
        let (check, user_agent, lifetime) = (request.checks.user.clone(), request.user_agent, request.lifetime);
        let (presented_token, token_hash, user_check) = (presented.clone(), token.hash(), check.clone());
        let build: SessionBuild = Box::new(move |row, user| {
            let caller = authenticated(&presented_token.token, row, now)?;
            presented_token.proven();
            authz::may_create(&caller)?;
            let mut session = new_session(&caller, token_hash, user_agent, now);
            let mut changes = vec![super::Change::Created];
            let metadata = metadata?;
            if let Some(check) = &user_check {
                check_user(&mut session, check, user, now, &mut changes)?;
            }
            metadata.apply(&mut session, &mut changes);
            if let Some(lifetime) = lifetime {
                apply_lifetime(&mut session, lifetime, now, &mut changes);
            }
            let entry = first_entry(&session, &caller, changes);
            Ok((session, entry))
        });
        let session = self.store.create_session_as(&presented.token.id, check.as_ref(), now, build).await??;
        let (session_id, details) = (session.id.clone(), session.details());
        Ok(Issued { session_id, details, token: Some(token), codes: ReturnedCodes::default() })
    }
}

/// A create whose every decision can run on what one store step reads: a user check at most.
fn fusable(request: &CreateSession) -> bool {
    let checks = &request.checks;
    let challenges = &request.challenges;
    checks.password.is_none()
        && checks.totp.is_none()
        && checks.otp_sms.is_none()
        && checks.otp_email.is_none()
        && checks.web_auth_n.is_none()
        && challenges.otp_sms.is_none()
        && challenges.otp_email.is_none()
        && challenges.web_auth_n.is_none()
}

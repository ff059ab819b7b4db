//! One-time codes on a session: issuing one for the session's user (returned to the caller, or
//! handed to delivery once the session holding its challenge is written) and checking one under
//! the one-time-code lockout. A check uses the code up in the same conditional write that records
//! the factor, so a code passes at most once.

use std::fmt;

use super::{
    Error, ErrorClass, Result, Timestamp,
    events::Factor,
    otp::{CodeMessage, CodeSlot, OtpChallenge, OtpMethod, SendError},
    session::{ChallengeRequest, Change, Checks, ReturnedCodes, Session, Sessions, ensure_may_check},
    user::{LockoutCounter, User},
};

/// The codes a call issued: those to return, and those to deliver once the session is written.
#[must_use]
#[derive(Default)]
pub(super) struct IssuedCodes {
    returned: ReturnedCodes,
    deliveries: Vec<(CodeSlot, CodeMessage)>,
}

impl fmt::Debug for IssuedCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCodes").field("deliveries", &self.deliveries.len()).finish_non_exhaustive()
    }
}

impl IssuedCodes {
    /// The session is written: hand the codes over for delivery; the rest go back to the caller.
    pub(super) fn deliver(self) -> ReturnedCodes {
        for (slot, message) in self.deliveries {
            slot(message);
        }
        self.returned
    }
}

impl Sessions {
    /// Issues the requested one-time codes on `session` (replacing any earlier code of the same
    /// method). Needs the session's user, with the method enabled. A code to be sent reserves its
    /// place in the delivery queue first: when nothing can be queued the call fails before anything
    /// is written.
    pub(super) async fn issue_challenges(
        &self,
        session: &mut Session,
        request: &ChallengeRequest,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) -> Result<IssuedCodes> {
        let mut issued = IssuedCodes::default();
        issued.returned.web_auth_n = self.issue_passkey_challenge(session, request, now, changes).await?;
        for (method, wanted) in request.otp() {
            let Some(wanted) = wanted else { continue };
            let user = self.session_user(session, method.as_str()).await?;
            ensure_may_check(&user, LockoutCounter::OneTimeCode)?;
            let recipient = enabled_recipient(&user, method)?;
            let slot = if wanted.return_code { None } else { Some(self.code_sender.reserve().map_err(refused)?) };
            let (code, challenge) = OtpChallenge::issue(now, self.code_lifetime);
            let expires_at = challenge.expires_at;
            *session.otp_challenges.slot(method) = Some(challenge);
            changes.push(Change::OtpChallenged { method });
            match slot {
                None => *issued.returned.slot(method) = Some(code),
                Some(slot) => issued.deliveries.push((
                    slot,
                    CodeMessage {
                        method,
                        user_id: user.id.clone(),
                        recipient: recipient.to_owned(),
                        code,
                        expires_at,
                        url_template: wanted.url_template.clone(),
                    },
                )),
            }
        }
        Ok(issued)
    }

    /// Runs the one-time-code checks of a request: each needs a code issued for this session and
    /// method, not expired; a wrong code counts on the one-time-code lockout; a right one is used up.
    pub(super) async fn check_otps(
        &self,
        session: &mut Session,
        checks: &Checks,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) -> Result<()> {
        for (method, code) in checks.otp() {
            let Some(code) = code else { continue };
            let checked = self.check_otp(session, method, code, now).await;
            self.observed(Factor::Otp(method), checked)?;
            *session.otp_challenges.slot(method) = None;
            *session.factors.otp_mut(method) = Some(now);
            changes.push(Change::OtpChecked { method });
        }
        Ok(())
    }

    /// One one-time-code check: the code must match the challenge open for `method`.
    async fn check_otp(&self, session: &Session, method: OtpMethod, code: &str, now: Timestamp) -> Result<()> {
        let user = self.session_user(session, method.as_str()).await?;
        ensure_may_check(&user, LockoutCounter::OneTimeCode)?;
        enabled_recipient(&user, method)?;
        let challenge = session.otp_challenges.get(method).cloned().ok_or_else(|| {
            Error::failed_precondition(
                "SESSION-OtpNotRequested",
                format!("no {} code is open on this session: request one first", method.as_str()),
            )
        })?;
        if challenge.is_expired(now) {
            return Err(Error::failed_precondition(
                "SESSION-OtpExpired",
                format!("the {} code has expired: request a new one", method.as_str()),
            ));
        }
        let code = code.to_owned();
        self.guarded(&user, LockoutCounter::OneTimeCode, async move {
            Ok(if challenge.matches(&code) {
                Ok(())
            } else {
                Err(Error::invalid_argument("SESSION-OtpInvalid", "the one-time code is invalid"))
            })
        })
        .await
    }
}

/// Where the user's codes of `method` go, if the method is enabled for them.
fn enabled_recipient(user: &User, method: OtpMethod) -> Result<&str> {
    let (enabled, recipient, id) = match method {
        OtpMethod::Sms => (user.otp_sms, user.phone.as_deref(), "USER-OtpSmsNotEnabled"),
        OtpMethod::Email => (user.otp_email, user.email.as_deref(), "USER-OtpEmailNotEnabled"),
    };
    match recipient {
        Some(recipient) if enabled => Ok(recipient),
        _ => Err(Error::failed_precondition(id, format!("{} is not enabled for the user", method.as_str()))),
    }
}

fn refused(e: SendError) -> Error {
    match e {
        SendError::NotConfigured => Error::failed_precondition(
            "OTP-NoDelivery",
            "no delivery for one-time codes is configured: ask for return_code, or configure --notify-webhook",
        ),
        SendError::QueueFull => Error::new(
            ErrorClass::Unavailable,
            "OTP-DeliveryBusy",
            "one-time codes cannot be queued for delivery right now; retry later",
        ),
    }
}

//! One-time codes sent by SMS or email: a random code per session and method, stored only as a
//! salted hash, valid for a few minutes, checked in constant time and used once. Delivery goes
//! through a `CodeSender` (the webhook in `crate::notify`), or the code comes back to a UI that
//! delivers it itself.

use std::{fmt, time::Duration};

use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Timestamp, token::Secret};

/// Digits of a code (ZITADEL sends 8 by default for SMS and email).
pub const CODE_DIGITS: usize = 8;
/// How long a code stays valid.
pub const DEFAULT_CODE_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// How a one-time code reaches the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtpMethod {
    Sms,
    Email,
}

impl OtpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "otp_sms",
            Self::Email => "otp_email",
        }
    }
}

/// A code issued for a session, as stored: never the code itself.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtpChallenge {
    /// Random salt, hex.
    salt: String,
    /// SHA-256 of salt and code, hex.
    hash: String,
    pub expires_at: Timestamp,
}

impl fmt::Debug for OtpChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtpChallenge").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

impl OtpChallenge {
    /// A fresh random code and what is stored of it.
    pub fn issue(now: Timestamp, lifetime: Duration) -> (Secret, Self) {
        let mut rng = rand::rng();
        let code: String = (0..CODE_DIGITS).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect();
        let salt = hex::encode(rng.random::<[u8; 16]>());
        let hash = digest(&salt, &code);
        (Secret::new(code), Self { salt, hash, expires_at: now.plus(lifetime) })
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }

    /// Is `code` this challenge's code? Constant time in the hash.
    pub fn matches(&self, code: &str) -> bool {
        digest(&self.salt, code).as_bytes().ct_eq(self.hash.as_bytes()).into()
    }
}

fn digest(salt: &str, code: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(b":");
    hasher.update(code.as_bytes());
    hex::encode(hasher.finalize())
}

/// The open one-time-code challenges of a session, one per method.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtpChallenges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<OtpChallenge>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<OtpChallenge>,
}

impl OtpChallenges {
    pub fn is_empty(&self) -> bool {
        self.sms.is_none() && self.email.is_none()
    }

    pub fn get(&self, method: OtpMethod) -> Option<&OtpChallenge> {
        match method {
            OtpMethod::Sms => self.sms.as_ref(),
            OtpMethod::Email => self.email.as_ref(),
        }
    }

    pub fn slot(&mut self, method: OtpMethod) -> &mut Option<OtpChallenge> {
        match method {
            OtpMethod::Sms => &mut self.sms,
            OtpMethod::Email => &mut self.email,
        }
    }
}

/// A code to deliver, after the session that holds its challenge was written.
#[derive(Clone)]
pub struct CodeMessage {
    pub method: OtpMethod,
    pub user_id: String,
    /// The phone number or email address.
    pub recipient: String,
    pub code: Secret,
    pub expires_at: Timestamp,
    /// For email: the link template the UI asked for (`{{.Code}}` and friends are the UI's).
    pub url_template: Option<String>,
}

impl fmt::Debug for CodeMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeMessage")
            .field("method", &self.method)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why a code could not be handed over for delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No delivery is configured (`--notify-webhook`).
    NotConfigured,
    /// The delivery queue is full: nothing was queued.
    QueueFull,
}

/// A reserved place in the delivery queue: taking it cannot fail, so a code is reserved before
/// the session that holds it is written, and handed over after.
pub type CodeSlot = Box<dyn FnOnce(CodeMessage) + Send>;

/// Takes codes for delivery; delivery itself (and its retries) happens later, elsewhere.
pub trait CodeSender: Send + Sync + fmt::Debug + 'static {
    fn reserve(&self) -> Result<CodeSlot, SendError>;
}

/// The sender when no delivery is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDelivery;

impl CodeSender for NoDelivery {
    fn reserve(&self) -> Result<CodeSlot, SendError> {
        Err(SendError::NotConfigured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_matches_only_itself_and_is_not_stored() {
        let now = Timestamp(1_000_000);
        let (code, challenge) = OtpChallenge::issue(now, DEFAULT_CODE_LIFETIME);
        assert_eq!(code.expose().len(), CODE_DIGITS);
        assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
        assert!(challenge.matches(code.expose()));
        let wrong = if code.expose() == "00000000" { "00000001" } else { "00000000" };
        assert!(!challenge.matches(wrong));
        let stored = serde_json::to_string(&challenge).unwrap();
        assert!(!stored.contains(code.expose()), "{stored}");
        assert!(!challenge.is_expired(now.plus(Duration::from_secs(299))));
        assert!(challenge.is_expired(now.plus(Duration::from_secs(300))));
        let (_, other) = OtpChallenge::issue(now, DEFAULT_CODE_LIFETIME);
        assert_ne!(challenge.salt, other.salt, "each code has its own salt");
    }
}

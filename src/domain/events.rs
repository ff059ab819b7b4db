//! What the domain reports as it decides, for whoever counts (the metrics): each factor check's
//! outcome and each lockout. The domain names the events; it knows nothing of how they are kept.

use std::fmt;

use super::{Error, ErrorClass, otp::OtpMethod, user::LockoutCounter};

/// A factor a session check verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    Password,
    Totp,
    Otp(OtpMethod),
}

impl Factor {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Totp => "totp",
            Self::Otp(OtpMethod::Sms) => "otp_sms",
            Self::Otp(OtpMethod::Email) => "otp_email",
        }
    }
}

/// How a factor check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    Success,
    /// The credential was wrong, or the user cannot use it (not found, inactive, no password).
    Rejected,
    /// The user is locked: nothing was verified.
    Locked,
    /// The server could not decide (store unavailable, overloaded, a bug).
    Error,
}

impl CheckOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Rejected => "rejected",
            Self::Locked => "locked",
            Self::Error => "error",
        }
    }

    /// The outcome a check's result means.
    pub fn of<T>(result: &Result<T, Error>) -> Self {
        let Err(error) = result else { return Self::Success };
        if error.id == "USER-Locked" {
            return Self::Locked;
        }
        match error.class {
            ErrorClass::Unavailable
            | ErrorClass::ResourceExhausted
            | ErrorClass::DeadlineExceeded
            | ErrorClass::Cancelled
            | ErrorClass::Aborted
            | ErrorClass::Internal => Self::Error,
            ErrorClass::Unauthenticated
            | ErrorClass::InvalidArgument
            | ErrorClass::NotFound
            | ErrorClass::PermissionDenied
            | ErrorClass::FailedPrecondition
            | ErrorClass::AlreadyExists
            | ErrorClass::Unimplemented => Self::Rejected,
        }
    }
}

/// Receives the domain's events; calls must be cheap (they run on the call's path).
pub trait LoginEvents: Send + Sync + fmt::Debug {
    fn checked(&self, factor: Factor, outcome: CheckOutcome);
    /// A failed check reached its counter's limit and locked the user.
    fn locked(&self, counter: LockoutCounter);
}

/// Nobody listens.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unobserved;

impl LoginEvents for Unobserved {
    fn checked(&self, _: Factor, _: CheckOutcome) {}
    fn locked(&self, _: LockoutCounter) {}
}

//! The domain's typed failures: each names its class (which becomes a gRPC code in one place,
//! `service::status`), a stable machine-readable id and a human sentence.

use std::fmt;

/// What went wrong, by the class a client reacts to. The transport maps each class to exactly
/// one gRPC code (and from there to one HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// No usable credentials.
    Unauthenticated,
    /// The request itself is wrong, whatever the state of the data.
    InvalidArgument,
    /// The thing named does not exist (or the caller may not know it does).
    NotFound,
    /// The caller is known but may not do this.
    PermissionDenied,
    /// The data is in a state that forbids the call (terminated session, inactive user, ...).
    FailedPrecondition,
    /// Something already exists (a login name taken).
    AlreadyExists,
    /// A concurrent writer won; the call may be retried.
    Aborted,
    /// A feature the request names is not built.
    Unimplemented,
    /// The store cannot be reached right now.
    Unavailable,
    /// The server has too much to do right now.
    ResourceExhausted,
    /// The call ran out of time.
    DeadlineExceeded,
    /// The client gave up on the call (reset the stream or closed the connection mid-request).
    Cancelled,
    /// A bug or an unexpected failure; details are logged, never sent.
    Internal,
}

/// A failed credential check carries the number of consecutive failures (ZITADEL's
/// `CredentialsCheckError`), so that a login UI can warn before the lockout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialsFailure {
    pub failed_attempts: i32,
}

/// A domain error: class, stable id, message, and for credential checks the failure count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub class: ErrorClass,
    pub id: &'static str,
    pub message: String,
    pub credentials: Option<CredentialsFailure>,
}

impl Error {
    pub fn new(class: ErrorClass, id: &'static str, message: impl Into<String>) -> Self {
        Self { class, id, message: message.into(), credentials: None }
    }

    pub fn invalid_argument(id: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::InvalidArgument, id, message)
    }

    pub fn not_found(id: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::NotFound, id, message)
    }

    pub fn permission_denied(id: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::PermissionDenied, id, message)
    }

    pub fn failed_precondition(id: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::FailedPrecondition, id, message)
    }

    pub fn unauthenticated(id: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Unauthenticated, id, message)
    }

    pub fn unimplemented(id: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Unimplemented, id, message)
    }

    /// An unexpected failure: the cause is logged here once (cut to `MAX_LOGGED_CAUSE`), the
    /// client sees a generic sentence.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(cause = %bounded(&cause.to_string()), "internal error");
        Self::new(ErrorClass::Internal, "INTERNAL", "internal error")
    }

    pub fn with_credentials(mut self, failed_attempts: i32) -> Self {
        self.credentials = Some(CredentialsFailure { failed_attempts });
        self
    }
}

/// Longest cause a log line carries: enough to diagnose, never a whole SQL statement with the
/// 40,000 ids a caller sent.
pub const MAX_LOGGED_CAUSE: usize = 2048;

/// `cause` as a log line may carry it: cut after `MAX_LOGGED_CAUSE` bytes, saying how long it was.
pub fn bounded(cause: &str) -> std::borrow::Cow<'_, str> {
    if cause.len() <= MAX_LOGGED_CAUSE {
        return cause.into();
    }
    let mut end = MAX_LOGGED_CAUSE;
    while !cause.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &cause[..end], cause.len()).into()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.id)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_causes_are_cut_on_a_character_boundary() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(MAX_LOGGED_CAUSE);
        let cut = bounded(&long);
        assert!(cut.len() < MAX_LOGGED_CAUSE + 40, "{}", cut.len());
        assert!(cut.ends_with(&format!("… ({} bytes in all)", long.len())), "{cut}");
    }
}

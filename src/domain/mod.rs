//! Sessions, users, API tokens and who may do what with them. Knows nothing of tonic, HTTP or
//! SQL: the service layer hands it typed inputs, it answers typed results or `Error`s.

pub mod authz;
mod challenges;
pub mod error;
pub mod events;
pub mod keyring;
pub mod limits;
pub mod otp;
pub mod passkey;
mod passkey_login;
pub mod password;
pub mod port;
pub mod secrets;
pub mod session;
pub mod token;
pub mod totp;
pub mod user;

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub use error::{Error, ErrorClass, Result};

/// A point in time as microseconds since the Unix epoch (UTC): what the stores keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Self(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    /// `self + d`, saturating at the far future.
    pub fn plus(self, d: Duration) -> Self {
        let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(micros))
    }
}

/// What an API token allows beyond acting for its own user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Read any session (Get, List).
    SessionRead,
    /// Create sessions and change any session.
    SessionWrite,
    /// Terminate any session.
    SessionDelete,
    /// Manage any user's credentials (register passkeys).
    UserWrite,
}

impl Permission {
    pub const ALL: [Permission; 4] = [Self::SessionRead, Self::SessionWrite, Self::SessionDelete, Self::UserWrite];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionRead => "session.read",
            Self::SessionWrite => "session.write",
            Self::SessionDelete => "session.delete",
            Self::UserWrite => "user.write",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::SessionRead => 1,
            Self::SessionWrite => 2,
            Self::SessionDelete => 4,
            Self::UserWrite => 8,
        }
    }
}

impl std::str::FromStr for Permission {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| {
            format!("unknown permission `{s}` (expected session.read, session.write, session.delete or user.write)")
        })
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of permissions, stored as a small bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Permissions(u8);

impl Permissions {
    pub fn from_bits(bits: u8) -> Self {
        Self(bits & 15)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

impl FromIterator<Permission> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |acc, p| acc | p.bit()))
    }
}

/// The authenticated caller of an RPC: the user its API token belongs to and what the token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub org_id: String,
    pub token_id: String,
    pub permissions: Permissions,
}

impl Caller {
    pub fn may(&self, p: Permission) -> bool {
        self.permissions.contains(p)
    }
}

/// Who calls an RPC: a caller authenticated already (an OIDC access token, or a call that is not
/// worth fusing), or an API token the call's own store job checks, re-read in the same job as the
/// call's work so that no revocation is missed.
#[derive(Debug, Clone)]
pub enum Principal {
    Caller(Caller),
    Token(Presented),
}

/// An API token as a call presented it, and whether the call has found it valid yet (shared with
/// whoever must answer for an invalid token if the call fails: `service::auth`).
#[derive(Debug, Clone)]
pub struct Presented {
    pub token: token::ApiToken,
    valid: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Presented {
    pub fn new(token: token::ApiToken) -> Self {
        Self { token, valid: Default::default() }
    }

    /// The call found the token valid (the caller it names authenticated).
    pub fn proven(&self) {
        self.valid.store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn is_proven(&self) -> bool {
        self.valid.load(std::sync::atomic::Ordering::Acquire)
    }
}

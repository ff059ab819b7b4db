//! Secrets handed to clients (API tokens, session tokens): random, shown once, stored only as a
//! SHA-256 hash, compared in constant time, and redacted wherever they could be printed.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 of a secret. Tokens carry 256 random bits, so a fast hash is enough: there is
/// nothing to brute-force (unlike passwords, which go through argon2id).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    /// Does `secret` hash to this value? Constant time in the hash bytes.
    pub fn matches(&self, secret: &str) -> bool {
        Self::of(secret).0.ct_eq(&self.0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

/// A secret as the client sees it. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// 32 random bytes from the OS-seeded CSPRNG, base64url without padding (43 characters).
    pub fn generate() -> Self {
        Self(random_b64(32))
    }

    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// `n` random bytes as base64url: for secrets and for unguessable identifiers.
pub fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new unguessable identifier: 128 random bits as 32 lowercase hex digits. Hex, not base64url,
/// so that an id never starts with `-` and reads as a command-line flag.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A new session id: the creation time in milliseconds (48 bits) then 80 random bits, as 32 hex
/// digits. Unguessable all the same, and time-ordered, so that new sessions append to the stores'
/// indexes instead of landing on a random page each.
pub fn new_session_id() -> String {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut random = [0u8; 10];
    rand::rng().fill_bytes(&mut random);
    format!("{:012x}{}", millis & 0xffff_ffff_ffff, hex::encode(random))
}

/// An API token as printed to its owner: `<token id>.<secret>`. The id finds the row, the secret
/// is checked against the stored hash in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    pub secret: Secret,
}

impl ApiToken {
    pub fn generate() -> Self {
        Self { id: new_id(), secret: Secret::generate() }
    }

    /// Splits a presented bearer token; `None` when it cannot be one of ours.
    pub fn parse(presented: &str) -> Option<Self> {
        let (id, secret) = presented.split_once('.')?;
        let well_formed = |s: &str| {
            !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        (well_formed(id) && well_formed(secret))
            .then(|| Self { id: id.to_owned(), secret: Secret::new(secret.to_owned()) })
    }

    pub fn to_bearer(&self) -> String {
        format!("{}.{}", self.id, self.secret.expose())
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken").field("id", &self.id).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_token_round_trips_and_rejects_garbage() {
        let token = ApiToken::generate();
        let parsed = ApiToken::parse(&token.to_bearer()).expect("own token parses");
        assert_eq!(parsed, token);
        assert!(ApiToken::parse("no-dot").is_none());
        assert!(ApiToken::parse(".secret").is_none());
        assert!(ApiToken::parse("id.").is_none());
        assert!(ApiToken::parse("id.se cret").is_none());
    }

    #[test]
    fn session_ids_are_time_ordered_and_distinct() {
        let a = new_session_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_session_id();
        assert_eq!((a.len(), b.len()), (32, 32));
        assert!(a < b, "{a} then {b}");
        assert_ne!(new_session_id(), new_session_id());
    }

    #[test]
    fn ids_are_hex_and_never_look_like_flags() {
        for _ in 0..256 {
            let id = new_id();
            assert_eq!(id.len(), 32);
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
        }
    }

    #[test]
    fn secrets_are_distinct_and_hidden_in_debug() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert!(!format!("{a:?}").contains(a.expose()));
        assert!(a.hash().matches(a.expose()));
        assert!(!a.hash().matches(b.expose()));
    }
}

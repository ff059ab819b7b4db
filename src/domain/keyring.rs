//! The keys that seal secrets at rest, and the sealed envelope itself: XChaCha20-Poly1305, with the
//! key id in the envelope so that keys can rotate and the owner and purpose bound as associated
//! data so that a sealed secret cannot be moved to another user or use.
//!
//! Key file (text): one key per line, `<key-id> <base64 of 32 bytes>`; blank lines and lines
//! starting with `#` are ignored. The first key seals; every key opens. Rotation is adding a new
//! first line (and later removing the old one once nothing sealed with it is left).
//!
//! Envelope (version 1), as the store keeps it:
//! `[1] [key id length n, 1..=64] [key id, n ASCII bytes] [nonce, 24 bytes] [ciphertext || tag, 16 bytes]`.
//! Associated data: `"sessiond-sealed" || version || n || key id || purpose length || purpose ||
//! owner`, so the header, the purpose (`totp`, `key-check`, ...) and the owner (a user id, a key
//! id) are all authenticated.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use rand::RngCore as _;
use zeroize::Zeroizing;

/// The envelope layout this code writes (and the only one it reads).
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const MAX_KEY_ID_LEN: usize = 64;
const AD_DOMAIN: &[u8] = b"sessiond-sealed";

/// What a sealed secret is for. Part of the associated data: a secret sealed for one purpose
/// does not open as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A user's TOTP seed; the owner is the user id.
    Totp,
    /// The verifier that proves a key is the one that sealed a database's secrets; the owner is
    /// the key id.
    KeyCheck,
    /// The WebAuthn state between RegisterPasskey and VerifyPasskeyRegistration; the owner is the
    /// passkey id.
    PasskeyRegistration,
    /// The WebAuthn state of a session's passkey challenge; the owner is the session id.
    PasskeyLogin,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Totp => b"totp",
            Self::KeyCheck => b"key-check",
            Self::PasskeyRegistration => b"passkey-registration",
            Self::PasskeyLogin => b"passkey-login",
        }
    }
}

/// A sealed secret: the envelope bytes, opaque to the store. Nothing in it is secret without the
/// key, but `Debug` shows only the key id and length all the same.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret(Vec<u8>);

impl SealedSecret {
    /// Bytes as the store kept them; checked when opened, not here.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The id of the key that sealed it, when the envelope is well-formed enough to say.
    pub fn key_id(&self) -> Option<&str> {
        self.parts().map(|p| p.key_id)
    }

    fn parts(&self) -> Option<Parts<'_>> {
        let (&version, rest) = self.0.split_first()?;
        let (&n, rest) = rest.split_first()?;
        let n = usize::from(n);
        if version != VERSION || n == 0 || n > MAX_KEY_ID_LEN || rest.len() < n + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (key_id, rest) = rest.split_at(n);
        let key_id = std::str::from_utf8(key_id).ok().filter(|id| valid_key_id(id))?;
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        Some(Parts { header: &self.0[..2 + n], key_id, nonce, ciphertext })
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret").field("key_id", &self.key_id()).field("len", &self.0.len()).finish()
    }
}

struct Parts<'a> {
    header: &'a [u8],
    key_id: &'a str,
    nonce: &'a [u8],
    ciphertext: &'a [u8],
}

/// An opened secret: zeroed when dropped, redacted in `Debug`.
pub struct OpenedSecret(Zeroizing<Vec<u8>>);

impl OpenedSecret {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for OpenedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpenedSecret(<redacted>)")
    }
}

/// Why a sealed secret did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the sealed secret is malformed (not a version {VERSION} envelope)")]
    Malformed,
    #[error("the secret was sealed with key `{0}`, which the secrets key file does not hold")]
    UnknownKey(String),
    #[error("the secret does not open with key `{0}`: another key of that id sealed it, or it was altered or moved")]
    Inauthentic(String),
}

/// Why a key file was refused. Never quotes key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("the key file holds no key (expected lines `<key-id> <base64 of 32 bytes>`)")]
    Empty,
    #[error("line {line}: expected `<key-id> <base64 of 32 bytes>`")]
    Shape { line: usize },
    #[error("line {line}: the key id must be 1 to {MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 . _ -")]
    KeyId { line: usize },
    #[error("line {line}: the key is not base64 of exactly {KEY_LEN} bytes")]
    Key { line: usize },
    #[error("line {line}: key id `{id}` appears twice")]
    Duplicate { line: usize, id: String },
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The keys of a key file. The first seals; all open.
pub struct Keyring {
    keys: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("key_ids", &self.key_ids().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl Keyring {
    /// Parses a key file's text.
    pub fn parse(text: &str) -> Result<Self, KeyFileError> {
        let mut keys: Vec<Key> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let mut fields = trimmed.split_whitespace();
            let (Some(id), Some(encoded), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(KeyFileError::Shape { line });
            };
            if !valid_key_id(id) {
                return Err(KeyFileError::KeyId { line });
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyFileError::Duplicate { line, id: id.to_owned() });
            }
            let bytes = Zeroizing::new(STANDARD.decode(encoded).map_err(|_| KeyFileError::Key { line })?);
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
                .ok()
                .filter(|_| bytes.len() == KEY_LEN)
                .ok_or(KeyFileError::Key { line })?;
            keys.push(Key { id: id.to_owned(), cipher });
        }
        if keys.is_empty() {
            return Err(KeyFileError::Empty);
        }
        Ok(Self { keys })
    }

    /// A key file line holding a fresh random key, `<id> <base64>`, with a random id when `id` is
    /// `None`; `None` when `id` is not a valid key id.
    pub fn generate_line(id: Option<&str>) -> Option<String> {
        let id = match id {
            Some(id) => Some(id.to_owned()).filter(|id| valid_key_id(id))?,
            None => format!("k{:08x}", rand::rng().next_u32()),
        };
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rand::rng().fill_bytes(key.as_mut());
        Some(format!("{id} {}", STANDARD.encode(key.as_ref())))
    }

    /// The id of the key that seals.
    pub fn current_key_id(&self) -> &str {
        &self.keys[0].id
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    pub fn holds(&self, key_id: &str) -> bool {
        self.keys.iter().any(|k| k.id == key_id)
    }

    /// Seals `plaintext` for `purpose` and `owner` with the current key and a random nonce.
    pub fn seal(&self, purpose: Purpose, owner: &str, plaintext: &[u8]) -> SealedSecret {
        let key = &self.keys[0];
        let mut out = Vec::with_capacity(2 + key.id.len() + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(VERSION);
        out.push(u8::try_from(key.id.len()).expect("key ids are at most 64 bytes"));
        out.extend_from_slice(key.id.as_bytes());
        let mut nonce = [0u8; NONCE_LEN];
        // 192-bit random nonces: collisions are negligible however many secrets one key seals.
        rand::rng().fill_bytes(&mut nonce);
        let ad = associated_data(&out, purpose, owner);
        let ciphertext = key
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &ad })
            .expect("XChaCha20-Poly1305 seals any secret of a sane size");
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        SealedSecret(out)
    }

    /// Opens what `seal` sealed for the same `purpose` and `owner`, with whichever key sealed it.
    pub fn open(&self, purpose: Purpose, owner: &str, sealed: &SealedSecret) -> Result<OpenedSecret, OpenError> {
        let parts = sealed.parts().ok_or(OpenError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == parts.key_id)
            .ok_or_else(|| OpenError::UnknownKey(parts.key_id.to_owned()))?;
        let nonce = XNonce::try_from(parts.nonce).map_err(|_| OpenError::Malformed)?;
        let ad = associated_data(parts.header, purpose, owner);
        key.cipher
            .decrypt(&nonce, Payload { msg: parts.ciphertext, aad: &ad })
            .map(|plain| OpenedSecret(Zeroizing::new(plain)))
            .map_err(|_| OpenError::Inauthentic(parts.key_id.to_owned()))
    }
}

/// Key ids: 1 to 64 characters of A-Z a-z 0-9 . _ -
pub fn valid_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn associated_data(header: &[u8], purpose: Purpose, owner: &str) -> Vec<u8> {
    let label = purpose.label();
    let mut ad = Vec::with_capacity(AD_DOMAIN.len() + header.len() + 1 + label.len() + owner.len());
    ad.extend_from_slice(AD_DOMAIN);
    ad.extend_from_slice(header);
    ad.push(u8::try_from(label.len()).expect("purpose labels are short"));
    ad.extend_from_slice(label);
    ad.extend_from_slice(owner.as_bytes());
    ad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(lines: &[String]) -> Keyring {
        Keyring::parse(&lines.join("\n")).unwrap()
    }

    #[test]
    fn seals_and_opens_only_for_the_same_owner_and_purpose() {
        let ring = keyring(&[Keyring::generate_line(Some("a")).unwrap()]);
        let sealed = ring.seal(Purpose::Totp, "user-1", b"seed bytes");
        assert_eq!(sealed.key_id(), Some("a"));
        assert_eq!(ring.open(Purpose::Totp, "user-1", &sealed).unwrap().expose(), b"seed bytes");
        assert_eq!(ring.open(Purpose::Totp, "user-2", &sealed).unwrap_err(), OpenError::Inauthentic("a".into()));
        assert_eq!(ring.open(Purpose::KeyCheck, "user-1", &sealed).unwrap_err(), OpenError::Inauthentic("a".into()));
        assert!(!sealed.as_bytes().windows(10).any(|w| w == b"seed bytes"));
        assert_ne!(sealed, ring.seal(Purpose::Totp, "user-1", b"seed bytes"), "every seal has its own nonce");
    }

    #[test]
    fn a_changed_byte_or_header_does_not_open() {
        let ring = keyring(&[Keyring::generate_line(Some("a")).unwrap(), Keyring::generate_line(Some("b")).unwrap()]);
        let sealed = ring.seal(Purpose::Totp, "u", b"seed");
        for i in 0..sealed.as_bytes().len() {
            let mut bytes = sealed.as_bytes().to_vec();
            bytes[i] ^= 1;
            assert!(ring.open(Purpose::Totp, "u", &SealedSecret::from_bytes(bytes)).is_err(), "byte {i}");
        }
        let short = SealedSecret::from_bytes(vec![1, 2]);
        assert_eq!(ring.open(Purpose::Totp, "u", &short).unwrap_err(), OpenError::Malformed);
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let old = Keyring::generate_line(Some("old")).unwrap();
        let new = Keyring::generate_line(Some("new")).unwrap();
        let sealed_old = keyring(std::slice::from_ref(&old)).seal(Purpose::Totp, "u", b"x");
        let rotated = keyring(&[new.clone(), old]);
        assert_eq!(rotated.current_key_id(), "new");
        assert_eq!(rotated.open(Purpose::Totp, "u", &sealed_old).unwrap().expose(), b"x");
        assert_eq!(rotated.seal(Purpose::Totp, "u", b"x").key_id(), Some("new"));
        assert_eq!(
            keyring(&[new]).open(Purpose::Totp, "u", &sealed_old).unwrap_err(),
            OpenError::UnknownKey("old".into())
        );
    }

    #[test]
    fn key_files_are_checked_line_by_line_without_quoting_keys() {
        let good = Keyring::generate_line(Some("k1")).unwrap();
        assert_eq!(Keyring::parse("# nothing\n\n").unwrap_err(), KeyFileError::Empty);
        assert_eq!(Keyring::parse("k1").unwrap_err(), KeyFileError::Shape { line: 1 });
        assert_eq!(Keyring::parse("k1 AAAA extra").unwrap_err(), KeyFileError::Shape { line: 1 });
        assert_eq!(Keyring::parse("k/1 AAAA").unwrap_err(), KeyFileError::KeyId { line: 1 });
        assert_eq!(Keyring::parse("\nk1 c2hvcnQ=").unwrap_err(), KeyFileError::Key { line: 2 });
        assert_eq!(Keyring::parse("k1 not*base64").unwrap_err(), KeyFileError::Key { line: 1 });
        assert_eq!(
            Keyring::parse(&format!("{good}\n{good}")).unwrap_err(),
            KeyFileError::Duplicate { line: 2, id: "k1".into() }
        );
        let ring = Keyring::parse(&format!("# comment\n  {good}  \n")).unwrap();
        assert_eq!(ring.current_key_id(), "k1");
        assert!(!format!("{ring:?}").contains(good.split_once(' ').unwrap().1));
    }
}

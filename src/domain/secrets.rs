//! Secrets at rest against one database: checking at start that the key file holds every key the
//! database was sealed with (and the right ones), sealing and opening secrets for their owners,
//! sealing the TOTP seeds older versions kept in clear, and re-sealing everything with the
//! current key (rotation). The crypto is `keyring`'s; the store only ever sees sealed bytes.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use zeroize::Zeroizing;

use super::port::{Store, StoreError};
use super::{
    Error, Result, Timestamp,
    keyring::{Keyring, OpenedSecret, Purpose, SealedSecret},
    user::User,
};

/// What a key's verifier seals; opening it proves the key is the one the database knows.
const VERIFIER: &[u8] = b"sessiond key check v1";

/// A key's verifier as the store keeps it: one per key id that has sealed anything into the
/// database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCheck {
    pub key_id: String,
    pub verifier: SealedSecret,
    pub created_at: Timestamp,
}

/// A TOTP seed kept in clear by a version before sealing, as read to seal it.
pub struct ClearTotpSecret {
    pub user_id: String,
    pub secret: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for ClearTotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClearTotpSecret").field("user_id", &self.user_id).finish_non_exhaustive()
    }
}

/// Why a key file does not fit the database.
#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    #[error(
        "the database holds secrets sealed with key {}, which the secrets key file does not hold: \
         use the key file this database was used with (restore it from the backup)",
        quoted(.0)
    )]
    MissingKeys(Vec<String>),
    #[error(
        "key `{0}` in the secrets key file is not the key that sealed this database's secrets \
         (the same id, another key): use the key file this database was used with"
    )]
    WrongKey(String),
    #[error("cannot read the database's key checks: {0}")]
    Store(#[from] StoreError),
}

fn quoted(ids: &[String]) -> String {
    ids.iter().map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", ")
}

/// What `rotate` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Secrets re-sealed with the current key.
    pub resealed: usize,
    /// Key ids whose verifiers were removed: nothing in the database needs them any more.
    pub retired: Vec<String>,
}

/// The keyring, checked against the database it seals into.
#[derive(Clone)]
pub struct Secrets {
    inner: Arc<Inner>,
}

struct Inner {
    keyring: Keyring,
    store: Arc<dyn Store>,
    /// The current key's verifier is in the database (recorded before the first seal).
    current_recorded: AtomicBool,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets").field("keyring", &self.inner.keyring).finish_non_exhaustive()
    }
}

impl Secrets {
    /// Checks `keyring` against the database: every key id that has sealed anything into it
    /// must be in the keyring and open its verifier. A missing or wrong key fails here, at
    /// start, rather than at the first login that needs it.
    pub async fn unlock(store: Arc<dyn Store>, keyring: Keyring) -> Result<Self, UnlockError> {
        let checks = store.key_checks().await?;
        let missing: Vec<String> =
            checks.iter().filter(|c| !keyring.holds(&c.key_id)).map(|c| c.key_id.clone()).collect();
        if !missing.is_empty() {
            return Err(UnlockError::MissingKeys(missing));
        }
        for check in &checks {
            verify(&keyring, check)?;
        }
        let current_recorded = checks.iter().any(|c| c.key_id == keyring.current_key_id());
        Ok(Self { inner: Arc::new(Inner { keyring, store, current_recorded: AtomicBool::new(current_recorded) }) })
    }

    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// Seals `plaintext` for `owner` with the current key. The key's verifier goes into the
    /// database before the first secret the key seals, so that a later start knows the key.
    pub async fn seal(&self, purpose: Purpose, owner: &str, plaintext: &[u8]) -> Result<SealedSecret> {
        self.record_current_key().await?;
        Ok(self.inner.keyring.seal(purpose, owner, plaintext))
    }

    /// The user's TOTP seed, opened. A seed that does not open was altered or moved (start
    /// checked the keys): an internal error, logged.
    pub fn open_totp(&self, user: &User) -> Result<OpenedSecret> {
        let enrolment = user
            .totp
            .as_ref()
            .ok_or_else(|| Error::failed_precondition("USER-NoTotp", "the user has no TOTP enrolled"))?;
        self.inner
            .keyring
            .open(Purpose::Totp, &user.id, &enrolment.sealed)
            .map_err(|e| Error::internal(format_args!("the TOTP secret of user {} does not open: {e}", user.id)))
    }

    /// Opens what `seal` sealed for `purpose` and `owner`. A secret that does not open was altered,
    /// moved, or sealed with a key since removed from the key file: an internal error, logged.
    pub fn open(&self, purpose: Purpose, owner: &str, sealed: &SealedSecret) -> Result<OpenedSecret> {
        self.inner
            .keyring
            .open(purpose, owner, sealed)
            .map_err(|e| Error::internal(format_args!("a sealed {purpose:?} state of `{owner}` does not open: {e}")))
    }

    /// Seals the TOTP seeds an older version kept in clear and removes the clear copies.
    /// Returns how many it sealed.
    pub async fn seal_clear_totp_secrets(&self) -> Result<usize> {
        let store = &self.inner.store;
        let clear = store.clear_totp_secrets().await?;
        let mut sealed_count = 0;
        for seed in clear {
            let sealed = self.seal(Purpose::Totp, &seed.user_id, &seed.secret).await?;
            if store.seal_clear_totp_secret(&seed.user_id, &seed.secret, &sealed).await? {
                sealed_count += 1;
            }
        }
        Ok(sealed_count)
    }

    /// Re-seals every stored secret not sealed with the current key, then removes the verifiers
    /// of keys nothing needs any more: after this, older keys may leave the key file.
    pub async fn rotate(&self) -> Result<Rotation> {
        self.record_current_key().await?;
        let (store, keyring) = (&self.inner.store, &self.inner.keyring);
        let current = keyring.current_key_id();
        let mut rotation = Rotation::default();
        for user in store.list_users().await? {
            let Some(enrolment) = &user.totp else { continue };
            if enrolment.sealed.key_id() == Some(current) {
                continue;
            }
            let opened = self.open_totp(&user)?;
            let resealed = keyring.seal(Purpose::Totp, &user.id, opened.expose());
            // `false`: the user enrolled again meanwhile, with the current key.
            if store.reseal_totp_secret(&user.id, &enrolment.sealed, &resealed).await? {
                rotation.resealed += 1;
            }
        }
        for check in store.key_checks().await? {
            if check.key_id != current && store.remove_key_check(&check.key_id).await? {
                rotation.retired.push(check.key_id);
            }
        }
        Ok(rotation)
    }

    async fn record_current_key(&self) -> Result<()> {
        if self.inner.current_recorded.load(Ordering::Acquire) {
            return Ok(());
        }
        let (store, keyring) = (&self.inner.store, &self.inner.keyring);
        let id = keyring.current_key_id();
        let check = KeyCheck {
            key_id: id.to_owned(),
            verifier: keyring.seal(Purpose::KeyCheck, id, VERIFIER),
            created_at: Timestamp::now(),
        };
        store.insert_key_check(&check).await?;
        // Another process may have recorded this id first, possibly with another key: the
        // recorded verifier is the one that must open.
        let recorded = store.key_checks().await?.into_iter().find(|c| c.key_id == id);
        let recorded = recorded.ok_or_else(|| Error::internal(format_args!("key check `{id}` vanished")))?;
        verify(keyring, &recorded).map_err(|e| Error::failed_precondition("SECRETS-WrongKey", e.to_string()))?;
        self.inner.current_recorded.store(true, Ordering::Release);
        Ok(())
    }
}

fn verify(keyring: &Keyring, check: &KeyCheck) -> Result<(), UnlockError> {
    match keyring.open(Purpose::KeyCheck, &check.key_id, &check.verifier) {
        Ok(opened) if opened.expose() == VERIFIER => Ok(()),
        _ => Err(UnlockError::WrongKey(check.key_id.clone())),
    }
}

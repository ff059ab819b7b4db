//! Password hashing with argon2id, run off the async workers behind a semaphore sized to the
//! cores, so that a burst of logins cannot stall every other call. A check waits for a hashing
//! slot only a bounded time: a burst beyond what the cores can hash is shed, not queued.

use std::{sync::Arc, time::Duration};

use argon2::{
    Argon2, PasswordHash, PasswordVerifier,
    password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Error, ErrorClass, Result};

/// Longest password we hash: argon2 takes any length, but nobody needs more and a megabyte
/// password would be a cheap way to burn CPU.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// How long a check waits for a hashing slot by default before it is shed.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    max_wait: Duration,
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_WAIT)
    }
}

impl PasswordHasher {
    /// One hashing slot per core; a check waits at most `max_wait` for one.
    pub fn new(max_wait: Duration) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { permits: Arc::new(Semaphore::new(cores)), max_wait }
    }

    /// An argon2id PHC string with a fresh salt (the crate's defaults: OWASP's floor).
    pub async fn hash(&self, password: String) -> Result<String> {
        check_length(&password)?;
        self.slot().await?.run(move || hash_now(&password)).await
    }

    /// A hashing slot, waited for at most the configured time; RESOURCE_EXHAUSTED after it. Taken
    /// before anything is counted against a user, so a shed check costs the user nothing.
    pub async fn slot(&self) -> Result<HashSlot> {
        let permits = Arc::clone(&self.permits);
        // Waiting for a slot and hashing are slow by design: not the server's queue.
        match crate::call_clock::excused(tokio::time::timeout(self.max_wait, permits.acquire_owned())).await {
            Ok(Ok(permit)) => Ok(HashSlot { _permit: permit }),
            Ok(Err(closed)) => Err(Error::internal(closed)),
            Err(_) => Err(Error::new(
                ErrorClass::ResourceExhausted,
                "USER-HashingBusy",
                "too many password checks at once; retry shortly",
            )),
        }
    }
}

/// The right to run one argon2 computation on a core of its own.
#[derive(Debug)]
pub struct HashSlot {
    _permit: OwnedSemaphorePermit,
}

impl HashSlot {
    /// Does `password` match the stored PHC string? An over-long password matches nothing.
    pub async fn verify(self, password: String, phc: String) -> Result<bool> {
        self.run(move || verify_now(&password, &phc)).await
    }

    /// The same work as `verify` against a fixed hash, for a check that has no real hash to verify
    /// (an unknown user, a user without a password): its answer must not come sooner.
    pub async fn verify_dummy(self, password: String) -> Result<()> {
        self.run(move || verify_now(&password, DUMMY_HASH).map(drop)).await
    }

    async fn run<T: Send + 'static>(self, work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
        let result = crate::call_clock::excused(tokio::task::spawn_blocking(work)).await.map_err(Error::internal)?;
        drop(self);
        result
    }
}

fn hash_now(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(Error::internal)
}

fn verify_now(password: &str, phc: &str) -> Result<bool> {
    let parsed = PasswordHash::new(phc).map_err(Error::internal)?;
    Ok(check_length(password).is_ok() && Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// argon2id with the parameters `hash` gives real passwords (the crate's defaults), of a password
/// nobody sends: verifying against it costs what a real verification costs.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$YcLgAfAfm/beVBFJTHMJ1A$BBR8ea8dbhw46wHyRcQs7+TYi8TApTWWgBUKoxPdJ/o";

fn check_length(password: &str) -> Result<()> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(Error::invalid_argument("USER-InvalidPassword", "password must be 1 to 1024 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dummy hash costs what a real one costs only while its parameters are the ones real
    /// hashes get: a change of the crate's defaults must change it too.
    #[test]
    fn the_dummy_hash_has_the_parameters_of_real_hashes() {
        let real = hash_now("a password").unwrap();
        let (real, dummy) = (PasswordHash::new(&real).unwrap(), PasswordHash::new(DUMMY_HASH).unwrap());
        assert_eq!(real.algorithm, dummy.algorithm);
        assert_eq!(real.version, dummy.version);
        assert_eq!(real.params, dummy.params);
        assert_eq!(real.hash.map(|h| h.len()), dummy.hash.map(|h| h.len()));
        assert!(!verify_now("a password", DUMMY_HASH).unwrap());
    }

    #[tokio::test]
    async fn a_check_that_finds_no_slot_in_time_is_shed() {
        let hasher = PasswordHasher::new(Duration::from_millis(20));
        let held: Vec<HashSlot> = {
            let mut held = Vec::new();
            while let Ok(Ok(permit)) =
                tokio::time::timeout(Duration::from_millis(1), Arc::clone(&hasher.permits).acquire_owned()).await
            {
                held.push(HashSlot { _permit: permit });
            }
            held
        };
        assert!(!held.is_empty());
        let error = hasher.slot().await.unwrap_err();
        assert_eq!((error.class, error.id), (ErrorClass::ResourceExhausted, "USER-HashingBusy"));
        drop(held);
        assert!(hasher.slot().await.is_ok(), "a freed slot is taken again");
    }
}

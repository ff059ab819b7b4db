//! Password hashing with argon2id, run off the async workers behind a semaphore sized to the
//! cores, so that a burst of logins cannot stall every other call.

use std::sync::Arc;

use argon2::{
    Argon2, PasswordHash, PasswordVerifier,
    password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng},
};
use tokio::sync::Semaphore;

use super::{Error, Result};

/// Longest password we hash: argon2 takes any length, but nobody needs more and a megabyte
/// password would be a cheap way to burn CPU.
pub const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Debug, Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
}

impl Default for PasswordHasher {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { permits: Arc::new(Semaphore::new(cores)) }
    }
}

impl PasswordHasher {
    /// An argon2id PHC string with a fresh salt (the crate's defaults: OWASP's floor).
    pub async fn hash(&self, password: String) -> Result<String> {
        check_length(&password)?;
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(Error::internal)
        })
        .await
    }

    /// Does `password` match the stored PHC string?
    pub async fn verify(&self, password: String, phc: String) -> Result<bool> {
        if check_length(&password).is_err() {
            return Ok(false);
        }
        self.run(move || {
            let parsed = PasswordHash::new(&phc).map_err(Error::internal)?;
            Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
        let _permit = self.permits.acquire().await.map_err(Error::internal)?;
        tokio::task::spawn_blocking(work).await.map_err(Error::internal)?
    }
}

fn check_length(password: &str) -> Result<()> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(Error::invalid_argument("USER-InvalidPassword", "password must be 1 to 1024 bytes"));
    }
    Ok(())
}

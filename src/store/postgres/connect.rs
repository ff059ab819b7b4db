//! Reaching the PostgreSQL server: connection options, the startup wait, the retry backoff.

use super::*;

/// A short, growing, jittered pause before running a conflicting transaction again, so that the
/// transactions that collided do not collide again in lockstep.
pub(super) fn backoff(retries: u32) -> Duration {
    let ceiling_ms = 5u64 << retries.min(5);
    Duration::from_millis(rand::rng().random_range(1..=ceiling_ms))
}

pub(super) fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url).context("invalid PostgreSQL URL")?.options([
        ("statement_timeout", STATEMENT_TIMEOUT.as_millis()),
        ("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION_TIMEOUT.as_millis()),
    ]);
    // Named in pg_stat_activity, unless the URL names it already.
    Ok(if options.get_application_name().is_none() { options.application_name("sessiond") } else { options })
}

/// Where the database is, for messages (never the password).
pub(super) fn describe(options: &PgConnectOptions) -> String {
    let database = options.get_database().unwrap_or(options.get_username());
    match options.get_socket() {
        Some(socket) => format!("{}/{database}", socket.display()),
        None => format!("{}:{}/{database}", options.get_host(), options.get_port()),
    }
}

/// Start-up: the database must answer within a few bounded attempts (it may be starting next to
/// us); otherwise the start fails with a message naming it. Refusals that waiting cannot fix (a
/// wrong password, a missing database) fail at once.
pub(super) async fn wait_for_database(options: &PgConnectOptions, target: &str) -> anyhow::Result<()> {
    let mut attempt = 1;
    loop {
        let (cause, transient) =
            match tokio::time::timeout(STARTUP_CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Ok(Err(e)) => {
                    let cause = e.to_string();
                    (cause, matches!(translate(e), Failure::Store(StoreError::Unavailable(_)) | Failure::Terminated(_)))
                }
                Err(_) => (format!("no answer within {STARTUP_CONNECT_TIMEOUT:?}"), true),
            };
        if !transient {
            anyhow::bail!("PostgreSQL at {target} refused the connection: {cause}");
        }
        if attempt == STARTUP_ATTEMPTS {
            anyhow::bail!("cannot reach PostgreSQL at {target} (tried {attempt} times): {cause}");
        }
        tracing::warn!(database = %target, attempt, cause = %cause, "PostgreSQL is not reachable yet; retrying");
        tokio::time::sleep(STARTUP_RETRY_DELAY).await;
        attempt += 1;
    }
}

/// Calls waiting for a pooled connection: sqlx counts connections, not the calls queued for one.
#[derive(Debug, Default)]
pub(super) struct Waiting(std::sync::atomic::AtomicU64);

impl Waiting {
    /// Counts one waiter until the guard drops (the wait ended, or the call was dropped).
    pub(super) fn enter(&self) -> impl Drop + '_ {
        struct Leave<'a>(&'a Waiting);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Leave(self)
    }
}

pub(super) fn pool_stats(pool: &PgPool, waiting: &Waiting) -> crate::domain::port::StoreStats {
    let pool = crate::domain::port::PoolStats {
        size: pool.size(),
        idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
        max: pool.options().get_max_connections(),
        waiting: waiting.0.load(std::sync::atomic::Ordering::Relaxed),
    };
    crate::domain::port::StoreStats { pool: Some(pool), ..Default::default() }
}

//! One store call on the pool: a connection, the call's statements (again after a serialization
//! failure, a deadlock or a terminated connection), all within one budget.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::{PgConnection, PgPool};
use tokio::time::Instant;

use super::{
    CALL_TIMEOUT, MAX_CONNECTIONS, MAX_RETRIES, PostgresStore, StoreError, StoreResult, backoff,
    connect::Waiting,
    error::{Failure, translate},
};

/// The pool and its waiters: what a store call needs, shared by the store and its lanes (`batch`).
#[derive(Debug, Clone)]
pub(super) struct Db {
    pub(super) pool: PgPool,
    /// Calls waiting for a connection (for metrics).
    pub(super) waiting: Arc<Waiting>,
}

impl PostgresStore {
    /// `Db::run` on the store's pool.
    pub(super) async fn run<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send,
        F: for<'c> Fn(&'c mut PgConnection) -> BoxFuture<'c, Result<T, Failure>> + Send + Sync,
    {
        self.db.run(op).await
    }
}

impl Db {
    /// Runs one store call: a connection, then `op` (again after a serialization failure or
    /// deadlock), all within `CALL_TIMEOUT`. `op` may run several times, so it owns its inputs.
    pub(super) async fn run<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send,
        F: for<'c> Fn(&'c mut PgConnection) -> BoxFuture<'c, Result<T, Failure>> + Send + Sync,
    {
        self.run_until(Instant::now() + CALL_TIMEOUT, op).await
    }

    /// `run` within a budget that ends at `deadline` (a call of several statements shares one).
    pub(super) async fn run_until<T, F>(&self, deadline: Instant, op: F) -> StoreResult<T>
    where
        T: Send,
        F: for<'c> Fn(&'c mut PgConnection) -> BoxFuture<'c, Result<T, Failure>> + Send + Sync,
    {
        let acquire = || async {
            let _waiting = self.waiting.enter();
            match tokio::time::timeout_at(deadline, self.pool.acquire()).await {
                Ok(Ok(conn)) => Ok(conn),
                Ok(Err(e)) => Err(translate(e).into_store()),
                Err(_) => Err(StoreError::Unavailable("no database connection in time".into())),
            }
        };
        let mut conn = acquire().await?;
        let mut retries = 0;
        // Every pooled connection may have been terminated at once: try each, then a new one.
        let mut reconnects = 0;
        loop {
            let error = match tokio::time::timeout_at(deadline, op(&mut conn)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(Failure::Terminated(cause))) if reconnects <= MAX_CONNECTIONS => {
                    // The server ended this connection (its transaction, if any, rolled back):
                    // again on another one.
                    tracing::debug!(cause = %cause, "a pooled connection was terminated; reconnecting");
                    reconnects += 1;
                    conn.close_on_drop();
                    conn = acquire().await?;
                    continue;
                }
                Ok(Err(Failure::Retry(cause))) => {
                    let delay = backoff(retries);
                    if retries >= MAX_RETRIES || Instant::now() + delay >= deadline {
                        tracing::warn!(cause = %cause, retries, "giving up on a transaction that kept conflicting");
                        return Err(StoreError::Conflict);
                    }
                    retries += 1;
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Ok(Err(failure @ (Failure::Store(_) | Failure::Terminated(_)))) => failure.into_store(),
                Err(_) => StoreError::Unavailable("the database did not answer in time".into()),
            };
            if matches!(error, StoreError::Unavailable(_)) {
                // The connection may be mid-statement or dead: returning it to the pool would make
                // the pool test it without a deadline. Close it instead (sqlx bounds that close).
                conn.close_on_drop();
            }
            return Err(error);
        }
    }
}

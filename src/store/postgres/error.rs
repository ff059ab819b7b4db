//! Driver errors stop here: each `sqlx::Error` becomes what the domain can act on, by named
//! SQLSTATE (a conflict to retry, a taken key, an unreachable database, or a bug).

use crate::store::StoreError;

/// The SQLSTATEs this store acts on (PostgreSQL's Appendix A; CockroachDB and YugabyteDB use the
/// same codes).
mod sqlstate {
    pub(super) const UNIQUE_VIOLATION: &str = "23505";
    pub(super) const SERIALIZATION_FAILURE: &str = "40001";
    pub(super) const DEADLOCK_DETECTED: &str = "40P01";
    /// CockroachDB: the connection broke while a commit was in flight; its outcome is unknown.
    pub(super) const STATEMENT_COMPLETION_UNKNOWN: &str = "40003";
    /// `statement_timeout` fired (or the statement was cancelled).
    pub(super) const QUERY_CANCELED: &str = "57014";
    /// `pg_terminate_backend`, a fast shutdown.
    pub(super) const ADMIN_SHUTDOWN: &str = "57P01";
    pub(super) const CRASH_SHUTDOWN: &str = "57P02";
    /// The server is starting up or shutting down.
    pub(super) const CANNOT_CONNECT_NOW: &str = "57P03";
    pub(super) const LOCK_NOT_AVAILABLE: &str = "55P03";
    pub(super) const DUPLICATE_TABLE: &str = "42P07";
    pub(super) const DUPLICATE_OBJECT: &str = "42710";
    /// `ALTER TABLE ... ADD COLUMN` of a column a concurrent migration added first.
    pub(super) const DUPLICATE_COLUMN: &str = "42701";
    /// Class 08: connection exceptions.
    pub(super) const CONNECTION_EXCEPTION: &str = "08";
    /// Class 53: insufficient resources (too many connections, out of memory, disk full).
    pub(super) const INSUFFICIENT_RESOURCES: &str = "53";
}

/// How one run of a call failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// A serialization failure or deadlock: the transaction was rolled back; running it again may
    /// succeed.
    Retry(String),
    /// The server terminated the connection (`pg_terminate_backend`, a crash restart): whatever
    /// ran on it was rolled back; the call may run again on another connection.
    Terminated(String),
    /// Final.
    Store(StoreError),
}

impl Failure {
    pub(super) fn into_store(self) -> StoreError {
        match self {
            Self::Retry(_) => StoreError::Conflict,
            Self::Terminated(cause) => StoreError::Unavailable(cause),
            Self::Store(e) => e,
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        translate(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Driver errors stop here: named SQLSTATEs and connection failures become what the domain acts on.
pub(super) fn translate(e: sqlx::Error) -> Failure {
    use sqlstate::*;
    let unavailable = |e: &sqlx::Error| Failure::Store(StoreError::Unavailable(e.to_string()));
    match &e {
        sqlx::Error::Database(db) => match db.code().as_deref().unwrap_or_default() {
            SERIALIZATION_FAILURE | DEADLOCK_DETECTED => Failure::Retry(e.to_string()),
            ADMIN_SHUTDOWN | CRASH_SHUTDOWN => Failure::Terminated(e.to_string()),
            UNIQUE_VIOLATION => Failure::Store(StoreError::AlreadyExists(db.message().to_owned())),
            QUERY_CANCELED | CANNOT_CONNECT_NOW | LOCK_NOT_AVAILABLE | STATEMENT_COMPLETION_UNKNOWN => unavailable(&e),
            code if code.starts_with(CONNECTION_EXCEPTION) || code.starts_with(INSUFFICIENT_RESOURCES) => {
                unavailable(&e)
            }
            _ => Failure::Store(StoreError::Internal(e.to_string())),
        },
        // The connection broke, the pool could not get one in time, or the store is closed.
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => unavailable(&e),
        _ => Failure::Store(StoreError::Internal(e.to_string())),
    }
}

/// Did a migration fail because a concurrent starter applied the same thing first?
pub(super) fn lost_race(e: &anyhow::Error) -> bool {
    use sqlstate::*;
    let code = match e.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(db)) => db.code(),
        _ => None,
    };
    matches!(
        code.as_deref(),
        Some(
            UNIQUE_VIOLATION
                | DUPLICATE_TABLE
                | DUPLICATE_OBJECT
                | DUPLICATE_COLUMN
                | SERIALIZATION_FAILURE
                | DEADLOCK_DETECTED
        )
    )
}

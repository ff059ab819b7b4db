//! Persistence: SQLite (the embedded default) and PostgreSQL, each implementing the domain's port
//! (`domain::port::Store`, re-exported here) over the domain's plain records; driver errors are
//! translated into `StoreError` at this boundary.

mod codec;
mod files;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

pub use crate::domain::port::{
    SessionFilter, Store, StoreError, StoreResult, Termination, TerminationCheck, TerminationStep, terminated,
    termination_step,
};

/// How much an acknowledged write survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives a crash of the process (SQLite WAL with synchronous=NORMAL).
    #[default]
    Normal,
    /// Survives power loss: fsync before the answer (synchronous=FULL).
    Full,
}

/// Opens the store a database URL names: `sqlite:PATH` (or a bare path) or `postgres://...`
/// (`postgresql://...`), migrating its schema. `durability` is SQLite's: PostgreSQL's is the
/// server's own setting (`synchronous_commit`).
pub async fn open(url: &str, durability: Durability) -> anyhow::Result<Arc<dyn Store>> {
    if is_postgres(url) {
        return Ok(Arc::new(postgres::PostgresStore::open(url).await?));
    }
    let path = sqlite_path(url).unwrap_or(url);
    Ok(Arc::new(sqlite::SqliteStore::open(path, durability).await?))
}

/// The file a SQLite database URL names; `None` for PostgreSQL.
pub fn sqlite_path(url: &str) -> Option<&str> {
    if is_postgres(url) {
        return None;
    }
    Some(url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url))
}

pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A database URL fit for messages and logs: any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if is_postgres(url) && parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redact_url_hides_only_the_password() {
        assert_eq!(
            redact_url("postgres://u:secret@db:5432/x?sslmode=require"),
            "postgres://u:***@db:5432/x?sslmode=require"
        );
        assert_eq!(redact_url("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(redact_url("sqlite:sessiond.db"), "sqlite:sessiond.db");
    }
}

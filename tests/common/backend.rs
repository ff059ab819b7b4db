//! Which database a test runs against. SQLite always; PostgreSQL when `SESSIOND_TEST_POSTGRES`
//! holds a server URL (each test then gets a schema of its own, so runs never collide).

#![allow(dead_code)]

use std::path::PathBuf;

/// A store backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database made for one test; dropped with it (SQLite: the temp dir goes).
#[derive(Debug)]
pub struct TestDb {
    pub backend: Backend,
    /// The URL to hand to `--database` / `Config::database`.
    pub url: String,
    /// For SQLite: the file's directory (kept alive for the test's duration).
    pub dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh, empty database for `backend`; `None` when that backend is not configured here
    /// (PostgreSQL without `SESSIOND_TEST_POSTGRES`): the caller returns early.
    pub async fn fresh(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path: PathBuf = dir.path().join("sessiond.db");
                Some(Self { backend, url: format!("sqlite:{}", path.display()), dir: Some(dir) })
            }
            Backend::Postgres => {
                let base = std::env::var("SESSIOND_TEST_POSTGRES").ok()?;
                Some(Self { backend, url: fresh_postgres_schema(&base).await, dir: None })
            }
        }
    }
}

/// Creates a schema with a random name and returns a URL whose connections use it.
async fn fresh_postgres_schema(base: &str) -> String {
    let _ = base;
    unimplemented!("PostgreSQL store not built yet")
}

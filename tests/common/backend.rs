//! Which database a test runs against. SQLite always; PostgreSQL when `SESSIOND_TEST_POSTGRES`
//! holds a server URL (each test then gets a schema of its own, so runs never collide).

// Each test crate uses a part of this file, and its items are public to whichever crate includes it.
#![allow(dead_code, unreachable_pub)]

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
    /// The secrets key file to hand to `--secrets-key-file` / `Config::secrets_key_file`: none
    /// for SQLite (the database's own is created beside it), the suites' shared test key for
    /// PostgreSQL (which requires one).
    pub secrets_key_file: Option<PathBuf>,
}

impl TestDb {
    /// A fresh, empty database for `backend`; `None` when that backend is not configured here
    /// (PostgreSQL without `SESSIOND_TEST_POSTGRES`): the caller returns early.
    pub async fn fresh(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path: PathBuf = dir.path().join("sessiond.db");
                Some(Self {
                    backend,
                    url: format!("sqlite:{}", path.display()),
                    dir: Some(dir),
                    secrets_key_file: None,
                })
            }
            Backend::Postgres => {
                let Some(base) = postgres_base_url() else {
                    eprintln!("SKIPPED: {POSTGRES_ENV} is not set; this PostgreSQL test passes without running");
                    return None;
                };
                let url = fresh_postgres_schema(&base).await;
                Some(Self { backend, url, dir: None, secrets_key_file: Some(postgres_secrets_key_file()) })
            }
        }
    }
}

/// The environment variable naming the PostgreSQL server the suites run against.
pub const POSTGRES_ENV: &str = "SESSIOND_TEST_POSTGRES";
/// Test schemas are named `sessiond_test_<unix seconds>_<random>`; ones older than this are left
/// over from runs that died, and the next run drops them.
const STALE_SCHEMA_SECS: u64 = 2 * 3600;

impl Backend {
    /// Every backend, for tests that run once per backend.
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
}

/// The secrets key every PostgreSQL test shares (a test-only fixture of the repository).
pub fn postgres_secrets_key_file() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/postgres.secrets-key"))
}

/// The secrets key file a process on `database` is given: the shared test key on PostgreSQL,
/// none on SQLite (its own beside the database).
pub fn secrets_key_file_for(database: &str) -> Option<PathBuf> {
    database.starts_with("postgres").then(postgres_secrets_key_file)
}

/// The PostgreSQL server URL when one is configured.
pub fn postgres_base_url() -> Option<String> {
    std::env::var(POSTGRES_ENV).ok().filter(|url| !url.is_empty())
}

impl TestDb {
    /// Removes the database now (PostgreSQL: drops the schema). Tests that fail skip this and
    /// leave it for inspection; a later run drops what is left after a while.
    pub async fn remove(self) {
        let (Some(base), Some(schema)) = (postgres_base_url(), self.postgres_schema()) else { return };
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_ENV} is set but PostgreSQL cannot be reached: {e}"));
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut conn).await;
        let _ = conn.close().await;
    }

    /// The PostgreSQL schema this database lives in.
    pub fn postgres_schema(&self) -> Option<String> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let url = url::Url::parse(&self.url).ok()?;
        let options = url.query_pairs().find(|(k, _)| k == "options")?.1.into_owned();
        options.split_whitespace().find_map(|o| o.strip_prefix("search_path=")).map(str::to_owned)
    }
}

/// Creates a schema with a random name and returns a URL whose connections use it: sqlx passes
/// the URL's `options` parameter to the server as startup options, so `-c search_path=<schema>`
/// puts every table the store creates or reads in that schema. Panics (fails the test) when the
/// server cannot be reached: a configured PostgreSQL never skips silently.
async fn fresh_postgres_schema(base: &str) -> String {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_ENV} is set but PostgreSQL cannot be reached: {e}"));
    drop_stale_schemas(&mut conn).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs();
    let schema = format!("sessiond_test_{now}_{:016x}", rand::random::<u64>());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create the test schema {schema}: {e}"));
    let _ = conn.close().await;
    with_search_path(base, &schema)
}

/// `base` with its connections' `search_path` set to `schema`.
pub fn with_search_path(base: &str, schema: &str) -> String {
    with_query_pair(base, "options", &format!("-c search_path={schema}"))
}

/// `url` with one more query parameter (e.g. `application_name`, to find a process's connections).
pub fn with_query_pair(url: &str, key: &str, value: &str) -> String {
    let mut url = url::Url::parse(url).unwrap_or_else(|e| panic!("{POSTGRES_ENV} is not a URL: {e}"));
    url.query_pairs_mut().append_pair(key, value);
    url.to_string()
}

/// Drops test schemas left behind by runs that died, once per test process.
async fn drop_stale_schemas(conn: &mut sqlx::PgConnection) {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::TEXT FROM pg_namespace WHERE nspname LIKE 'sessiond\\_test\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names {
        let created = name.split('_').nth(2).and_then(|s| s.parse::<u64>().ok()).unwrap_or(now);
        if now.saturating_sub(created) > STALE_SCHEMA_SECS {
            // Best effort: another run may be dropping it too.
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).execute(&mut *conn).await;
        }
    }
}

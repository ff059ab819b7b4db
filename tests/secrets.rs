//! Secrets at rest: TOTP seeds never reach the database in clear (not even its WAL), the SQLite
//! files and the key file are readable by their owner only, a missing or wrong key stops the start
//! with a message that says which, keys rotate, and seeds an older version kept in clear are
//! sealed at start.

#[macro_use]
mod common;
#[path = "common/process.rs"]
mod process;

use std::{
    path::{Path, PathBuf},
    process::Output,
    sync::Arc,
};

use common::{Backend, Outcome, Protocol, Rpc, TestServer, backend::TestDb};
use serde_json::json;
use sessiond::{
    config::Config,
    domain::{Permission, Timestamp, keyring::Keyring, totp},
    keyfile,
    store::{self, Store},
};

// `process` finds the test key through `super::backend`.
use common::backend;

const ALL_PERMISSIONS: [Permission; 3] = [Permission::SessionRead, Permission::SessionWrite, Permission::SessionDelete];

/// Checks `user_id` into a new session and then the TOTP code of `seed` for the current time step
/// plus `ahead` (within the accepted skew: a second login in the same step uses the next one).
async fn totp_login(server: &TestServer, token: &str, user_id: &str, seed: &[u8], ahead: i64) -> Outcome {
    let created = server.create(Protocol::Grpc, user_id, token).await;
    let step = totp::step_at(Timestamp::now().micros() / 1_000_000) + ahead;
    let code = totp::code_for_step(seed, step);
    let request = json!({"sessionId": created.id, "checks": {"totp": {"code": code}}});
    server.call(Protocol::Grpc, Rpc::SetSession, request, token).await
}

fn sqlite_file(db: &TestDb) -> PathBuf {
    PathBuf::from(store::sqlite_path(&db.url).expect("a SQLite database"))
}

/// The database file and its `-wal` and `-shm` (those that exist).
fn database_files(db_file: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", db_file.display())))
        .filter(|p| p.exists())
        .collect()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Panics if the seed, raw or in base32, is in any of the database's files.
fn assert_nowhere_in(files: &[PathBuf], seed: &[u8]) {
    let base32 = totp::base32(seed);
    for file in files {
        let bytes = std::fs::read(file).unwrap();
        assert!(!contains(&bytes, seed), "the TOTP seed is in {} in clear", file.display());
        assert!(!contains(&bytes, base32.as_bytes()), "the TOTP seed is in {} in base32", file.display());
    }
}

fn write_key_file(path: &Path, ids: &[&str], keys: &std::collections::HashMap<&str, String>) {
    let text: Vec<&str> = ids.iter().map(|id| keys[id].as_str()).collect();
    std::fs::write(path, text.join("\n")).unwrap();
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `sessiond serve` on `database` with `extra` global arguments; the start must fail.
fn failed_start(database: &str, extra: &[&str]) -> String {
    let addr = process::free_addr().to_string();
    let out = process::sessiond_command(database)
        .args(extra)
        .args(["serve", "--listen", &addr])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the start succeeded: {}", stderr(&out));
    stderr(&out)
}

#[tokio::test]
async fn database_and_key_files_are_readable_by_their_owner_only() {
    let mut server = TestServer::sqlite().await;
    let db_file = sqlite_file(server.db());
    let ui = server.actor("ui", &ALL_PERMISSIONS).await;
    let user = server.user("alice").await;
    let seed = common::otpauth_secret(&server.users.add_totp(&user, "test").await.unwrap());
    totp_login(&server, &ui.token, &user, &seed, 0).await.ok();

    let files = database_files(&db_file);
    assert_eq!(files.len(), 3, "the database, its -wal and -shm exist while serving: {files:?}");
    let key_file = keyfile::beside_database(&server.config.database).unwrap();
    for file in files.iter().chain([&key_file]) {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    server.stop().await;
}

#[tokio::test]
async fn a_totp_seed_appears_nowhere_in_the_database_files() {
    let mut server = TestServer::sqlite().await;
    let db_file = sqlite_file(server.db());
    let ui = server.actor("ui", &ALL_PERMISSIONS).await;
    let user = server.user("alice").await;
    let seed = common::otpauth_secret(&server.users.add_totp(&user, "test").await.unwrap());
    assert_eq!(seed.len(), 20);
    let login = totp_login(&server, &ui.token, &user, &seed, 0).await;
    assert!(login.ok()["details"]["sequence"].is_string(), "{login:?}");

    // While serving: the WAL holds the latest writes.
    let files = database_files(&db_file);
    assert!(files.iter().any(|f| f.to_string_lossy().ends_with("-wal")), "{files:?}");
    assert_nowhere_in(&files, &seed);
    server.stop().await;
    assert_nowhere_in(&database_files(&db_file), &seed);
}

/// The start checks the key file against the database: a key of another id, the same id with
/// another key, or no key file at all fail the start and say so; `users add-totp` too.
#[tokio::test]
async fn a_missing_or_wrong_key_fails_the_start_clearly() {
    let db = TestDb::fresh(Backend::Sqlite).await.unwrap();
    let user = process::add_user(&db.url, "alice");
    process::cli(&db.url, &["users", "add-totp", "--", &user]);
    let key_file = keyfile::beside_database(&db.url).unwrap();
    let original = std::fs::read_to_string(&key_file).unwrap();
    let key_id = Keyring::parse(&original).unwrap().current_key_id().to_owned();

    // The same id, another key.
    let impostor = Keyring::generate_line(Some(&key_id)).unwrap();
    std::fs::write(&key_file, &impostor).unwrap();
    let message = failed_start(&db.url, &[]);
    assert!(
        message.contains(&format!("key `{key_id}` in the secrets key file is not the key that sealed")),
        "{message}"
    );
    let enrol = process::sessiond_cli(&db.url, &["users", "add-totp", "--", &user]);
    assert!(!enrol.status.success() && stderr(&enrol).contains("is not the key that sealed"), "{}", stderr(&enrol));

    // Another id.
    let other = db.dir.as_ref().unwrap().path().join("other.key");
    std::fs::write(&other, Keyring::generate_line(Some("other")).unwrap()).unwrap();
    let message = failed_start(&db.url, &["--secrets-key-file", other.to_str().unwrap()]);
    assert!(
        message.contains(&format!("sealed with key `{key_id}`, which the secrets key file does not hold")),
        "{message}"
    );

    // No key file at all: never a fresh key for a database that has sealed secrets.
    std::fs::remove_file(&key_file).unwrap();
    let message = failed_start(&db.url, &[]);
    assert!(message.contains(&format!("sealed with key {key_id}, but its secrets key file")), "{message}");
    assert!(message.contains("is missing"), "{message}");
    assert!(!key_file.exists(), "no new key was made");

    // A malformed key file names the line, never the key.
    std::fs::write(&key_file, format!("{original}\nbroken-line")).unwrap();
    let message = failed_start(&db.url, &[]);
    assert!(message.contains("is malformed") && message.contains("line 5"), "{message}");
    assert!(!message.contains(original.lines().last().unwrap().split_once(' ').unwrap().1), "{message}");

    // The right key starts again.
    std::fs::write(&key_file, &original).unwrap();
    let server = process::Sessiond::start(&db.url).await;
    drop(server);
}

#[tokio::test]
async fn postgres_refuses_to_start_without_a_key_file() {
    let Some(db) = TestDb::fresh(Backend::Postgres).await else { return };
    let addr = process::free_addr().to_string();
    let out = process::sessiond_command(&db.url)
        .env_remove("SESSIOND_SECRETS_KEY_FILE")
        .args(["serve", "--listen", &addr])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("PostgreSQL needs a secrets key file"), "{}", stderr(&out));
    // In process too.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config { database: db.url.clone(), ..Config::default() };
    let error = sessiond::server::run(listener, config, std::future::pending()).await.unwrap_err();
    assert!(format!("{error:#}").contains("--secrets-key-file"), "{error:#}");
    db.remove().await;
}

backend_test!(keys_rotate_old_secrets_open_and_new_ones_seal_with_the_new_key);
async fn keys_rotate_old_secrets_open_and_new_ones_seal_with_the_new_key(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let keys: std::collections::HashMap<&str, String> =
        ["old", "new"].into_iter().map(|id| (id, Keyring::generate_line(Some(id)).unwrap())).collect();
    let (old_only, both, new_only) = (dir.path().join("old"), dir.path().join("both"), dir.path().join("new"));
    write_key_file(&old_only, &["old"], &keys);
    write_key_file(&both, &["new", "old"], &keys);
    write_key_file(&new_only, &["new"], &keys);

    let Some(mut server) = TestServer::on_with(backend, |c| c.secrets_key_file = Some(old_only.clone())).await else {
        return;
    };
    let ui = server.actor("ui", &ALL_PERMISSIONS).await;
    let alice = server.user("alice").await;
    let alice_seed = common::otpauth_secret(&server.users.add_totp(&alice, "test").await.unwrap());
    let sealed_with = |user: sessiond::domain::user::User| user.totp.unwrap().sealed.key_id().unwrap().to_owned();
    assert_eq!(sealed_with(server.users.user(&alice).await.unwrap()), "old");

    // The new key first, the old one still there: old secrets open, new ones seal with the new key.
    server.config.secrets_key_file = Some(both.clone());
    server.restart().await;
    totp_login(&server, &ui.token, &alice, &alice_seed, 0).await.ok();
    let bob = server.user("bob").await;
    let bob_seed = common::otpauth_secret(&server.users.add_totp(&bob, "test").await.unwrap());
    assert_eq!(sealed_with(server.users.user(&bob).await.unwrap()), "new");
    totp_login(&server, &ui.token, &bob, &bob_seed, 0).await.ok();
    server.stop().await;

    // Without the old key the start fails while anything is sealed with it...
    let database = server.config.database.clone();
    let refused = keyfile::unlock(&database, Some(&new_only), open(&database).await).await.unwrap_err();
    assert!(format!("{refused:#}").contains("sealed with key `old`, which the secrets key file does not hold"));

    // ...until `secrets rotate` re-seals it with the new key and retires the old one.
    let out = process::sessiond_cli(&database, &["--secrets-key-file", both.to_str().unwrap(), "secrets", "rotate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("re-sealed 1 secrets with key `new`"), "{}", stderr(&out));
    assert!(stderr(&out).contains("no longer needed (their lines may leave the key file): old"), "{}", stderr(&out));

    server.config.secrets_key_file = Some(new_only);
    server.restart().await;
    assert_eq!(sealed_with(server.users.user(&alice).await.unwrap()), "new");
    totp_login(&server, &ui.token, &alice, &alice_seed, 1).await.ok();
    totp_login(&server, &ui.token, &bob, &bob_seed, 1).await.ok();
    server.stop().await;
}

async fn open(database: &str) -> Arc<dyn Store> {
    store::open(database, Default::default()).await.unwrap()
}

backend_test!(seeds_kept_in_clear_by_an_older_version_are_sealed_at_start);
async fn seeds_kept_in_clear_by_an_older_version_are_sealed_at_start(backend: Backend) {
    let Some(db) = TestDb::fresh(backend).await else { return };
    let seed: Vec<u8> = (0..20).map(|_| rand::random::<u8>()).collect();
    let legacy_user = "legacy-user-1";
    match backend {
        Backend::Sqlite => {
            legacy_sqlite(&sqlite_file(&db), legacy_user, &seed);
            let files = database_files(&sqlite_file(&db));
            assert!(
                files.iter().any(|f| contains(&std::fs::read(f).unwrap(), &seed)),
                "the old version's seed is in clear"
            );
        }
        Backend::Postgres => legacy_postgres(&db.url, legacy_user, &seed).await,
    }

    let mut server = TestServer::start(db).await;
    let ui = server.actor("ui", &ALL_PERMISSIONS).await;
    let login = totp_login(&server, &ui.token, legacy_user, &seed, 0).await;
    assert!(login.ok()["details"]["sequence"].is_string(), "the old seed still logs in: {login:?}");
    let user = server.users.user(legacy_user).await.unwrap();
    assert!(!contains(user.totp.unwrap().sealed.as_bytes(), &seed));
    let store = open(&server.config.database).await;
    assert!(store.clear_totp_secrets().await.unwrap().is_empty(), "no clear copy is left");
    store.close().await;
    server.stop().await;

    if backend == Backend::Sqlite {
        let files = database_files(&sqlite_file(server.db()));
        for file in &files {
            assert_eq!(mode(file), 0o600, "an old 0644 file is now {:o}: {}", mode(file), file.display());
        }
        assert_nowhere_in(&files, &seed);
    }
}

/// A database as the version before sealing wrote it: schema 1, a 0644 file, a seed in clear.
fn legacy_sqlite(path: &Path, user_id: &str, seed: &[u8]) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
    conn.execute_batch(include_str!("../migrations/sqlite/0001_init.sql")).unwrap();
    conn.execute_batch("PRAGMA user_version = 1;").unwrap();
    conn.execute(
        "INSERT INTO users (id, login_name, display_name, org_id, state, totp_secret, created_at) \
         VALUES (?1, 'legacy', 'legacy', 'default', 'active', ?2, 0)",
        rusqlite::params![user_id, seed],
    )
    .unwrap();
    // Neighbours on the same pages, so that sealing moves cells around.
    for i in 0..40 {
        let other: Vec<u8> = (0..20).map(|_| rand::random::<u8>()).collect();
        conn.execute(
            "INSERT INTO users (id, login_name, display_name, org_id, state, totp_secret, created_at) \
             VALUES (?1, ?1, ?1, 'default', 'active', ?2, 0)",
            rusqlite::params![format!("neighbour-{i:02}"), other],
        )
        .unwrap();
    }
    drop(conn);
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

async fn legacy_postgres(url: &str, user_id: &str, seed: &[u8]) {
    use sqlx::{Connection as _, Executor as _};
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    conn.execute(include_str!("../migrations/postgres/0001_init.sql")).await.unwrap();
    conn.execute("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .await
        .unwrap();
    conn.execute("INSERT INTO schema_migrations VALUES (1, 0)").await.unwrap();
    sqlx::query(
        "INSERT INTO users (id, login_name, display_name, org_id, state, totp_secret, created_at) \
         VALUES ($1, 'legacy', 'legacy', 'default', 'active', $2, 0)",
    )
    .bind(user_id)
    .bind(seed)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}

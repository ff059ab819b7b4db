//! The PostgreSQL store's retries, deadlines and SQLSTATE translation against a real server, with
//! real serialization failures, deadlocks and timeouts. Runs when `SESSIOND_TEST_POSTGRES` is set
//! (a connection failure then fails the test); passes without running otherwise.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use sqlx::{Connection as _, Executor as _, PgConnection, postgres::PgPoolOptions};
use tokio::time::Instant;

use super::{ACQUIRE_TIMEOUT, CALL_TIMEOUT, MAX_RETRIES, PostgresStore, connect_options, error::Failure, translate};
use crate::store::{Store as _, StoreError};

/// A throwaway schema holding `t (k, v)` with rows 1 and 2, dropped at the end.
struct Scratch {
    base: String,
    schema: String,
    url: String,
}

impl Scratch {
    async fn new() -> Option<Self> {
        let base = std::env::var("SESSIOND_TEST_POSTGRES").ok().filter(|u| !u.is_empty())?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        // Named like the integration tests' schemas, so that their clean-up finds leftovers.
        let schema = format!("sessiond_test_{now}_{:016x}", rand::random::<u64>());
        let mut url = url::Url::parse(&base).expect("SESSIOND_TEST_POSTGRES is a URL");
        url.query_pairs_mut().append_pair("options", &format!("-c search_path={schema}"));
        let scratch = Self { base, schema, url: url.to_string() };
        let mut conn = PgConnection::connect(&scratch.base).await.expect("SESSIOND_TEST_POSTGRES is reachable");
        sqlx::raw_sql(&format!(
            "CREATE SCHEMA {0}; CREATE TABLE {0}.t (k INT PRIMARY KEY, v INT NOT NULL); \
             INSERT INTO {0}.t VALUES (1, 0), (2, 0)",
            scratch.schema
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        Some(scratch)
    }

    async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }

    /// A store over the schema, as `open` builds it but without migrating.
    fn store(&self) -> PostgresStore {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(connect_options(&self.url).unwrap());
        PostgresStore::over(pool)
    }

    async fn remove(self) {
        let mut conn = PgConnection::connect(&self.base).await.unwrap();
        sqlx::raw_sql(&format!("DROP SCHEMA {} CASCADE", self.schema)).execute(&mut conn).await.unwrap();
    }
}

/// Runs `sql` (one or more statements, unprepared).
async fn exec(conn: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    conn.execute(sql).await.map(drop)
}

/// Servers and tests spawn `open` (and every call) onto multi-threaded runtimes.
#[test]
fn store_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    send(&crate::store::open("postgres://localhost/x", crate::store::Durability::Normal));
    send(&PostgresStore::open("postgres://localhost/x"));
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn real_errors_translate_by_sqlstate() {
    let Some(scratch) = Scratch::new().await else { return };
    let (mut a, mut b) = (scratch.connect().await, scratch.connect().await);

    // 40001: a repeatable-read transaction updates a row changed since its snapshot.
    exec(&mut a, "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT v FROM t WHERE k = 1").await.unwrap();
    exec(&mut b, "UPDATE t SET v = v + 1 WHERE k = 1").await.unwrap();
    let e = exec(&mut a, "UPDATE t SET v = v + 1 WHERE k = 1").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("40001"));
    assert!(matches!(translate(e), Failure::Retry(_)));
    exec(&mut a, "ROLLBACK").await.unwrap();

    // 40P01: two transactions lock rows 1 and 2 in opposite orders.
    exec(&mut a, "BEGIN; UPDATE t SET v = v + 1 WHERE k = 1").await.unwrap();
    exec(&mut b, "BEGIN; UPDATE t SET v = v + 1 WHERE k = 2").await.unwrap();
    let waiting = tokio::spawn(async move {
        let result = exec(&mut a, "UPDATE t SET v = v + 1 WHERE k = 2").await;
        (a, result)
    });
    // Let `a` block on row 2 first, so that `b` closes the cycle.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let closing = exec(&mut b, "UPDATE t SET v = v + 1 WHERE k = 1").await;
    let (mut a, waited) = waiting.await.unwrap();
    let deadlocked: Vec<sqlx::Error> = [waited, closing].into_iter().filter_map(Result::err).collect();
    assert_eq!(deadlocked.len(), 1, "{deadlocked:?}");
    let e = deadlocked.into_iter().next().unwrap();
    assert_eq!(sqlstate(&e).as_deref(), Some("40P01"));
    assert!(matches!(translate(e), Failure::Retry(_)));
    exec(&mut a, "ROLLBACK").await.unwrap();
    exec(&mut b, "ROLLBACK").await.unwrap();

    // 23505: a taken key.
    let e = exec(&mut a, "INSERT INTO t VALUES (1, 0)").await.unwrap_err();
    assert!(matches!(translate(e), Failure::Store(StoreError::AlreadyExists(_))));

    // 57014: the statement timeout fired.
    let e = exec(&mut a, "SET statement_timeout = 50; SELECT pg_sleep(5)").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("57014"));
    assert!(matches!(translate(e), Failure::Store(StoreError::Unavailable(_))));

    // 57P01: the server terminated the connection (the store then runs the call again on another).
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut a).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(&mut b).await.unwrap();
    let e = sqlx::query("SELECT 1").execute(&mut a).await.unwrap_err();
    let failure = translate(e);
    assert!(matches!(failure, Failure::Terminated(_)), "{failure:?}");

    // A bug (here: a missing table) is internal.
    let e = sqlx::query("SELECT * FROM missing").execute(&mut b).await.unwrap_err();
    assert!(matches!(translate(e), Failure::Store(StoreError::Internal(_))));
    scratch.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_serialization_failure_is_retried_on_a_fresh_transaction() {
    let Some(scratch) = Scratch::new().await else { return };
    let store = scratch.store();
    let meddler = Arc::new(tokio::sync::Mutex::new(scratch.connect().await));
    let runs = Arc::new(AtomicU32::new(0));
    let (meddler_in, runs_in) = (Arc::clone(&meddler), Arc::clone(&runs));
    let value = store
        .run(move |conn| {
            let (meddler, runs) = (Arc::clone(&meddler_in), Arc::clone(&runs_in));
            Box::pin(async move {
                let run = runs.fetch_add(1, Ordering::SeqCst);
                let mut tx = conn.begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
                let v: i32 = sqlx::query_scalar("SELECT v FROM t WHERE k = 1").fetch_one(&mut *tx).await?;
                if run == 0 {
                    // Another writer changes the row under the first run only.
                    let mut other = meddler.lock().await;
                    sqlx::query("UPDATE t SET v = v + 100 WHERE k = 1").execute(&mut *other).await?;
                }
                sqlx::query("UPDATE t SET v = $1 WHERE k = 1").bind(v + 1).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(v + 1)
            })
        })
        .await;
    assert_eq!(value, Ok(101), "the second run saw the other writer's change");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    store.close().await;
    scratch.remove().await;
}

#[tokio::test]
async fn conflicts_are_retried_a_bounded_number_of_times_then_answer_conflict() {
    let Some(scratch) = Scratch::new().await else { return };
    let store = scratch.store();

    let runs = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&runs);
    let started = Instant::now();
    let result: Result<(), _> = store
        .run(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Err(Failure::Retry("40001".into())) })
        })
        .await;
    assert_eq!(result, Err(StoreError::Conflict));
    assert_eq!(runs.load(Ordering::SeqCst), MAX_RETRIES + 1);
    assert!(started.elapsed() < CALL_TIMEOUT);

    let runs = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&runs);
    let result = store
        .run(move |_| {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { if run < 2 { Err(Failure::Retry("40P01".into())) } else { Ok(run) } })
        })
        .await;
    assert_eq!(result, Ok(2));
    store.close().await;
    scratch.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_calls_answer_unavailable_within_the_call_budget() {
    let Some(scratch) = Scratch::new().await else { return };
    let store = scratch.store();

    // The server gives up first (statement_timeout) ...
    let started = Instant::now();
    let result = store
        .run(|conn| {
            Box::pin(async move {
                sqlx::query("SELECT pg_sleep(10)").execute(conn).await?;
                Ok(())
            })
        })
        .await;
    assert!(matches!(result, Err(StoreError::Unavailable(_))), "{result:?}");
    assert!(started.elapsed() < CALL_TIMEOUT, "took {:?}", started.elapsed());

    // ... and when the server does not answer at all, the call's own deadline ends it.
    let started = Instant::now();
    let result: Result<(), _> = store
        .run(|_| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(())
            })
        })
        .await;
    assert!(matches!(result, Err(StoreError::Unavailable(_))), "{result:?}");
    let took = started.elapsed();
    assert!(took >= CALL_TIMEOUT && took < CALL_TIMEOUT + Duration::from_millis(500), "took {took:?}");

    // The store keeps serving.
    let result = store
        .run(|conn| Box::pin(async move { Ok(sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(conn).await?) }))
        .await;
    assert_eq!(result, Ok(1));
    store.close().await;
    scratch.remove().await;
}

#[tokio::test]
async fn a_schema_newer_than_this_build_refuses_the_start() {
    let Some(scratch) = Scratch::new().await else { return };
    let store = PostgresStore::open(&scratch.url).await.expect("a fresh schema migrates");
    store.close().await;
    let mut conn = scratch.connect().await;
    exec(&mut conn, "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)").await.unwrap();
    let error = PostgresStore::open(&scratch.url).await.unwrap_err();
    assert!(format!("{error:#}").contains("schema version 99, newer than this sessiond knows"), "{error:#}");
    scratch.remove().await;
}

/// The hand-written authentication and session queries select exactly the columns, in the order,
/// that `token_from_row`, `user_from_row` and `session_from_row` read.
#[test]
fn written_out_queries_select_the_declared_columns() {
    let token_then_user = super::TOKEN_COLUMNS
        .split(", ")
        .map(str::to_owned)
        .chain(super::HOLDER_COLUMNS.split(", ").map(|c| format!("u.{c}")))
        .collect::<Vec<_>>()
        .join(", ");
    let written = |q: &str| q.split(" FROM ").next().unwrap_or_default().trim_start_matches("SELECT ").to_owned();
    assert_eq!(written(super::TOKEN_WITH_HOLDER), token_then_user);
    assert_eq!(written(super::SESSION_BY_ID), super::SESSION_COLUMNS);
}

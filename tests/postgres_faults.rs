//! Faults between sessiond and PostgreSQL: a database unreachable at start stops the start with a
//! clear message; a database lost while serving makes calls answer UNAVAILABLE within a bounded
//! time, without a panic or a hang, and service resumes by itself when it is back. The database is
//! taken away through a TCP proxy the test owns, or by terminating the server's connections.

#[path = "common/backend.rs"]
mod backend;
#[path = "common/process.rs"]
mod process;
#[path = "common/proxy.rs"]
mod proxy;

use std::time::{Duration, Instant};

use backend::{Backend, TestDb};
use process::{Answer, Rest, Sessiond, add_token, add_user, free_addr};
use proxy::{Link, Proxy, upstream_of};

/// Longest a call may take to answer while the database is gone: the store's 0.9 s call budget,
/// plus generous slack for a loaded machine (this proves there is no hang, not the budget).
const UNAVAILABLE_WITHIN: Duration = Duration::from_secs(3);
/// Longest service may take to resume once the database is back.
const RECOVERS_WITHIN: Duration = Duration::from_secs(10);

/// A server behind a proxy, with a session to read.
struct Setup {
    db: TestDb,
    proxy: Proxy,
    server: Sessiond,
    rest: Rest,
    session_id: String,
}

impl Setup {
    async fn start() -> Option<Self> {
        let db = TestDb::fresh(Backend::Postgres).await?;
        let user = add_user(&db.url, "operator");
        let token = add_token(&db.url, &user, &["session.read", "session.write", "session.delete"]);
        let proxy = Proxy::start(upstream_of(&db.url)).await;
        let server = Sessiond::start(&proxy.url_through(&db.url)).await;
        let rest = Rest::new(&server.base, &token);
        let created = rest.create_session("operator").await;
        assert_eq!(created.status, 201, "{created:?}");
        let session_id = created.body["sessionId"].as_str().unwrap().to_owned();
        Some(Self { db, proxy, server, rest, session_id })
    }

    async fn get(&self) -> (Answer, Duration) {
        let started = Instant::now();
        let answer = self.rest.get_session(&self.session_id, None).await;
        (answer, started.elapsed())
    }

    /// Several calls in a row all answer UNAVAILABLE (HTTP 503, code 14), each in bounded time.
    async fn assert_unavailable(&self, what: &str) {
        for call in 0..4 {
            let (answer, took) = self.get().await;
            assert_eq!((answer.status, answer.code()), (503, 14), "{what}, call {call}: {answer:?}");
            assert_eq!(answer.body["details"][0]["id"], "STORE-Unavailable", "{answer:?}");
            eprintln!("{what}, call {call}: 503 in {took:?}");
            assert!(took < UNAVAILABLE_WITHIN, "{what}, call {call} took {took:?}");
        }
    }

    /// Calls succeed again within `RECOVERS_WITHIN`, without a restart. Returns how long it took.
    async fn assert_recovers(&self, what: &str) -> Duration {
        let started = Instant::now();
        loop {
            let (answer, _) = self.get().await;
            match answer.status {
                200 => return started.elapsed(),
                503 => {}
                _ => panic!("{what}: unexpected answer while recovering: {answer:?}"),
            }
            assert!(started.elapsed() < RECOVERS_WITHIN, "{what}: no recovery within {RECOVERS_WITHIN:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) {
        assert!(self.server.is_running(), "sessiond died:\n{}", self.server.log());
        assert!(!self.server.log().contains("panicked"), "sessiond panicked:\n{}", self.server.log());
        let Self { db, proxy, server, .. } = self;
        drop((server, proxy));
        db.remove().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_lost_while_serving_answers_unavailable_and_service_resumes() {
    let Some(setup) = Setup::start().await else { return };
    assert_eq!(setup.get().await.0.status, 200);

    // The database goes away: connections close, new ones are refused.
    setup.proxy.set(Link::Down);
    setup.assert_unavailable("database down").await;
    setup.proxy.set(Link::Up);
    let took = setup.assert_recovers("after down").await;
    eprintln!("recovered {took:?} after the database came back");

    // A partition: nothing answers and nothing closes, so only deadlines end the calls.
    setup.proxy.set(Link::Silent);
    setup.assert_unavailable("database silent").await;
    // Writes too, and through another route (ListSessions).
    let started = Instant::now();
    let write = setup.rest.set_metadata(&setup.session_id, None, "k", "dg==").await;
    assert_eq!((write.status, write.code()), (503, 14), "{write:?}");
    let list = setup.rest.list_sessions().await;
    assert_eq!((list.status, list.code()), (503, 14), "{list:?}");
    assert!(started.elapsed() < 2 * UNAVAILABLE_WITHIN);
    setup.proxy.set(Link::Up);
    let took = setup.assert_recovers("after silence").await;
    eprintln!("recovered {took:?} after the partition healed");

    let write = setup.rest.set_metadata(&setup.session_id, None, "k", "dg==").await;
    assert_eq!((write.status, write.sequence()), (200, 2), "no write got through during the outage: {write:?}");
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_link_answers_every_call_unavailable() {
    let Some(setup) = Setup::start().await else { return };
    // Several pooled connections, each soon holding a statement that is never answered.
    let warm: Vec<_> = (0..8).map(|_| setup.get()).collect();
    for (answer, _) in futures_util::future::join_all(warm).await {
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    // Packets dropped, nothing closed: only the store's own deadline can end a call.
    setup.proxy.set(Link::Silent);
    // More calls at once than the pool has connections: some hang on a pooled connection, some
    // on a new one that never completes its handshake, the rest wait for a connection.
    let calls: Vec<_> = (0..24).map(|_| setup.get()).collect();
    let answers = futures_util::future::join_all(calls).await;
    for (call, (answer, took)) in answers.iter().enumerate() {
        assert_eq!((answer.status, answer.code()), (503, 14), "call {call}: {answer:?}");
        assert_eq!(answer.body["details"][0]["id"], "STORE-Unavailable", "{answer:?}");
        assert!(*took < UNAVAILABLE_WITHIN, "call {call} took {took:?}");
    }
    let mut took: Vec<_> = answers.iter().map(|(_, took)| *took).collect();
    took.sort();
    eprintln!(
        "blackholed link: {} concurrent calls answered 503; fastest {:?}, slowest {:?}",
        took.len(),
        took[0],
        took[took.len() - 1]
    );
    setup.assert_unavailable("blackholed link, one call at a time").await;
    setup.proxy.set(Link::Up);
    let recovered = setup.assert_recovers("after the blackhole").await;
    eprintln!("recovered {recovered:?} after the link came back");
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_server_connections_are_replaced_without_failing_calls() {
    let Some(db) = TestDb::fresh(Backend::Postgres).await else { return };
    let user = add_user(&db.url, "operator");
    let token = add_token(&db.url, &user, &["session.read", "session.write"]);
    let application = format!("sessiond-test-{:016x}", rand::random::<u64>());
    let server = Sessiond::start(&backend::with_query_pair(&db.url, "application_name", &application)).await;
    let rest = Rest::new(&server.base, &token);
    let created = rest.create_session("operator").await;
    let id = created.body["sessionId"].as_str().unwrap().to_owned();

    let base = backend::postgres_base_url().unwrap();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await.unwrap();
    for round in 0..3 {
        // Warm the pool with a few concurrent calls, then cut every one of its connections.
        let calls: Vec<_> = (0..4).map(|_| rest.get_session(&id, None)).collect();
        for answer in futures_util::future::join_all(calls).await {
            assert_eq!(answer.status, 200, "{answer:?}");
        }
        let terminated: Vec<bool> =
            sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
                .bind(&application)
                .fetch_all(&mut admin)
                .await
                .unwrap();
        assert!(!terminated.is_empty(), "round {round}: the server holds no connections");
        // A call that meets a terminated connection runs again on another: none of them fails.
        for call in 0..3 {
            let answer = rest.get_session(&id, None).await;
            assert_eq!(answer.status, 200, "round {round}, call {call} after pg_terminate_backend: {answer:?}");
        }
    }
    drop(server);
    db.remove().await;
}

#[tokio::test]
async fn an_unreachable_database_at_start_stops_the_start_with_a_clear_message() {
    // Nobody listens on this port: every connection attempt is refused.
    let closed = free_addr();
    let url = format!("postgres://postgres:secret@{closed}/test");
    let commands = [vec!["serve", "--listen", "127.0.0.1:0"], vec!["migrate"], vec!["users", "list"]];
    let runs: Vec<_> = commands
        .into_iter()
        .map(|args| {
            let url = url.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let out = process::sessiond_cli(&url, &args);
                (args, out, started.elapsed())
            })
        })
        .collect();
    for run in runs {
        let (args, out, took) = run.join().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded without a database");
        assert!(stderr.contains(&format!("cannot reach PostgreSQL at {closed}/test")), "{args:?}: {stderr}");
        assert!(!stderr.contains("secret"), "the password leaked: {stderr}");
        assert!(took < Duration::from_secs(15), "{args:?} took {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_database_at_start_stops_the_start_in_bounded_time() {
    // Accepts connections and never answers: each attempt ends on its own deadline.
    let proxy = Proxy::start("127.0.0.1:9".into()).await;
    proxy.set(Link::Silent);
    let url = proxy.url_through("postgres://postgres@127.0.0.1/test");
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || process::sessiond_cli(&url, &["migrate"])).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot reach PostgreSQL"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
}

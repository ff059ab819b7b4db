//! `/healthz` and `/readyz` as an orchestrator calls them: no credentials, GET and HEAD only; ready
//! only while the store answers (503 with the reason while it does not, 200 again once it does);
//! gRPC health unchanged beside them.

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::time::{Duration, Instant};

use common::{Backend, TestServer, backend::TestDb, client::Headers};
use http::Method;
use proxy::{Link, Proxy, upstream_of};

async fn probe(server: &TestServer, method: Method, path: &str) -> common::client::Raw {
    server.clients.exchange(false, method, path, &Headers::none(), vec![]).await
}

/// Probes `/readyz` until it answers `status` (readiness is re-checked at most every 250 ms), or
/// fails after a few seconds.
async fn readyz_until(server: &TestServer, status: u16) -> common::client::Raw {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = probe(server, Method::GET, "/readyz").await;
        if answer.status == status {
            return answer;
        }
        assert!(Instant::now() < deadline, "/readyz never answered {status}: {answer:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn probes_answer_without_credentials_to_get_and_head_only() {
    let server = TestServer::sqlite().await;
    for path in ["/healthz", "/readyz"] {
        let get = probe(&server, Method::GET, path).await;
        assert_eq!(get.status, 200, "{path}: {get:?}");
        assert!(get.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
        assert!(get.headers.contains_key("x-request-id"), "{path}: {get:?}");
        let head = probe(&server, Method::HEAD, path).await;
        assert_eq!(head.status, 200, "{path}: {head:?}");
        assert!(head.body.is_empty());
        let post = probe(&server, Method::POST, path).await;
        assert_eq!(post.status, 405, "{path}: {post:?}");
        assert_eq!(post.headers["allow"], "GET, HEAD");
    }
    assert_eq!(probe(&server, Method::GET, "/healthz").await.body, "ok\n");
    assert_eq!(probe(&server, Method::GET, "/readyz").await.body, "ready\n");
    // Only the exact paths: a neighbour is a path like any other, which no route serves.
    assert_eq!(probe(&server, Method::GET, "/healthz/x").await.status, 404);

    // gRPC health is served as before.
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.clients.channel.clone());
    let request = tonic_health::pb::HealthCheckRequest { service: "zitadel.session.v2.SessionService".into() };
    let status = health.check(request).await.expect("gRPC health answers").into_inner().status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}

#[tokio::test]
async fn readyz_fails_while_sqlite_is_locked_by_another_process_and_recovers() {
    let server = TestServer::sqlite().await;
    readyz_until(&server, 200).await;
    // Another process takes the database's write lock and keeps it: the store's thread waits for
    // it, so nothing it is asked is answered.
    let path = server.config.database.strip_prefix("sqlite:").unwrap().to_owned();
    let locker = rusqlite::Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let unready = readyz_until(&server, 503).await;
    assert_eq!(unready.body, "the store did not answer within 500 ms\n");
    assert_eq!(probe(&server, Method::GET, "/healthz").await.status, 200, "the process still serves");
    locker.execute_batch("COMMIT").unwrap();
    readyz_until(&server, 200).await;
}

#[tokio::test]
async fn readyz_fails_while_postgres_is_unreachable_and_recovers() {
    let Some(mut db) = TestDb::fresh(Backend::Postgres).await else { return };
    let proxy = Proxy::start(upstream_of(&db.url)).await;
    db.url = proxy.url_through(&db.url);
    let server = TestServer::start(db).await;
    readyz_until(&server, 200).await;

    proxy.set(Link::Down);
    let unready = readyz_until(&server, 503).await;
    assert_eq!(unready.body, "the store is unavailable\n");
    proxy.set(Link::Silent);
    let unready = readyz_until(&server, 503).await;
    assert!(unready.body.starts_with(b"the store"), "{unready:?}");
    assert_eq!(probe(&server, Method::GET, "/healthz").await.status, 200, "the process still serves");

    proxy.set(Link::Up);
    readyz_until(&server, 200).await;
}

//! `x-request-id`: a caller's sane id is echoed on every protocol's answer, refusals and gRPC
//! trailers-only answers included; a missing or insane one is replaced by a generated UUID; CORS
//! lets browsers read it; the access log line of the call carries it.

mod common;
#[path = "common/process.rs"]
mod process;
#[path = "common/proxy.rs"]
mod proxy;

use std::time::{Duration, Instant};

use common::{Backend, Protocol, Rpc, TestServer, backend, backend::TestDb, client::Headers};
use http::Method;
use proxy::{Link, Proxy, upstream_of};
use serde_json::json;
use sessiond::domain::Permission;
use tonic::Code;

fn id_of(headers: &http::HeaderMap) -> &str {
    headers.get("x-request-id").expect("every answer has an x-request-id").to_str().unwrap()
}

fn is_uuid(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::parse_str(id).is_ok()
}

#[tokio::test]
async fn a_callers_id_is_echoed_on_every_protocol_and_refusal() {
    let server = TestServer::sqlite().await;
    let ui = server.actor("login-ui", &[Permission::SessionRead, Permission::SessionWrite]).await;
    for (n, protocol) in Protocol::ALL.into_iter().enumerate() {
        let id = format!("req-{n}:ok/1");
        let headers = Headers::bearer(&ui.token).with("x-request-id", &id);
        let answer = server.call_with(protocol, Rpc::GetSession, json!({ "sessionId": "nope" }), &headers).await;
        assert_eq!(answer.code, Code::NotFound, "{answer:?}");
        assert_eq!(id_of(&answer.headers), id, "{protocol}");
        // Refused before the handler: no credentials (gRPC: a trailers-only answer).
        let anonymous = Headers::none().with("x-request-id", &id);
        let refused = server.call_with(protocol, Rpc::GetSession, json!({ "sessionId": "nope" }), &anonymous).await;
        assert_eq!(refused.code, Code::Unauthenticated, "{refused:?}");
        assert_eq!(id_of(&refused.headers), id, "{protocol} refusal");
    }
    // A path nothing serves, and the probes.
    let headers = Headers::none().with("x-request-id", "lost-1");
    for path in ["/no/such/route", "/healthz"] {
        let answer = server.clients.exchange(false, Method::GET, path, &headers, vec![]).await;
        assert_eq!(id_of(&answer.headers), "lost-1", "{path}");
    }
}

#[tokio::test]
async fn a_missing_or_insane_id_is_replaced_by_a_generated_one() {
    let server = TestServer::sqlite().await;
    let ui = server.actor("login-ui", &[Permission::SessionRead]).await;
    let server = &server;
    let call = |headers: Headers| async move {
        server.call_with(Protocol::Rest, Rpc::GetSession, json!({ "sessionId": "nope" }), &headers).await.headers
    };
    let first = call(Headers::bearer(&ui.token)).await;
    let second = call(Headers::bearer(&ui.token)).await;
    assert!(is_uuid(id_of(&first)), "{first:?}");
    assert_ne!(id_of(&first), id_of(&second), "each call gets its own");
    let too_long = "a".repeat(129);
    for insane in ["has spaces", too_long.as_str(), "tab\there", ""] {
        let answer = call(Headers::bearer(&ui.token).with("x-request-id", insane)).await;
        let id = id_of(&answer);
        assert!(is_uuid(id), "`{insane}` was replaced: got `{id}`");
    }
    // Two ids: neither is the call's.
    let two = call(Headers::bearer(&ui.token).with("x-request-id", "one").with("x-request-id", "two")).await;
    assert!(is_uuid(id_of(&two)), "{two:?}");
    let longest = "b".repeat(128);
    assert_eq!(id_of(&call(Headers::bearer(&ui.token).with("x-request-id", &longest)).await), longest);
}

#[tokio::test]
async fn browsers_may_send_and_read_the_id() {
    let server = TestServer::sqlite().await;
    let preflight = Headers::none()
        .with("origin", "https://app.example")
        .with("access-control-request-method", "POST")
        .with("access-control-request-headers", "x-request-id, content-type");
    let path = "/zitadel.session.v2.SessionService/GetSession";
    let answer = server.clients.exchange(false, Method::OPTIONS, path, &preflight, vec![]).await;
    let allowed = answer.headers["access-control-allow-headers"].to_str().unwrap().to_owned();
    assert!(allowed.contains("x-request-id"), "{allowed}");
    let cross = Headers::none().with("origin", "https://app.example").with("content-type", "application/json");
    let answer = server.clients.exchange(false, Method::POST, path, &cross, b"{}".to_vec()).await;
    let exposed = answer.headers["access-control-expose-headers"].to_str().unwrap().to_owned();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    assert!(is_uuid(id_of(&answer.headers)));
}

#[tokio::test]
async fn the_access_log_line_carries_the_request_id() {
    let db = TestDb::fresh(common::Backend::Sqlite).await.unwrap();
    let user = process::add_user(&db.url, "alice");
    let token = process::add_token(&db.url, &user, &["session.read"]);
    let server = process::Sessiond::start(&db.url).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer = client
        .get(format!("{}/v2/sessions/nope", server.base))
        .bearer_auth(&token)
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    assert_eq!(answer.headers()["x-request-id"], "trace-me-42");
    let generated = client.get(format!("{}/v2/sessions/nope", server.base)).send().await.unwrap();
    let generated = generated.headers()["x-request-id"].to_str().unwrap().to_owned();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log();
        let logged = |id: &str| log.lines().any(|l| l.contains(" call") && l.contains(&format!("request_id=\"{id}\"")));
        if logged("trace-me-42") && logged(&generated) {
            break;
        }
        assert!(Instant::now() < deadline, "the calls' lines lack their request ids:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Log lines written in this test process (the server runs in it too), in plain text.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn lines_logged_within_a_call_carry_its_request_id() {
    // The store going away makes the domain log a warning in the middle of the call.
    let Some(mut db) = TestDb::fresh(Backend::Postgres).await else { return };
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).init();
    let proxy = Proxy::start(upstream_of(&db.url)).await;
    db.url = proxy.url_through(&db.url);
    let server = TestServer::start(db).await;
    let ui = server.actor("login-ui", &[Permission::SessionRead]).await;
    // One call answered first: the server has read its key check through the proxy and serves
    // (cutting the link before that would stop its start, not fail a call).
    server
        .call(Protocol::Rest, Rpc::GetSession, json!({ "sessionId": "before-the-outage" }), &ui.token)
        .await
        .expect_error(Code::NotFound, "SESSION-NotFound");
    proxy.set(Link::Down);
    let headers = Headers::bearer(&ui.token).with("x-request-id", "inside-7");
    // On a task of its own, so that a failed request shows what the server logged.
    let clients = server.clients.clone();
    let call = tokio::spawn(async move {
        clients.call(Protocol::Rest, Rpc::GetSession, json!({ "sessionId": "nope" }), &headers).await
    });
    let answer = call
        .await
        .unwrap_or_else(|e| panic!("{e}; the log:\n{}", String::from_utf8_lossy(&captured.0.lock().unwrap())));
    assert_eq!(answer.code, Code::Unavailable, "{answer:?}");
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warning = log.lines().find(|l| l.contains("store unavailable cause"));
    assert!(warning.is_some_and(|l| l.contains("call{request_id=\"inside-7\"}")), "{log}");
}

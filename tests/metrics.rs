//! `/metrics` as a Prometheus server scrapes it: calls counted by RPC, protocol and code after real
//! calls over every wire format, shed calls, store operations, logins and lockouts, the sweeper,
//! the process; and no series for what a caller chose (paths, ids).

mod common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::{Backend, Protocol, Rpc, TestServer, client::Headers};
use serde_json::json;
use sessiond::{config::Config, domain::Permission};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tonic::Code;

const ALL: [Permission; 3] = [Permission::SessionRead, Permission::SessionWrite, Permission::SessionDelete];

fn with_metrics(config: &mut Config) {
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
}

async fn scrape(metrics: SocketAddr) -> String {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .expect("the metrics listener answers");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    response.text().await.unwrap()
}

/// The value of the sample `series` (name and labels exactly as written), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

/// Scrapes until every `(series, value)` holds (a call is counted when its response body is done,
/// just after the client has read it), or fails after a few seconds with the last scrape.
async fn scrape_until(metrics: SocketAddr, wanted: &[(&str, f64)]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(metrics).await;
        if wanted.iter().all(|(series, value)| sample(&text, series) == Some(*value)) {
            return text;
        }
        let missing: Vec<_> = wanted.iter().filter(|(s, v)| sample(&text, s) != Some(*v)).collect();
        assert!(Instant::now() < deadline, "not scraped as expected: {missing:?}\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn calls_are_counted_by_rpc_protocol_and_code(backend: Backend) {
    let Some(server) = TestServer::on_with(backend, with_metrics).await else { return };
    let metrics = server.metrics.expect("metrics are on");
    let ui = server.actor("login-ui", &ALL).await;
    let created = server.create(Protocol::Rest, &ui.id, &ui.token).await;
    for protocol in [Protocol::Grpc, Protocol::GrpcWeb, Protocol::ConnectJson, Protocol::ConnectProto] {
        server.call(protocol, Rpc::GetSession, json!({ "sessionId": created.id }), &ui.token).await.ok();
    }
    server
        .call(Protocol::Grpc, Rpc::GetSession, json!({ "sessionId": "nope" }), &ui.token)
        .await
        .expect_error(Code::NotFound, "SESSION-NotFound");
    let anonymous =
        server.call_with(Protocol::Rest, Rpc::GetSession, json!({ "sessionId": "x" }), &Headers::none()).await;
    assert_eq!(anonymous.code, Code::Unauthenticated);

    let text = scrape_until(
        metrics,
        &[
            (r#"sessiond_calls_total{rpc="CreateSession",protocol="rest",code="OK"}"#, 1.0),
            (r#"sessiond_calls_total{rpc="GetSession",protocol="grpc",code="OK"}"#, 1.0),
            (r#"sessiond_calls_total{rpc="GetSession",protocol="grpc",code="NOT_FOUND"}"#, 1.0),
            (r#"sessiond_calls_total{rpc="GetSession",protocol="grpc-web",code="OK"}"#, 1.0),
            (r#"sessiond_calls_total{rpc="GetSession",protocol="connect+json",code="OK"}"#, 1.0),
            (r#"sessiond_calls_total{rpc="GetSession",protocol="connect+proto",code="OK"}"#, 1.0),
            (r#"sessiond_calls_total{rpc="GetSession",protocol="rest",code="UNAUTHENTICATED"}"#, 1.0),
            (r#"sessiond_call_duration_seconds_count{rpc="GetSession",protocol="grpc"}"#, 2.0),
            (r#"sessiond_calls_in_flight"#, 0.0),
        ],
    )
    .await;
    // The latency histogram has its buckets, and the store's operations were timed.
    assert!(
        text.contains(r#"sessiond_call_duration_seconds_bucket{le="+Inf",rpc="GetSession",protocol="grpc"} 2"#)
            || text.contains(r#"sessiond_call_duration_seconds_bucket{rpc="GetSession",protocol="grpc",le="+Inf"} 2"#),
        "{text}"
    );
    // The hot calls authenticate in their own store step: one operation each.
    assert_eq!(
        sample(&text, r#"sessiond_store_operation_duration_seconds_count{operation="create_session_as"}"#),
        Some(1.0)
    );
    assert!(
        sample(&text, r#"sessiond_store_operation_duration_seconds_count{operation="token_and_session"}"#) >= Some(5.0),
        "{text}"
    );
    // The backend's own gauges, and the process's.
    match backend {
        Backend::Sqlite => {
            assert!(sample(&text, "sessiond_sqlite_wal_bytes").is_some(), "{text}");
            assert!(sample(&text, "sessiond_sqlite_checkpoints_total").is_some(), "{text}");
        }
        Backend::Postgres => {
            assert!(sample(&text, r#"sessiond_postgres_pool_connections{state="idle"}"#).is_some(), "{text}");
            assert!(sample(&text, r#"sessiond_postgres_pool_connections{state="active"}"#).is_some(), "{text}");
            assert_eq!(sample(&text, "sessiond_postgres_pool_waiting"), Some(0.0), "{text}");
        }
    }
    assert!(sample(&text, "process_resident_memory_bytes").is_some_and(|b| b > 0.0), "{text}");
    assert!(sample(&text, "process_open_fds").is_some_and(|n| n > 0.0), "{text}");
    assert!(sample(&text, "process_cpu_seconds_total").is_some(), "{text}");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");
}
backend_test!(calls_are_counted_by_rpc_protocol_and_code);

#[tokio::test]
async fn paths_a_caller_chooses_create_no_series() {
    let server = TestServer::sqlite_with(with_metrics).await;
    let metrics = server.metrics.unwrap();
    let ui = server.actor("login-ui", &ALL).await;
    let headers = Headers::bearer(&ui.token);
    let h2 = Headers::bearer(&ui.token).with("content-type", "application/grpc");
    let web = Headers::bearer(&ui.token).with("content-type", "application/grpc-web+proto");
    let json = Headers::bearer(&ui.token).with("content-type", "application/json");
    let clients = &server.clients;
    clients.exchange(false, http::Method::GET, "/v2/sessions/evil-id-1/and/more", &headers, vec![]).await;
    clients.exchange(false, http::Method::GET, "/no/such/route-evil2", &headers, vec![]).await;
    clients
        .exchange(false, http::Method::POST, "/zitadel.session.v2.SessionService/Evil3", &json, b"{}".to_vec())
        .await;
    clients.exchange(true, http::Method::POST, "/evil4.Service/Method", &h2, vec![0, 0, 0, 0, 0]).await;
    clients.exchange(false, http::Method::POST, "/zitadel.session.v2.SessionService/Evil5", &web, vec![]).await;
    let created = server.create(Protocol::Rest, &ui.id, &ui.token).await;
    // A session id in a REST path is labelled by its route's RPC, never by the id.
    server.call(Protocol::Rest, Rpc::GetSession, json!({ "sessionId": created.id }), &ui.token).await.ok();
    // Probes are not calls.
    clients.exchange(false, http::Method::GET, "/healthz", &Headers::none(), vec![]).await;

    let text =
        scrape_until(metrics, &[(r#"sessiond_calls_total{rpc="GetSession",protocol="rest",code="OK"}"#, 1.0)]).await;
    for chosen in ["evil", "Evil", "route", &created.id, "healthz", "/v2/"] {
        assert!(!text.contains(chosen), "`{chosen}` made it into a label:\n{text}");
    }
    let unknown: f64 = text
        .lines()
        .filter(|l| l.starts_with(r#"sessiond_calls_total{rpc="unknown""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(unknown, 5.0, "the five unknown paths are counted as `unknown`:\n{text}");
}

#[tokio::test]
async fn a_shed_call_is_counted_and_the_held_one_is_in_flight() {
    let server = TestServer::sqlite_with(|c| {
        with_metrics(c);
        c.max_in_flight = 1;
    })
    .await;
    let metrics = server.metrics.unwrap();
    let ui = server.actor("login-ui", &ALL).await;
    // This call holds the only slot while its body has not arrived.
    let body = format!(r#"{{"checks": {{"user": {{"userId": "{}"}}}}}}"#, ui.id);
    let mut holder = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v2/sessions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        ui.token,
        body.len()
    );
    holder.write_all(head.as_bytes()).await.unwrap();
    holder.write_all(&body.as_bytes()[..5]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let shed = server.call(Protocol::ConnectJson, Rpc::GetSession, json!({ "sessionId": "x" }), &ui.token).await;
        if shed.code == Code::ResourceExhausted {
            break;
        }
        assert!(Instant::now() < deadline, "a second call was never shed: {shed:?}");
    }
    scrape_until(
        metrics,
        &[
            (r#"sessiond_calls_shed_total{protocol="connect+json"}"#, 1.0),
            (r#"sessiond_calls_total{rpc="unknown",protocol="connect+json",code="RESOURCE_EXHAUSTED"}"#, 1.0),
            ("sessiond_calls_in_flight", 1.0),
            // The limit an operator sees is the one that shed it.
            ("sessiond_calls_admission_limit", 1.0),
        ],
    )
    .await;
    holder.write_all(&body.as_bytes()[5..]).await.unwrap();
    let mut answer = vec![0; 12];
    holder.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 201", "the holder still completes");
    drop(holder);
    scrape_until(
        metrics,
        &[
            (r#"sessiond_calls_total{rpc="CreateSession",protocol="rest",code="OK"}"#, 1.0),
            ("sessiond_calls_in_flight", 0.0),
        ],
    )
    .await;
}

async fn logins_lockouts_and_the_sweeper_are_counted(backend: Backend) {
    let configure = |c: &mut Config| {
        with_metrics(c);
        c.max_failed_attempts = 2;
        c.sweep_interval = Duration::from_millis(20);
    };
    let Some(server) = TestServer::on_with(backend, configure).await else { return };
    let metrics = server.metrics.unwrap();
    let ui = server.actor("login-ui", &ALL).await;
    let user = server.user("alice").await;
    server.users.set_password(&user, "right".into()).await.unwrap();
    let check =
        |password: &str| json!({ "checks": { "user": { "userId": user }, "password": { "password": password } } });
    server.call(Protocol::Grpc, Rpc::CreateSession, check("right"), &ui.token).await.ok();
    for _ in 0..2 {
        let wrong = server.call(Protocol::Rest, Rpc::CreateSession, check("wrong"), &ui.token).await;
        wrong.expect_error(Code::InvalidArgument, "USER-PasswordInvalid");
    }
    let locked = server.call(Protocol::ConnectJson, Rpc::CreateSession, check("right"), &ui.token).await;
    locked.expect_error(Code::FailedPrecondition, "USER-Locked");

    let text = scrape_until(
        metrics,
        &[
            (r#"sessiond_logins_total{factor="password",outcome="success"}"#, 1.0),
            (r#"sessiond_logins_total{factor="password",outcome="rejected"}"#, 2.0),
            (r#"sessiond_lockouts_total{counter="password"}"#, 1.0),
        ],
    )
    .await;
    // A locked user is refused at the user check, before the password is looked at.
    assert!(sample(&text, r#"sessiond_logins_total{factor="password",outcome="locked"}"#).is_none(), "{text}");
    assert!(sample(&text, "sessiond_sweeper_runs_total").is_some_and(|n| n >= 1.0), "{text}");
    assert!(sample(&text, r#"sessiond_sweeper_rows_removed_total{kind="sessions"}"#).is_some(), "{text}");
}
backend_test!(logins_lockouts_and_the_sweeper_are_counted);

#[tokio::test]
async fn the_metrics_listener_serves_only_metrics() {
    let server = TestServer::sqlite_with(with_metrics).await;
    let base = format!("http://{}", server.metrics.unwrap());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    assert_eq!(client.get(format!("{base}/other")).send().await.unwrap().status(), 404);
    let post = client.post(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    // Off by default: the library's configuration opens no port of its own.
    assert_eq!(Config::default().metrics_listen, None);
    assert_eq!(TestServer::sqlite().await.metrics, None);
}

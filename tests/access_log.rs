//! The access log of a real `sessiond` process: one line per call with its protocol, path, HTTP
//! status and gRPC code, whether the code travels in a JSON body, a response head or trailers;
//! never the bearer token.

#[path = "common/backend.rs"]
mod backend;
#[path = "common/process.rs"]
mod process;

use std::time::{Duration, Instant};

use backend::{Backend, TestDb};
use process::{Rest, Sessiond, add_token, add_user};
use sessiond::proto::session::{GetSessionRequest, session_service_client::SessionServiceClient};

#[tokio::test]
async fn every_call_is_logged_with_its_code_and_never_the_token() {
    let db = TestDb::fresh(Backend::Sqlite).await.expect("SQLite is always available");
    let user = add_user(&db.url, "alice");
    let token = add_token(&db.url, &user, &["session.read", "session.write"]);
    let server = Sessiond::start(&db.url).await;

    // REST: a success (201) and a refusal (404 with NOT_FOUND in its JSON body).
    let rest = Rest::new(&server.base, &token);
    let created = rest.create_session("alice").await;
    assert_eq!(created.status, 201, "{created:?}");
    // gRPC: a success and an error, both with their code in the trailers.
    let channel = tonic::transport::Channel::from_shared(server.base.clone()).unwrap().connect().await.unwrap();
    let mut client = SessionServiceClient::new(channel);
    let get = |id: &str| {
        let mut request = tonic::Request::new(GetSessionRequest { session_id: id.into(), session_token: None });
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    };
    let id = created.body["sessionId"].as_str().unwrap().to_owned();
    client.get_session(get(&id)).await.expect("the session reads back");
    let missing = client.get_session(get("nope")).await.expect_err("no such session");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let wanted = [
        ("protocol=\"rest\"", "path=/v2/sessions ", "http=201", "code=0"),
        ("protocol=\"grpc\"", "/GetSession ", "http=200", "code=0"),
        ("protocol=\"grpc\"", "/GetSession ", "http=200", "code=5"),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(" call ") || l.ends_with(" call")).collect();
        let found = wanted.iter().all(|fields| {
            lines
                .iter()
                .any(|l| l.contains(fields.0) && l.contains(fields.1) && l.contains(fields.2) && l.contains(fields.3))
        });
        if found {
            assert!(!log.contains(token.split_once('.').unwrap().1), "the token's secret is never logged:\n{log}");
            assert!(!log.contains('\u{1b}'), "a log written to a file has no terminal colours:\n{log}");
            break;
        }
        assert!(Instant::now() < deadline, "the calls were not logged as expected:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn json_lines_are_json_with_each_calls_fields() {
    let db = TestDb::fresh(Backend::Sqlite).await.expect("SQLite is always available");
    let user = add_user(&db.url, "bob");
    let token = add_token(&db.url, &user, &["session.read", "session.write"]);
    let server = Sessiond::start_with(&db.url, &["--log-format", "json"]).await;
    let rest = Rest::new(&server.base, &token);
    assert_eq!(rest.create_session("bob").await.status, 201);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let missing = client
        .get(format!("{}/v2/sessions/nope", server.base))
        .bearer_auth(&token)
        .header("x-request-id", "quote\"and\\slash")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a line that is not JSON ({e}): {l}")))
            .collect();
        let calls: Vec<&serde_json::Value> = lines.iter().filter(|l| l["message"] == "call").collect();
        let missing_line = calls.iter().find(|l| l["path"] == "/v2/sessions/nope");
        if let Some(line) = missing_line {
            assert_eq!(line["request_id"], "quote\"and\\slash", "{line}");
            assert_eq!(line["protocol"], "rest");
            assert_eq!(line["method"], "GET");
            assert_eq!(line["http"], 404);
            assert_eq!(line["code"], 5);
            assert_eq!(line["level"], "INFO");
            assert_eq!(line["target"], "sessiond::transport::access_log");
            assert!(line["latency_us"].is_u64(), "{line}");
            let at = line["timestamp"].as_str().unwrap();
            assert!(at.len() == 27 && at.ends_with('Z') && at.as_bytes()[10] == b'T', "{at}");
            assert!(calls.iter().any(|l| l["path"] == "/v2/sessions" && l["http"] == 201), "{log}");
            assert!(!log.contains(token.split_once('.').unwrap().1), "the token's secret is never logged:\n{log}");
            break;
        }
        assert!(Instant::now() < deadline, "the calls were not logged as expected:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! The access log of a real `sessiond` process: one line per call with its protocol, path, HTTP
//! status and gRPC code, whether the code travels in a JSON body, a response head or trailers;
//! never the bearer token.

#[path = "common/backend.rs"]
mod backend;
#[path = "common/process.rs"]
mod process;

use std::time::{Duration, Instant};

use backend::{Backend, TestDb};
use process::{Rest, Sessiond, add_token, add_user, without_colours};
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
        let log = without_colours(&server.log());
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(" call ") || l.ends_with(" call")).collect();
        let found = wanted.iter().all(|fields| {
            lines
                .iter()
                .any(|l| l.contains(fields.0) && l.contains(fields.1) && l.contains(fields.2) && l.contains(fields.3))
        });
        if found {
            assert!(!log.contains(token.split_once('.').unwrap().1), "the token's secret is never logged:\n{log}");
            break;
        }
        assert!(Instant::now() < deadline, "the calls were not logged as expected:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! Large answers (ListSessions pages up to tens of megabytes): rendered whole on every JSON path,
//! compressed or not, and held to a budget while their clients have not read them, so that a
//! client that never grants HTTP/2 flow-control window cannot pin the server's memory.

use std::time::Duration;

use http::Method;
use serde_json::json;
use sessiond::domain::Permission::{SessionRead, SessionWrite};
use tonic::Code;

use crate::common::{
    Backend, Protocol, Rpc, TestServer,
    client::{BASE64, Headers, frame},
    user_check,
};
use base64::Engine;

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("a gzip body");
    out
}

/// `count` sessions of `admin`'s with 24 KB of metadata each, `n` telling them apart.
async fn fat_sessions(server: &TestServer, admin: &crate::common::Actor, count: usize) -> String {
    let value = BASE64.encode(vec![b'm'; 8 * 1024]);
    for i in 0..count {
        let request = json!({
            "checks": user_check(&admin.id),
            "metadata": {"a": value, "b": value, "c": value, "n": BASE64.encode(i.to_string())},
        });
        server.call(Protocol::Grpc, Rpc::CreateSession, request, &admin.token).await.ok();
    }
    value
}

backend_test!(large_pages_render_whole_on_every_json_path_compressed_or_not);
/// Answers of hundreds of kilobytes are rendered and compressed away from the runtime's threads
/// (a ListSessions page may reach tens of megabytes): they arrive whole and correct all the same.
async fn large_pages_render_whole_on_every_json_path_compressed_or_not(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = server.actor("admin", &[SessionRead, SessionWrite]).await;
    let value = fat_sessions(&server, &admin, 40).await;
    let page = serde_json::to_vec(&json!({"query": {"limit": 1000, "asc": true}})).unwrap();
    for (path, gzipped) in [
        ("/v2/sessions/search", false),
        ("/v2/sessions/search", true),
        (&*Rpc::ListSessions.path(), false),
        (&*Rpc::ListSessions.path(), true),
    ] {
        let mut headers = Headers::bearer(&admin.token).with("content-type", "application/json");
        if gzipped {
            headers = headers.with("accept-encoding", "gzip");
        }
        let raw = server.clients.exchange(false, Method::POST, path, &headers, page.clone()).await;
        assert_eq!(raw.status, 200, "[{path} gzip={gzipped}] {:?}", raw.headers);
        let coding = raw.headers.get("content-encoding").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(coding.as_deref(), gzipped.then_some("gzip"), "[{path}]");
        let body = if gzipped { gunzip(&raw.body) } else { raw.body.to_vec() };
        assert!(body.len() > 1 << 20, "[{path}] a page of {} bytes", body.len());
        let listed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let sessions = listed["sessions"].as_array().expect("sessions");
        assert_eq!(sessions.len(), 40, "[{path} gzip={gzipped}]");
        for (i, session) in sessions.iter().enumerate() {
            assert_eq!(session["metadata"]["a"], value.as_str(), "[{path} gzip={gzipped}] session {i}");
            assert_eq!(session["metadata"]["n"], BASE64.encode(i.to_string()), "[{path} gzip={gzipped}] in order");
        }
    }
}

backend_test!(answers_a_client_does_not_read_hold_a_bounded_budget_until_their_streams_end);
/// HTTP/2 clients that open streams for large pages and never grant window keep those answers
/// in the server: past the budget, a further large page waits, then is refused with
/// RESOURCE_EXHAUSTED; small calls are served all along; once those clients are gone the budget
/// is free again. Over gRPC and Connect (the transcoder's answers) and over gRPC-Web.
async fn answers_a_client_does_not_read_hold_a_bounded_budget_until_their_streams_end(backend: Backend) {
    let Some(server) = TestServer::on_with(backend, |c| {
        c.pending_answer_bytes = 3 << 20;
        c.pending_answer_wait = Duration::from_millis(300);
    })
    .await
    else {
        return;
    };
    let admin = server.actor("admin", &[SessionRead, SessionWrite]).await;
    fat_sessions(&server, &admin, 50).await;
    let other = server.create(Protocol::Grpc, &admin.id, &admin.token).await;
    let page = json!({"query": {"limit": 1000}});
    let list = Rpc::ListSessions.path();
    let grpc = ("application/grpc", frame(&Rpc::ListSessions.encode(page.clone())));
    let grpc_web = ("application/grpc-web+proto", frame(&Rpc::ListSessions.encode(page.clone())));
    let connect = ("application/json", serde_json::to_vec(&page).unwrap());
    for stalled in [[grpc.clone(), connect.clone()], [grpc_web.clone(), grpc_web.clone()]] {
        // A client that never grants its streams any window: each answer (1.2 MB) stays here.
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (mut client, connection) =
            h2::client::Builder::new().initial_window_size(0).handshake::<_, bytes::Bytes>(tcp).await.unwrap();
        let connection = tokio::spawn(connection);
        let mut unread = Vec::new();
        for (content_type, body) in stalled {
            client = client.ready().await.unwrap();
            let request = http::Request::post(format!("http://{}{list}", server.addr))
                .header("content-type", content_type)
                .header("te", "trailers")
                .header("authorization", format!("Bearer {}", admin.token))
                .body(())
                .unwrap();
            let (response, mut send) = client.send_request(request, false).unwrap();
            send.send_data(body.into(), true).unwrap();
            let response = tokio::time::timeout(Duration::from_secs(10), response).await.unwrap().unwrap();
            assert_eq!(response.status(), 200, "[{content_type}] {response:?}");
            unread.push(response);
        }
        // 2.4 of 3 MiB held: the next large page waits, then is refused, on every protocol.
        for protocol in [Protocol::Rest, Protocol::Grpc, Protocol::GrpcWeb] {
            let refused = server.call(protocol, Rpc::ListSessions, page.clone(), &admin.token).await;
            refused.expect_error_on(Code::ResourceExhausted, "SERVER-AnswersPending", 429);
            assert!(refused.message.contains("retry later"), "[{protocol}] {refused:?}");
        }
        let got = server.call(Protocol::Grpc, Rpc::GetSession, json!({"sessionId": other.id}), &admin.token).await;
        assert_eq!(got.str("/session/id"), other.id, "small answers never wait");

        // The client goes away: its answers are dropped and the budget is free again.
        drop((unread, client));
        connection.abort();
        let mut served = None;
        for _ in 0..50 {
            let listed = server.call(Protocol::Rest, Rpc::ListSessions, page.clone(), &admin.token).await;
            if listed.code == Code::Ok {
                served = Some(listed);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let listed = served.expect("a large page is served once the stalled client is gone");
        assert_eq!(listed.body["sessions"].as_array().map(Vec::len), Some(51));
    }
}

//! Wire behaviours of the front door that clients meet before any handler: compression both
//! ways, encodings the server does not take, gRPC over HTTP/1.1, the call deadline over the body
//! read, HTTP/1.1 connections that survive early refusals, and health over every protocol.

use std::io::{Read, Write};

use flate2::{Compression, read::GzDecoder, write::GzEncoder};
use http::Method;
use prost::Message;
use serde_json::json;
use sessiond::domain::Permission::{SessionDelete, SessionRead, SessionWrite};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::{Code, codec::CompressionEncoding};

use crate::common::{
    Backend, Protocol, Rpc, TestServer,
    client::{BASE64, Headers, frame, json_outcome, proto_outcome},
    user_check,
};
use base64::Engine;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(bytes).read_to_end(&mut out).expect("a gzip body");
    out
}

/// One gRPC frame holding `message` compressed with gzip.
fn gzip_frame(message: &[u8]) -> Vec<u8> {
    let compressed = gzip(message);
    let mut out = vec![1];
    out.extend_from_slice(&u32::try_from(compressed.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&compressed);
    out
}

/// The payload of the first frame of `body`, inflated when its flag says it is compressed.
fn first_message(body: &[u8]) -> (bool, Vec<u8>) {
    assert!(body.len() >= 5, "no frame in {body:?}");
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let payload = &body[5..5 + len];
    match body[0] {
        0 => (false, payload.to_vec()),
        1 => (true, gunzip(payload)),
        flag => panic!("unexpected frame flag {flag}"),
    }
}

backend_test!(gzip_requests_are_accepted_and_answers_compressed_when_asked);
async fn gzip_requests_are_accepted_and_answers_compressed_when_asked(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = server.actor("admin", &[SessionRead, SessionWrite]).await;
    let create = Rpc::CreateSession.encode(json!({ "checks": user_check(&admin.id) }));
    let bearer = Headers::bearer(&admin.token);

    // gRPC through tonic's own client, compressing both ways.
    let mut client =
        sessiond::proto::session::session_service_client::SessionServiceClient::new(server.clients.channel.clone())
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip);
    let mut request = tonic::Request::new(sessiond::proto::session::CreateSessionRequest::decode(&create[..]).unwrap());
    request.metadata_mut().insert("authorization", format!("Bearer {}", admin.token).parse().unwrap());
    let created = client.create_session(request).await.expect("a gzip gRPC call succeeds");
    assert_eq!(created.metadata().get("grpc-encoding").map(|v| v.to_str().unwrap()), Some("gzip"));
    assert!(!created.get_ref().session_id.is_empty());

    // gRPC and gRPC-Web with a compressed frame, asking for a compressed answer.
    for (h2c, content_type) in [(true, "application/grpc"), (false, "application/grpc-web+proto")] {
        let headers = bearer
            .clone()
            .with("content-type", content_type)
            .with("te", "trailers")
            .with("grpc-encoding", "gzip")
            .with("grpc-accept-encoding", "gzip");
        let raw =
            server.clients.exchange(h2c, Method::POST, &Rpc::CreateSession.path(), &headers, gzip_frame(&create)).await;
        assert_eq!(raw.headers.get("grpc-encoding").map(|v| v.to_str().unwrap()), Some("gzip"), "{raw:?}");
        let (compressed, message) = first_message(&raw.body);
        assert!(compressed, "[{content_type}] the answer is compressed as asked: {raw:?}");
        assert!(!Rpc::CreateSession.decode(&message)["sessionId"].as_str().unwrap_or_default().is_empty());
    }
    // gRPC-Web text: the compressed frame inside base64.
    let headers = bearer.clone().with("grpc-encoding", "gzip");
    let outcome = server.clients.grpc_web(true, &Rpc::CreateSession.path(), &headers, gzip_frame(&create), None).await;
    assert_eq!(outcome.code, Code::Ok, "{outcome:?}");

    // Connect, JSON and binary, and REST: `Content-Encoding` on the request, `Accept-Encoding`
    // for the answer.
    let json_body = serde_json::to_vec(&json!({ "checks": user_check(&admin.id) })).unwrap();
    let connect = Rpc::CreateSession.path();
    for (path, content_type, body) in [
        (connect.as_str(), "application/json", json_body.clone()),
        (connect.as_str(), "application/proto", create.clone()),
        ("/v2/sessions", "application/json", json_body),
    ] {
        let headers = bearer
            .clone()
            .with("content-type", content_type)
            .with("content-encoding", "gzip")
            .with("accept-encoding", "gzip");
        let mut raw = server.clients.exchange(false, Method::POST, path, &headers, gzip(&body)).await;
        assert!(raw.status == 200 || raw.status == 201, "[{path} {content_type}] {raw:?}");
        assert_eq!(raw.headers.get("content-encoding").map(|v| v.to_str().unwrap()), Some("gzip"), "{raw:?}");
        raw.body = gunzip(&raw.body).into();
        raw.headers.remove("content-encoding");
        let outcome = match content_type {
            "application/json" => json_outcome(Protocol::ConnectJson, raw),
            _ => proto_outcome(raw, Rpc::CreateSession),
        };
        assert!(!outcome.str("/sessionId").is_empty(), "{outcome:?}");
    }
    let listed = server.call(Protocol::Rest, Rpc::ListSessions, json!({}), &admin.token).await;
    assert_eq!(listed.ok()["details"]["totalResult"], "7", "{listed:?}");
}

backend_test!(an_encoding_the_server_does_not_take_is_unimplemented_naming_what_it_takes);
async fn an_encoding_the_server_does_not_take_is_unimplemented_naming_what_it_takes(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = server.actor("admin", &[SessionRead, SessionWrite]).await;
    let create = Rpc::CreateSession.encode(json!({ "checks": user_check(&admin.id) }));
    let encoded = Headers::bearer(&admin.token).with("grpc-encoding", "br");
    let accepts_gzip = |headers: &http::HeaderMap, name: &str| {
        headers.get(name).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("gzip"))
    };
    let outcome = server.clients.grpc_raw(&Rpc::CreateSession.path(), &encoded, gzip_frame(&create), None).await;
    outcome.expect_error(Code::Unimplemented, "REQUEST-UnsupportedEncoding");
    assert!(accepts_gzip(&outcome.headers, "grpc-accept-encoding"), "{outcome:?}");
    for text in [false, true] {
        let outcome =
            server.clients.grpc_web(text, &Rpc::CreateSession.path(), &encoded, gzip_frame(&create), None).await;
        outcome.expect_error(Code::Unimplemented, "REQUEST-UnsupportedEncoding");
        assert!(accepts_gzip(&outcome.headers, "grpc-accept-encoding"), "{outcome:?}");
    }
    // A compressed frame in a call that names no encoding at all.
    let outcome = server
        .clients
        .grpc_raw(&Rpc::CreateSession.path(), &Headers::bearer(&admin.token), gzip_frame(&create), None)
        .await;
    outcome.expect_error(Code::Unimplemented, "REQUEST-UnsupportedEncoding");
    assert!(accepts_gzip(&outcome.headers, "grpc-accept-encoding"), "{outcome:?}");
    for protocol in [Protocol::ConnectJson, Protocol::ConnectProto] {
        let content_type = if protocol == Protocol::ConnectJson { "application/json" } else { "application/proto" };
        let headers = Headers::bearer(&admin.token).with("content-type", content_type).with("content-encoding", "br");
        let raw =
            server.clients.exchange(false, Method::POST, &Rpc::CreateSession.path(), &headers, vec![1, 2, 3]).await;
        let outcome = json_outcome(protocol, raw);
        outcome.expect_error(Code::Unimplemented, "REQUEST-UnsupportedEncoding");
        assert_eq!(outcome.body["code"], "unimplemented", "{outcome:?}");
        assert!(accepts_gzip(&outcome.headers, "accept-encoding"), "{outcome:?}");
    }
    let listed = server.call(Protocol::Rest, Rpc::ListSessions, json!({}), &admin.token).await;
    assert!(listed.ok().get("sessions").is_none(), "nothing was created: {listed:?}");
}

backend_test!(only_protobuf_travels_over_grpc_and_grpc_web_and_connect_speaks_version_1);
async fn only_protobuf_travels_over_grpc_and_grpc_web_and_connect_speaks_version_1(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = server.actor("admin", &[SessionRead, SessionWrite]).await;
    let path = Rpc::CreateSession.path();
    let create = frame(&Rpc::CreateSession.encode(json!({ "checks": user_check(&admin.id) })));
    // A JSON body under a JSON codec: decoding it as protobuf would fail with a misleading
    // message, or succeed on bytes that meant something else.
    let json_body = {
        let mut framed = vec![0];
        let message = serde_json::to_vec(&json!({ "checks": user_check(&admin.id) })).unwrap();
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(&message);
        framed
    };
    for content_type in ["application/grpc+json", "application/grpc+JSON; charset=utf-8"] {
        let headers = Headers::bearer(&admin.token).with("content-type", content_type);
        let outcome = server.clients.grpc_raw(&path, &headers, json_body.clone(), None).await;
        outcome.expect_error(Code::Unimplemented, "REQUEST-UnsupportedCodec");
        assert!(outcome.message.contains("application/grpc+proto"), "{outcome:?}");
    }
    let headers = Headers::bearer(&admin.token).with("content-type", "application/grpc-web+json");
    let outcome = server.clients.grpc_web(false, &path, &headers, json_body, None).await;
    outcome.expect_error(Code::Unimplemented, "REQUEST-UnsupportedCodec");
    // The protobuf codec by name is the default one.
    let headers = Headers::bearer(&admin.token).with("content-type", "application/grpc+proto");
    server.clients.grpc_raw(&path, &headers, create.clone(), None).await.ok();
    let headers = Headers::bearer(&admin.token).with("content-type", "application/grpc-web-text+proto");
    server.clients.grpc_web(true, &path, &headers, create.clone(), None).await.ok();

    // gRPC-Web is called with POST; anything else is refused in gRPC-Web's terms with `Allow`.
    let headers = Headers::bearer(&admin.token).with("content-type", "application/grpc-web+proto");
    let raw = server.clients.exchange(false, Method::GET, &path, &headers, Vec::new()).await;
    assert_eq!(raw.headers.get("allow").map(|v| v.to_str().unwrap()), Some("POST"), "{raw:?}");
    crate::common::client::grpc_web_outcome(false, raw, None)
        .expect_error(Code::Unimplemented, "REQUEST-MethodNotAllowed");

    // Connect: the version header may be absent or 1; another version is refused.
    let body = serde_json::to_vec(&json!({ "checks": user_check(&admin.id) })).unwrap();
    let headers =
        Headers::bearer(&admin.token).with("content-type", "application/json").with("connect-protocol-version", "2");
    let raw = server.clients.exchange(false, Method::POST, &path, &headers, body.clone()).await;
    assert_eq!(raw.status, 400, "{raw:?}");
    let outcome = json_outcome(Protocol::ConnectJson, raw);
    outcome.expect_error(Code::InvalidArgument, "REQUEST-ConnectVersion");
    assert_eq!(outcome.body["code"], "invalid_argument", "{outcome:?}");
    let headers =
        Headers::bearer(&admin.token).with("content-type", "application/json").with("connect-protocol-version", "1");
    let raw = server.clients.exchange(false, Method::POST, &path, &headers, body).await;
    json_outcome(Protocol::ConnectJson, raw).ok();

    // Three sessions were made: by the proto codec named (gRPC, gRPC-Web) and by Connect version 1.
    let listed = server.call(Protocol::Rest, Rpc::ListSessions, json!({}), &admin.token).await;
    assert_eq!(listed.ok()["sessions"].as_array().map(Vec::len), Some(3), "{listed:?}");
}

backend_test!(a_body_that_does_not_decompress_is_invalid_argument_on_every_protocol);
async fn a_body_that_does_not_decompress_is_invalid_argument_on_every_protocol(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = server.actor("admin", &[SessionRead, SessionWrite]).await;
    // A frame flagged compressed whose bytes are not gzip: the client's fault, not the server's.
    let mut broken = vec![1];
    broken.extend_from_slice(&7u32.to_be_bytes());
    broken.extend_from_slice(b"notgzip");
    let headers = Headers::bearer(&admin.token).with("grpc-encoding", "gzip");
    let outcome = server.clients.grpc_raw(&Rpc::CreateSession.path(), &headers, broken.clone(), None).await;
    outcome.expect_error(Code::InvalidArgument, "REQUEST-BadCompression");
    for text in [false, true] {
        let outcome = server.clients.grpc_web(text, &Rpc::CreateSession.path(), &headers, broken.clone(), None).await;
        outcome.expect_error(Code::InvalidArgument, "REQUEST-BadCompression");
    }
    let headers =
        Headers::bearer(&admin.token).with("content-type", "application/json").with("content-encoding", "gzip");
    let raw =
        server.clients.exchange(false, Method::POST, &Rpc::CreateSession.path(), &headers, b"notgzip".to_vec()).await;
    json_outcome(Protocol::ConnectJson, raw).expect_error(Code::InvalidArgument, "REQUEST-BadCompression");
    let listed = server.call(Protocol::Rest, Rpc::ListSessions, json!({}), &admin.token).await;
    assert!(listed.ok().get("sessions").is_none(), "nothing was created: {listed:?}");
}

backend_test!(grpc_over_http1_is_refused_before_anything_runs);
async fn grpc_over_http1_is_refused_before_anything_runs(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = server.actor("admin", &[SessionRead, SessionWrite]).await;
    let create = frame(&Rpc::CreateSession.encode(json!({ "checks": user_check(&admin.id) })));
    let headers = Headers::bearer(&admin.token).with("content-type", "application/grpc").with("te", "trailers");
    let raw = server.clients.exchange(false, Method::POST, &Rpc::CreateSession.path(), &headers, create).await;
    // The status travels in the response head, which HTTP/1.1 does deliver.
    assert_eq!(raw.status, 200, "{raw:?}");
    assert_eq!(raw.headers.get("grpc-status").map(|v| v.to_str().unwrap()), Some("12"), "{raw:?}");
    let message = raw.headers.get("grpc-message").map(|v| v.to_str().unwrap()).unwrap_or_default();
    let message = percent_encoding::percent_decode_str(message).decode_utf8_lossy();
    assert!(message.contains("HTTP/2") && message.contains("gRPC-Web"), "{message}");
    assert!(message.ends_with("(REQUEST-Http2Required)"), "{message}");
    let listed = server.call(Protocol::Rest, Rpc::ListSessions, json!({}), &admin.token).await;
    assert!(listed.ok().get("sessions").is_none(), "the call never ran: {listed:?}");
}

backend_test!(a_zero_deadline_runs_nothing);
async fn a_zero_deadline_runs_nothing(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = server.actor("admin", &[SessionRead, SessionWrite]).await;
    let request = json!({ "checks": user_check(&admin.id) });
    for protocol in Protocol::ALL {
        let headers = match protocol {
            Protocol::Grpc | Protocol::GrpcWeb | Protocol::GrpcWebText => {
                Headers::bearer(&admin.token).with("grpc-timeout", "0m")
            }
            _ => Headers::bearer(&admin.token).with("connect-timeout-ms", "0"),
        };
        let outcome = match protocol {
            // tonic's client would not send an expired call: send it raw.
            Protocol::Grpc => {
                let body = frame(&Rpc::CreateSession.encode(request.clone()));
                server.clients.grpc_raw(&Rpc::CreateSession.path(), &headers, body, None).await
            }
            _ => server.call_with(protocol, Rpc::CreateSession, request.clone(), &headers).await,
        };
        outcome.expect_error(Code::DeadlineExceeded, "REQUEST-DeadlineExceeded");
    }
    let listed = server.call(Protocol::Rest, Rpc::ListSessions, json!({}), &admin.token).await;
    assert!(listed.ok().get("sessions").is_none(), "nothing ran: {listed:?}");
}

/// One HTTP/1.1 request on `stream`; the response's head and body (answers carry a length).
async fn http1(stream: &mut TcpStream, head: &str, body: &[u8]) -> (String, Vec<u8>) {
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                return (head, buffer[end + 4..end + 4 + length].to_vec());
            }
        }
        let n = stream.read(&mut chunk).await.expect("the connection answers");
        assert!(n > 0, "the connection closed before answering: {}", String::from_utf8_lossy(&buffer));
        buffer.extend_from_slice(&chunk[..n]);
    }
}

backend_test!(the_deadline_covers_the_body_read);
async fn the_deadline_covers_the_body_read(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = server.actor("admin", &[SessionRead, SessionWrite]).await;
    let body = json!({ "checks": user_check(&admin.id) }).to_string();
    // Half a body, and the rest never comes: the call's own deadline (not the 10 s body read
    // timeout) ends it, for REST and Connect alike.
    for (path, timeout) in
        [("/v2/sessions", "connect-timeout-ms: 300"), (&*Rpc::CreateSession.path(), "connect-timeout-ms: 300")]
    {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\n{timeout}\r\ncontent-length: {}\r\n\r\n",
            admin.token,
            body.len()
        );
        let (answer, error) = http1(&mut stream, &head, &body.as_bytes()[..5]).await;
        assert!(answer.starts_with("http/1.1 504"), "{path}: {answer}");
        assert!(String::from_utf8_lossy(&error).contains("REQUEST-DeadlineExceeded"), "{path}: {answer}");
    }
    let listed = server.call(Protocol::Rest, Rpc::ListSessions, json!({}), &admin.token).await;
    assert!(listed.ok().get("sessions").is_none(), "nothing ran: {listed:?}");
}

backend_test!(a_caller_without_a_valid_token_is_refused_before_its_body_arrives);
async fn a_caller_without_a_valid_token_is_refused_before_its_body_arrives(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = server.actor("admin", &[SessionRead, SessionWrite]).await;
    // A body that never completes (1 byte of 100) must not hold an in-flight slot until the
    // body read times out (10 s) when the credential is no good: it is looked up first. A token
    // id that exists with a wrong secret, and one that does not exist.
    let (id, _) = admin.token.split_once('.').expect("tokens are <id>.<secret>");
    let wrong_secret = format!("{id}.{}", "A".repeat(43));
    for token in [wrong_secret.as_str(), "bogus.token"] {
        for (path, content_type, unauthenticated) in [
            ("/v2/sessions/search", "application/json", "http/1.1 401"),
            (&*Rpc::CreateSession.path(), "application/json", "http/1.1 401"),
            (&*Rpc::GetSession.path(), "application/grpc-web+proto", "grpc-status:16"),
        ] {
            let mut stream = TcpStream::connect(server.addr).await.unwrap();
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: {content_type}\r\ncontent-length: 100\r\n\r\n"
            );
            let started = std::time::Instant::now();
            let (head, body) = within(http1(&mut stream, &head, b"{")).await;
            let answer = format!("{head}\n{}", String::from_utf8_lossy(&body));
            assert!(answer.contains(unauthenticated), "{path}: {answer}");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "{path}: answered after {:?}",
                started.elapsed()
            );
        }
    }
    // The valid token still waits for its body and is served.
    let body = json!({ "checks": user_check(&admin.id) }).to_string();
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v2/sessions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        admin.token,
        body.len()
    );
    let (answer, created) = within(http1(&mut stream, &head, body.as_bytes())).await;
    assert!(answer.starts_with("http/1.1 201"), "{answer}\n{}", String::from_utf8_lossy(&created));
}

backend_test!(http1_keep_alive_survives_every_early_refusal);
async fn http1_keep_alive_survives_every_early_refusal(backend: Backend) {
    let Some(server) = TestServer::on_with(backend, |c| c.body_limit = 1024).await else { return };
    let admin = server.actor("admin", &[SessionRead, SessionWrite, SessionDelete]).await;
    let session = server.create(Protocol::Rest, &admin.id, &admin.token).await;
    let auth = format!("authorization: Bearer {}\r\n", admin.token);
    let body = r#"{"sessionToken": "x"}"#;
    let refusals = [
        ("POST /v3/nope HTTP/1.1\r\n", "content-type: application/json\r\n".to_owned(), "404"),
        ("PUT /v2/sessions/abc HTTP/1.1\r\n", "content-type: application/json\r\n".to_owned(), "405"),
        ("POST /v2/sessions HTTP/1.1\r\n", "content-type: text/plain\r\n".to_owned(), "415"),
        ("POST /v2/sessions HTTP/1.1\r\n", "content-type: application/json\r\n".to_owned(), "401"),
        (
            "POST /v2/sessions HTTP/1.1\r\n",
            format!("{auth}content-type: application/json\r\nconnect-timeout-ms: x\r\n"),
            "400",
        ),
        (
            "POST /v2/sessions HTTP/1.1\r\n",
            format!("{auth}content-type: application/json\r\nconnect-timeout-ms: 0\r\n"),
            "504",
        ),
    ];
    let get = format!("GET /v2/sessions/{} HTTP/1.1\r\nhost: x\r\n{auth}\r\n", session.id);
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for (line, headers, status) in refusals {
        let head = format!("{line}host: x\r\n{headers}content-length: {}\r\n\r\n", body.len());
        let (answer, _) = http1(&mut stream, &head, body.as_bytes()).await;
        assert!(answer.starts_with(&format!("http/1.1 {status}")), "{line}: {answer}");
        assert!(!answer.contains("connection: close"), "{line}: a small body is read, the connection kept: {answer}");
        // The same connection serves the next call.
        let (answer, _) = http1(&mut stream, &get, b"").await;
        assert!(answer.starts_with("http/1.1 200"), "after {line}: {answer}");
    }
    // A body too large to read is refused with `Connection: close`, so the client knows to
    // open a new connection rather than fail on this one.
    let big = format!(
        "POST /v2/sessions HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: 4096\r\n\r\n"
    );
    let (answer, _) = http1(&mut stream, &big, &[b' '; 64]).await;
    assert!(answer.starts_with("http/1.1 429") && answer.contains("connection: close"), "{answer}");
}

backend_test!(health_answers_on_every_protocol_and_reflection_lists_it);
async fn health_answers_on_every_protocol_and_reflection_lists_it(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let check = "/grpc.health.v1.Health/Check";
    let request = tonic_health::pb::HealthCheckRequest { service: "zitadel.session.v2.SessionService".into() };
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let outcome = server.clients.grpc_raw(check, &Headers::none(), frame(&request.encode_to_vec()), None).await;
    assert_eq!(outcome.code, Code::Ok, "{outcome:?}");
    for text in [false, true] {
        let (content_type, body) = if text {
            ("application/grpc-web-text", BASE64.encode(frame(&request.encode_to_vec())).into_bytes())
        } else {
            ("application/grpc-web+proto", frame(&request.encode_to_vec()))
        };
        let headers = Headers::none().with("content-type", content_type);
        let raw = server.clients.exchange(false, Method::POST, check, &headers, body).await;
        let body = if text { BASE64.decode(&raw.body).unwrap() } else { raw.body.to_vec() };
        let (_, message) = first_message(&body);
        let answer = tonic_health::pb::HealthCheckResponse::decode(&message[..]).unwrap();
        assert_eq!(answer.status, serving, "[grpc-web text={text}] {raw:?}");
    }
    let headers = Headers::none().with("content-type", "application/json");
    let raw = server
        .clients
        .exchange(false, Method::POST, check, &headers, br#"{"service": "zitadel.session.v2.SessionService"}"#.to_vec())
        .await;
    assert_eq!(raw.status, 200, "{raw:?}");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&raw.body).unwrap(), json!({ "status": "SERVING" }));
    let headers = Headers::none().with("content-type", "application/proto");
    let raw = server.clients.exchange(false, Method::POST, check, &headers, request.encode_to_vec()).await;
    assert_eq!(tonic_health::pb::HealthCheckResponse::decode(raw.body).unwrap().status, serving);

    // Reflection names the health service beside the session service.
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, ServerReflectionResponse, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse,
    };
    let list = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let headers = Headers::none().with("content-type", "application/grpc").with("te", "trailers");
    let raw = server
        .clients
        .exchange(
            true,
            Method::POST,
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            &headers,
            frame(&list.encode_to_vec()),
        )
        .await;
    let (_, message) = first_message(&raw.body);
    let Some(MessageResponse::ListServicesResponse(services)) =
        ServerReflectionResponse::decode(&message[..]).unwrap().message_response
    else {
        panic!("not a service list: {raw:?}");
    };
    let names: Vec<String> = services.service.into_iter().map(|s| s.name).collect();
    for name in ["grpc.health.v1.Health", "zitadel.session.v2.SessionService"] {
        assert!(names.iter().any(|n| n == name), "{name} is listed: {names:?}");
    }
}

/// `future`'s output, or a failed test when it takes more than 10 s.
async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(10), future).await.expect("an answer within 10 s")
}

backend_test!(streaming_rpcs_are_refused_at_once_where_only_unary_calls_travel);
async fn streaming_rpcs_are_refused_at_once_where_only_unary_calls_travel(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    // Health's Watch never ends. gRPC-Web and Connect answers are one message, so a Watch there
    // would wait forever (holding its in-flight slot): it is refused at once instead, before
    // authentication, and the connection serves the next call.
    let watch = "/grpc.health.v1.Health/Watch";
    let request = tonic_health::pb::HealthCheckRequest { service: String::new() }.encode_to_vec();
    for text in [false, true] {
        let outcome = within(server.clients.grpc_web(text, watch, &Headers::none(), frame(&request), None)).await;
        outcome.expect_error(Code::Unimplemented, "REQUEST-StreamingUnsupported");
    }
    let headers = Headers::none().with("content-type", "application/json");
    let raw = within(server.clients.exchange(false, Method::POST, watch, &headers, b"{}".to_vec())).await;
    json_outcome(Protocol::ConnectJson, raw).expect_error(Code::Unimplemented, "REQUEST-StreamingUnsupported");
    let headers = Headers::none().with("content-type", "application/json");
    let check = "/grpc.health.v1.Health/Check";
    let raw = within(server.clients.exchange(false, Method::POST, check, &headers, b"{}".to_vec())).await;
    assert_eq!(raw.status, 200, "{raw:?}");

    // Over gRPC the stream is served: its first message says the server is serving.
    let channel = tonic::transport::Channel::from_shared(server.url("")).unwrap().connect().await.unwrap();
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut stream = client.watch(tonic_health::pb::HealthCheckRequest::default()).await.unwrap().into_inner();
    let first = within(stream.message()).await.unwrap().expect("a first message");
    assert_eq!(first.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}

backend_test!(a_compressed_body_may_not_expand_past_the_body_limit);
async fn a_compressed_body_may_not_expand_past_the_body_limit(backend: Backend) {
    let Some(server) = TestServer::on_with(backend, |c| c.body_limit = 1024).await else { return };
    let admin = server.actor("admin", &[SessionRead, SessionWrite]).await;
    // 8 KiB of metadata compresses to a few dozen bytes: under the limit on the wire, far over it
    // once inflated.
    let request = json!({ "checks": user_check(&admin.id), "metadata": { "blob": BASE64.encode(vec![0u8; 8192]) } });
    let message = Rpc::CreateSession.encode(request.clone());
    assert!(gzip_frame(&message).len() < 1024, "the compressed request fits the limit");
    let encoded = Headers::bearer(&admin.token).with("grpc-encoding", "gzip");
    let outcome = server.clients.grpc_raw(&Rpc::CreateSession.path(), &encoded, gzip_frame(&message), None).await;
    outcome.expect_error(Code::ResourceExhausted, "REQUEST-TooLarge");
    for text in [false, true] {
        let outcome =
            server.clients.grpc_web(text, &Rpc::CreateSession.path(), &encoded, gzip_frame(&message), None).await;
        outcome.expect_error(Code::ResourceExhausted, "REQUEST-TooLarge");
    }
    let json_body = serde_json::to_vec(&request).unwrap();
    for (protocol, content_type, body) in
        [(Protocol::ConnectJson, "application/json", json_body), (Protocol::ConnectProto, "application/proto", message)]
    {
        let headers = Headers::bearer(&admin.token).with("content-type", content_type).with("content-encoding", "gzip");
        let raw = server.clients.exchange(false, Method::POST, &Rpc::CreateSession.path(), &headers, gzip(&body)).await;
        json_outcome(protocol, raw).expect_error(Code::ResourceExhausted, "REQUEST-TooLarge");
    }
    let listed = server.call(Protocol::Rest, Rpc::ListSessions, json!({}), &admin.token).await;
    assert!(listed.ok().get("sessions").is_none(), "nothing was created: {listed:?}");
}

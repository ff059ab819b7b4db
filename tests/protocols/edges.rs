//! Where the wire formats differ: malformed input in each format, REST routing and content types,
//! gRPC and gRPC-Web framing, size limits, deadlines and CORS. Each edge is still run over every
//! protocol it applies to, with the exact status, code and id pinned.

use std::time::Duration;

use base64::Engine;
use http::Method;
use serde_json::json;
use sessiond::domain::Permission::{SessionDelete, SessionRead, SessionWrite};
use tonic::Code;

use crate::common::{
    Actor, Backend, Protocol, Rpc, TestServer,
    client::{BASE64, Headers, Outcome, frame, json_outcome},
    user_check,
};

/// Any call that takes longer than this is a hang, not a slow answer.
const HANG: Duration = Duration::from_secs(10);

async fn admin(server: &TestServer) -> Actor {
    server.actor("admin", &[SessionRead, SessionWrite, SessionDelete]).await
}

/// A REST or Connect request sent exactly as given, answered in that protocol's terms.
async fn send_json(
    server: &TestServer,
    protocol: Protocol,
    method: Method,
    path: &str,
    headers: &Headers,
    body: &str,
) -> Outcome {
    let raw = server.clients.exchange(false, method, path, headers, body.as_bytes().to_vec()).await;
    json_outcome(protocol, raw)
}

backend_test!(a_path_naming_no_method_is_unimplemented_before_authentication);
async fn a_path_naming_no_method_is_unimplemented_before_authentication(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let path = "/zitadel.session.v2.SessionService/Nope";
    for protocol in Protocol::ALL {
        for headers in [Headers::none(), Headers::bearer("not-even-a-token")] {
            let outcome = match protocol {
                Protocol::Grpc => server.clients.grpc_raw(path, &headers, frame(&[]), None).await,
                Protocol::GrpcWeb | Protocol::GrpcWebText => {
                    server.clients.grpc_web(protocol == Protocol::GrpcWebText, path, &headers, frame(&[]), None).await
                }
                Protocol::ConnectJson => {
                    let headers = headers.clone().with("content-type", "application/json");
                    send_json(&server, protocol, Method::POST, path, &headers, "{}").await
                }
                Protocol::ConnectProto => {
                    let headers = headers.clone().with("content-type", "application/proto");
                    send_json(&server, protocol, Method::POST, path, &headers, "").await
                }
                Protocol::Rest => {
                    let headers = headers.clone().with("content-type", "application/json");
                    send_json(&server, protocol, Method::POST, "/v2/nope", &headers, "{}").await
                }
            };
            match protocol {
                Protocol::ConnectJson | Protocol::ConnectProto => {
                    outcome.expect_error_on(Code::Unimplemented, "REQUEST-UnknownMethod", 404)
                }
                Protocol::Rest => outcome.expect_error(Code::NotFound, "REQUEST-NoRoute"),
                _ => outcome.expect_error(Code::Unimplemented, "REQUEST-UnknownMethod"),
            }
            if matches!(protocol, Protocol::ConnectJson | Protocol::ConnectProto) {
                assert_eq!(outcome.body["code"], "unimplemented", "{outcome:?}");
            }
        }
    }
    // Over gRPC, services other than the session service (health, reflection) are served too;
    // a path naming none of them is refused with the same detail as any other error.
    for path in ["/foo.Bar/Baz", "/grpc.health.v1.Health/Nope"] {
        let outcome = server.clients.grpc_raw(path, &Headers::none(), frame(&[]), None).await;
        outcome.expect_error(Code::Unimplemented, "REQUEST-UnknownMethod");
    }
    let health = server.clients.grpc_raw("/grpc.health.v1.Health/Check", &Headers::none(), frame(&[]), None).await;
    assert_eq!(health.code, Code::Ok, "{health:?}");
}

backend_test!(json_bodies_that_are_not_the_request_message_are_refused_naming_the_problem);
async fn json_bodies_that_are_not_the_request_message_are_refused_naming_the_problem(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    let session = server.create(Protocol::ConnectJson, &admin.id, &admin.token).await;
    let cases = [
        ("truncated JSON", r#"{"sessionToken": "#, None),
        ("an unknown field", r#"{"sesionToken": "x"}"#, Some("sesionToken")),
        ("a wrong type", r#"{"sessionToken": 5}"#, Some("sessionToken")),
        ("a nested unknown field", r#"{"sessionToken": "x", "extra": {"a": 1}}"#, Some("extra")),
        ("an array", "[1]", None),
        ("a string", r#""x""#, None),
        ("null", "null", None),
        ("trailing text", r#"{} x"#, None),
        ("two objects", "{}{}", None),
    ];
    let json = Headers::bearer(&admin.token).with("content-type", "application/json");
    for protocol in [Protocol::ConnectJson, Protocol::Rest] {
        let path = match protocol {
            Protocol::Rest => format!("/v2/sessions/{}", session.id),
            _ => Rpc::DeleteSession.path(),
        };
        let method = if protocol == Protocol::Rest { Method::DELETE } else { Method::POST };
        for (case, body, named) in cases {
            let outcome = send_json(&server, protocol, method.clone(), &path, &json, body).await;
            assert_eq!(outcome.code, Code::InvalidArgument, "[{protocol}] {case}: {outcome:?}");
            outcome.expect_error(Code::InvalidArgument, "REQUEST-InvalidJson");
            if let Some(field) = named {
                assert!(
                    outcome.message.contains(field),
                    "[{protocol}] {case}: the message names `{field}`: {outcome:?}"
                );
            }
        }
        let outcome = send_json(&server, protocol, method.clone(), &path, &json, r#"{"lifetime": "soon"}"#).await;
        outcome.expect_error(Code::InvalidArgument, "REQUEST-InvalidJson");
        // One field by both its names: a wrong token is never dropped for the other spelling.
        let both = r#"{"sessionToken": "WRONG", "session_token": ""}"#;
        let outcome = send_json(&server, protocol, method.clone(), &path, &json, both).await;
        outcome.expect_error(Code::InvalidArgument, "REQUEST-InvalidJson");
        assert!(outcome.message.contains("given twice"), "[{protocol}] {outcome:?}");
    }
    // Both JSON spellings of a field work, `null` is the default, and on REST the path wins
    // over the body's session id.
    let bodies =
        [format!(r#"{{"sessionId": "{0}", "session_token": null, "sessionToken": "{1}"}}"#, session.id, session.token)];
    let connect =
        send_json(&server, Protocol::ConnectJson, Method::POST, &Rpc::GetSession.path(), &json, &bodies[0]).await;
    assert_eq!(connect.ok()["session"]["id"], session.id, "{connect:?}");
    let other = server.create(Protocol::ConnectJson, &admin.id, &admin.token).await;
    let body = format!(r#"{{"session_id": "{}", "session_token": "{}"}}"#, session.id, other.token);
    let path = format!("/v2/sessions/{}", other.id);
    let rest = send_json(&server, Protocol::Rest, Method::DELETE, &path, &json, &body).await;
    assert_eq!(rest.ok()["details"]["sequence"], "2", "{rest:?}");
    let got = server.call(Protocol::Rest, Rpc::GetSession, json!({ "sessionId": session.id }), &admin.token).await;
    assert_eq!(got.ok()["session"]["sequence"], "1", "the body's session id was not used: {got:?}");
}

backend_test!(json_values_follow_the_proto3_mapping_and_refusals_name_the_field);
async fn json_values_follow_the_proto3_mapping_and_refusals_name_the_field(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    let json = Headers::bearer(&admin.token).with("content-type", "application/json");
    let list = Rpc::ListSessions;
    let create = Rpc::CreateSession;
    let date = |d: &str| format!(r#"{{"queries": [{{"creationDateQuery": {{"creationDate": "{d}"}}}}]}}"#);
    let accepted = [
        (list, r#"{"query": {"offset": 1, "limit": "2"}}"#.to_owned()),
        // 64-bit integers as strings (the largest offset served: see protocols/limits.rs).
        (list, r#"{"query": {"offset": "10000"}}"#.to_owned()),
        (list, r#"{"sortingColumn": 1}"#.to_owned()),
        (list, r#"{"sortingColumn": "SESSION_FIELD_NAME_CREATION_DATE", "query": null, "queries": null}"#.to_owned()),
        (
            list,
            r#"{"queries": [{"creationDateQuery": {"creationDate": "2025-03-04T15:26:53.203Z", "method": 1}}]}"#
                .to_owned(),
        ),
        (list, date("0001-01-01T00:00:00Z")),
        (list, date("9999-12-31T23:59:59.999999999Z")),
        (create, r#"{"lifetime": "1.5s"}"#.to_owned()),
        (create, r#"{"lifetime": "3600.000000001s", "metadata": null}"#.to_owned()),
    ];
    let refused = [
        (list, r#"{"sortingColumn": 7}"#.to_owned(), "sortingColumn"),
        (list, r#"{"sortingColumn": "NOPE"}"#.to_owned(), "sortingColumn"),
        (list, r#"{"query": {"limit": 1.5}}"#.to_owned(), "query.limit"),
        (list, r#"{"query": {"limit": 4294967296}}"#.to_owned(), "query.limit"),
        (list, r#"{"query": {"offset": "x"}}"#.to_owned(), "query.offset"),
        (list, date("10000-01-01T00:00:00Z"), "queries.creationDateQuery.creationDate"),
        (list, date("0000-12-31T00:00:00Z"), "queries.creationDateQuery.creationDate"),
        (list, date("2025-01-01T00:00:00.1234567891Z"), "queries.creationDateQuery.creationDate"),
        (list, date("yesterday"), "queries.creationDateQuery.creationDate"),
        (
            list,
            r#"{"queries": [{"creationDateQuery": {"creationDate": "2025-03-04T15:26:53Z", "method": 9}}]}"#.to_owned(),
            "queries.creationDateQuery.method",
        ),
        (create, r#"{"lifetime": "1.1234567891s"}"#.to_owned(), "lifetime"),
        (create, r#"{"lifetime": "5"}"#.to_owned(), "lifetime"),
        (create, r#"{"lifetime": "1h"}"#.to_owned(), "lifetime"),
        (create, r#"{"checks": {"user": {"userId": 5}}}"#.to_owned(), "checks.user.userId"),
        (create, r#"{"metadata": {"k": "not base64!"}}"#.to_owned(), "metadata"),
        (create, r#"{"userAgent": {"header": {"accept": {"values": [1]}}}}"#.to_owned(), "userAgent.header.values"),
    ];
    for protocol in [Protocol::ConnectJson, Protocol::Rest] {
        let path = |rpc: Rpc| match (protocol, rpc) {
            (Protocol::Rest, Rpc::ListSessions) => "/v2/sessions/search".to_owned(),
            (Protocol::Rest, _) => "/v2/sessions".to_owned(),
            _ => rpc.path(),
        };
        for (rpc, body) in &accepted {
            let outcome = send_json(&server, protocol, Method::POST, &path(*rpc), &json, body).await;
            assert_eq!(outcome.code, Code::Ok, "[{protocol}] {body}: {outcome:?}");
        }
        for (rpc, body, field) in &refused {
            let outcome = send_json(&server, protocol, Method::POST, &path(*rpc), &json, body).await;
            assert_eq!(outcome.code, Code::InvalidArgument, "[{protocol}] {body}: {outcome:?}");
            outcome.expect_error(Code::InvalidArgument, "REQUEST-InvalidJson");
            assert!(
                outcome.message.contains(&format!("`{field}`")),
                "[{protocol}] {body}: names `{field}`: {outcome:?}"
            );
        }
    }
}

backend_test!(rest_delete_without_a_body_is_the_empty_message);
async fn rest_delete_without_a_body_is_the_empty_message(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    let bearer = Headers::bearer(&admin.token);
    // As curl sends it: no body, no content type; then zero bytes and only whitespace as JSON.
    for (headers, body) in [
        (bearer.clone(), ""),
        (bearer.clone().with("content-type", "application/json"), ""),
        (bearer.clone().with("content-type", "application/json; charset=utf-8"), " \r\n\t "),
    ] {
        let session = server.create(Protocol::Rest, &admin.id, &admin.token).await;
        let path = format!("/v2/sessions/{}", session.id);
        let outcome = send_json(&server, Protocol::Rest, Method::DELETE, &path, &headers, body).await;
        assert_eq!(outcome.ok_with_status(200)["details"]["sequence"], "2", "{outcome:?}");
    }
}

backend_test!(rest_patch_without_a_body_changes_nothing_and_get_takes_no_body);
async fn rest_patch_without_a_body_changes_nothing_and_get_takes_no_body(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    let session = server.create(Protocol::Rest, &admin.id, &admin.token).await;
    let path = format!("/v2/sessions/{}", session.id);
    let bearer = Headers::bearer(&admin.token);
    let outcome = send_json(&server, Protocol::Rest, Method::PATCH, &path, &bearer, "").await;
    assert_eq!(outcome.ok()["details"]["sequence"], "1", "{outcome:?}");
    assert_eq!(outcome.str("/sessionToken"), "", "nothing changed, no new token: {outcome:?}");
    let headers = bearer.clone().with("content-type", "application/json");
    let outcome = send_json(&server, Protocol::Rest, Method::GET, &path, &headers, r#"{"sessionToken": "x"}"#).await;
    outcome.expect_error(Code::InvalidArgument, "REQUEST-UnexpectedBody");
}

backend_test!(rest_query_parameters_fill_only_unbound_fields);
async fn rest_query_parameters_fill_only_unbound_fields(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    let reader = server.actor("reader", &[SessionRead]).await;
    let session = server.create(Protocol::Rest, &admin.id, &admin.token).await;
    let bearer = Headers::bearer(&reader.token);
    let get = |query: &str| format!("/v2/sessions/{}?{query}", session.id);

    // GET takes the token from the query, in either spelling.
    for query in [format!("sessionToken={}", session.token), format!("session_token={}", session.token)] {
        let outcome = send_json(&server, Protocol::Rest, Method::GET, &get(&query), &bearer, "").await;
        outcome.ok();
    }
    let outcome = send_json(&server, Protocol::Rest, Method::GET, &get("sessionToken=wrong"), &bearer, "").await;
    outcome.expect_error(Code::PermissionDenied, "SESSION-TokenInvalid");

    let refusals = [
        (
            Method::DELETE,
            format!("/v2/sessions/{}?sessionToken=x", session.id),
            "REQUEST-UnknownParameter",
            "sessionToken",
        ),
        (Method::PATCH, format!("/v2/sessions/{}?lifetime=5s", session.id), "REQUEST-UnknownParameter", "lifetime"),
        (Method::POST, "/v2/sessions/search?query.limit=1".to_owned(), "REQUEST-UnknownParameter", "query.limit"),
        (Method::GET, get("nope=1"), "REQUEST-UnknownParameter", "nope"),
        (Method::GET, get("sessionId=other"), "REQUEST-UnknownParameter", "sessionId"),
        (Method::GET, get("sessionToken=a&sessionToken=b"), "REQUEST-DuplicateParameter", "sessionToken"),
        (Method::GET, get("sessionToken=%zz"), "REQUEST-BadEscape", "%zz"),
    ];
    for (method, path, id, named) in refusals {
        let outcome = send_json(&server, Protocol::Rest, method.clone(), &path, &bearer, "").await;
        outcome.expect_error(Code::InvalidArgument, id);
        assert!(outcome.message.contains(named), "{method} {path}: the message names `{named}`: {outcome:?}");
    }
    let got = server.call(Protocol::Rest, Rpc::GetSession, json!({ "sessionId": session.id }), &reader.token).await;
    assert_eq!(got.ok()["session"]["sequence"], "1", "{got:?}");
}

backend_test!(rest_routing_refusals_come_before_authentication);
async fn rest_routing_refusals_come_before_authentication(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    for headers in [Headers::none(), Headers::bearer(&admin.token)] {
        for path in ["/v2/sessions/", "/v2/sessions//x", "/v2/sessions/a/b", "/v3/x", "/"] {
            let outcome = send_json(&server, Protocol::Rest, Method::GET, path, &headers, "").await;
            outcome.expect_error(Code::NotFound, "REQUEST-NoRoute");
            assert_eq!(outcome.body["code"], 5, "{path}: {outcome:?}");
        }
        let outcome = send_json(&server, Protocol::Rest, Method::PUT, "/v2/sessions/abc", &headers, "").await;
        outcome.expect_error_on(Code::Unimplemented, "REQUEST-MethodNotAllowed", 405);
        assert_eq!(outcome.body["code"], 12, "{outcome:?}");
        let allow = outcome.headers.get("allow").and_then(|v| v.to_str().ok());
        assert_eq!(allow, Some("DELETE, GET, PATCH"), "{outcome:?}");
        let outcome = send_json(&server, Protocol::Rest, Method::GET, "/v2/sessions", &headers, "").await;
        outcome.expect_error_on(Code::Unimplemented, "REQUEST-MethodNotAllowed", 405);
        assert_eq!(outcome.headers.get("allow").and_then(|v| v.to_str().ok()), Some("POST"), "{outcome:?}");
    }
    // A literal segment beats a variable only for the method it is declared with.
    let outcome =
        send_json(&server, Protocol::Rest, Method::GET, "/v2/sessions/search", &Headers::bearer(&admin.token), "")
            .await;
    outcome.expect_error(Code::NotFound, "SESSION-NotFound");
    assert!(outcome.message.contains("`search`"), "{outcome:?}");
}

backend_test!(path_variables_are_percent_decoded_and_broken_escapes_refused);
async fn path_variables_are_percent_decoded_and_broken_escapes_refused(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    let bearer = Headers::bearer(&admin.token);
    for (path, named) in
        [("/v2/sessions/a%20b+c", "`a b+c`"), ("/v2/sessions/%C3%A9t%C3%A9", "`été`"), ("/v2/sessions/a%2Fb", "`a/b`")]
    {
        let outcome = send_json(&server, Protocol::Rest, Method::GET, path, &bearer, "").await;
        outcome.expect_error(Code::NotFound, "SESSION-NotFound");
        assert!(outcome.message.contains(named), "{path}: {outcome:?}");
    }
    for path in ["/v2/sessions/%zz", "/v2/sessions/abc%", "/v2/sessions/%4"] {
        for headers in [Headers::none(), bearer.clone()] {
            let outcome = send_json(&server, Protocol::Rest, Method::GET, path, &headers, "").await;
            outcome.expect_error(Code::InvalidArgument, "REQUEST-BadEscape");
        }
    }
}

backend_test!(unsupported_content_types_are_415_before_authentication);
async fn unsupported_content_types_are_415_before_authentication(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    let create = json!({ "checks": user_check(&admin.id) }).to_string();
    for protocol in [Protocol::ConnectJson, Protocol::Rest] {
        let path = match protocol {
            Protocol::Rest => "/v2/sessions".to_owned(),
            _ => Rpc::CreateSession.path(),
        };
        let mut refused = vec![Some("text/plain"), Some("application/x-www-form-urlencoded")];
        if protocol == Protocol::ConnectJson {
            refused.push(None);
        }
        for content_type in refused {
            for auth in [Headers::none(), Headers::bearer(&admin.token)] {
                let headers = match content_type {
                    Some(t) => auth.with("content-type", t),
                    None => auth,
                };
                let outcome = send_json(&server, protocol, Method::POST, &path, &headers, &create).await;
                outcome.expect_error_on(Code::InvalidArgument, "REQUEST-UnsupportedMediaType", 415);
            }
        }
        // Parameters do not matter, and REST takes a body without a content type as JSON.
        let mut accepted = vec![Some("application/json; charset=utf-8"), Some("Application/JSON")];
        if protocol == Protocol::Rest {
            accepted.push(None);
        }
        for content_type in accepted {
            let headers = match content_type {
                Some(t) => Headers::bearer(&admin.token).with("content-type", t),
                None => Headers::bearer(&admin.token),
            };
            let outcome = send_json(&server, protocol, Method::POST, &path, &headers, &create).await;
            outcome.ok_with_status(201);
        }
    }
    // Connect clients that send the protocol version header are served alike.
    let headers =
        Headers::bearer(&admin.token).with("content-type", "application/json").with("connect-protocol-version", "1");
    let outcome =
        send_json(&server, Protocol::ConnectJson, Method::POST, &Rpc::CreateSession.path(), &headers, &create).await;
    outcome.ok_with_status(200);
}

backend_test!(grpc_and_grpc_web_framing_errors_are_invalid_argument);
async fn grpc_and_grpc_web_framing_errors_are_invalid_argument(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    let bearer = Headers::bearer(&admin.token);
    let path = Rpc::ListSessions.path();
    let bodies: [(&str, Vec<u8>, &str); 5] = [
        ("an empty body", vec![], "REQUEST-MalformedFrame"),
        ("a truncated header", vec![0, 0, 0], "REQUEST-MalformedFrame"),
        ("a truncated message", vec![0, 0, 0, 0, 10, 1, 2], "REQUEST-MalformedFrame"),
        ("two messages", [frame(&[]), frame(&[])].concat(), "REQUEST-MalformedFrame"),
        ("bytes that are not the message", frame(&[0xff, 0xff, 0xff]), "REQUEST-InvalidProtobuf"),
    ];
    for protocol in [Protocol::Grpc, Protocol::GrpcWeb, Protocol::GrpcWebText] {
        for (case, body, id) in &bodies {
            let outcome = match protocol {
                Protocol::Grpc => server.clients.grpc_raw(&path, &bearer, body.clone(), None).await,
                _ => {
                    server.clients.grpc_web(protocol == Protocol::GrpcWebText, &path, &bearer, body.clone(), None).await
                }
            };
            assert_eq!(outcome.code, Code::InvalidArgument, "[{protocol}] {case}: {outcome:?}");
            outcome.expect_error(Code::InvalidArgument, id);
        }
    }
    // A compressed frame is well formed, but compression is not offered: UNIMPLEMENTED.
    let compressed = [vec![1u8], frame(&[])[1..].to_vec()].concat();
    for protocol in [Protocol::Grpc, Protocol::GrpcWeb, Protocol::GrpcWebText] {
        let outcome = match protocol {
            Protocol::Grpc => server.clients.grpc_raw(&path, &bearer, compressed.clone(), None).await,
            _ => {
                server
                    .clients
                    .grpc_web(protocol == Protocol::GrpcWebText, &path, &bearer, compressed.clone(), None)
                    .await
            }
        };
        outcome.expect_error(Code::Unimplemented, "REQUEST-UnsupportedEncoding");
    }
    // Bodies that are not base64 at all.
    for body in ["@@@@", "AAAA=A", "not base64!"] {
        let outcome = server.clients.grpc_web_raw(true, &path, &bearer, body.as_bytes().to_vec(), None).await;
        outcome.expect_error(Code::InvalidArgument, "REQUEST-MalformedFrame");
    }
}

backend_test!(grpc_web_text_accepts_a_body_in_separately_padded_chunks);
async fn grpc_web_text_accepts_a_body_in_separately_padded_chunks(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    let framed = frame(&Rpc::CreateSession.encode(json!({ "checks": user_check(&admin.id) })));
    // Split where both halves need padding, as a client flushing twice would send them.
    let split = (1..framed.len())
        .find(|&i| !i.is_multiple_of(3) && !(framed.len() - i).is_multiple_of(3))
        .expect("a split point");
    let (first, second) = framed.split_at(split);
    let body = format!("{}{}", BASE64.encode(first), BASE64.encode(second));
    assert!(BASE64.encode(first).ends_with('='), "the first chunk carries padding");
    let bearer = Headers::bearer(&admin.token);
    let path = Rpc::CreateSession.path();
    let outcome = server.clients.grpc_web_raw(true, &path, &bearer, body.into_bytes(), Some(Rpc::CreateSession)).await;
    assert_eq!(outcome.ok()["details"]["sequence"], "1", "{outcome:?}");
    assert!(!outcome.str("/sessionId").is_empty(), "{outcome:?}");
}

backend_test!(bodies_over_the_limit_are_refused_at_once);
async fn bodies_over_the_limit_are_refused_at_once(backend: Backend) {
    let Some(server) = TestServer::on_with(backend, |c| c.body_limit = 1024).await else { return };
    let admin = admin(&server).await;
    let big = json!({ "checks": user_check(&admin.id), "metadata": { "blob": BASE64.encode(vec![7u8; 4096]) } });
    let small = json!({ "checks": user_check(&admin.id), "metadata": { "blob": BASE64.encode(vec![7u8; 64]) } });
    for protocol in Protocol::ALL {
        let outcome = tokio::time::timeout(HANG, server.call(protocol, Rpc::CreateSession, big.clone(), &admin.token))
            .await
            .unwrap_or_else(|_| panic!("[{protocol}] an oversized body hangs"));
        outcome.expect_error(Code::ResourceExhausted, "REQUEST-TooLarge");
        let outcome = server.call(protocol, Rpc::CreateSession, small.clone(), &admin.token).await;
        outcome.ok();
    }
    let listed = server.call(Protocol::Rest, Rpc::ListSessions, json!({}), &admin.token).await;
    let made = Protocol::ALL.len().to_string();
    assert_eq!(listed.ok()["details"]["totalResult"], made, "only the small requests made sessions: {listed:?}");
}

backend_test!(deadline_headers_are_parsed_and_malformed_ones_refused);
async fn deadline_headers_are_parsed_and_malformed_ones_refused(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    let session = server.create(Protocol::ConnectJson, &admin.id, &admin.token).await;
    let get = json!({ "sessionId": session.id });
    for protocol in Protocol::ALL {
        let header = match protocol {
            Protocol::ConnectJson | Protocol::ConnectProto | Protocol::Rest => "connect-timeout-ms",
            _ => "grpc-timeout",
        };
        let (good, bad): (&[&str], &[&str]) = if header == "grpc-timeout" {
            (&["10S", "30000m", "1H", "99999999u"], &["abc", "1x", "S", "123456789S", "-1S", "1.5S"])
        } else {
            (&["10000", "5000"], &["abc", "-5", "1.5", "", "12345678901"])
        };
        for value in good {
            let headers = Headers::bearer(&admin.token).with(header, value);
            let outcome = server.call_with(protocol, Rpc::GetSession, get.clone(), &headers).await;
            assert_eq!(outcome.code, Code::Ok, "[{protocol}] {header}: {value}: {outcome:?}");
        }
        for value in bad {
            let headers = Headers::bearer(&admin.token).with(header, value);
            let outcome = server.call_with(protocol, Rpc::GetSession, get.clone(), &headers).await;
            assert_eq!(outcome.code, Code::InvalidArgument, "[{protocol}] {header}: {value}: {outcome:?}");
            outcome.expect_error(Code::InvalidArgument, "REQUEST-InvalidTimeout");
        }
    }
}

backend_test!(a_call_that_outlives_its_deadline_is_deadline_exceeded_and_leaves_nothing_behind);
async fn a_call_that_outlives_its_deadline_is_deadline_exceeded_and_leaves_nothing_behind(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    server.users.set_password(&admin.id, "secret".into()).await.expect("set password");
    // An argon2id verification takes milliseconds: longer than a one-millisecond deadline.
    let request = json!({ "checks": { "user": { "userId": admin.id }, "password": { "password": "secret" } } });
    for protocol in
        [Protocol::Grpc, Protocol::GrpcWeb, Protocol::GrpcWebText, Protocol::ConnectJson, Protocol::ConnectProto]
    {
        let headers = match protocol {
            Protocol::ConnectJson | Protocol::ConnectProto => {
                Headers::bearer(&admin.token).with("connect-timeout-ms", "1")
            }
            _ => Headers::bearer(&admin.token).with("grpc-timeout", "1m"),
        };
        // tonic would enforce the deadline on its own side: send raw gRPC to see the server's.
        let call = async {
            match protocol {
                Protocol::Grpc => {
                    let body = frame(&Rpc::CreateSession.encode(request.clone()));
                    server.clients.grpc_raw(&Rpc::CreateSession.path(), &headers, body, None).await
                }
                _ => server.call_with(protocol, Rpc::CreateSession, request.clone(), &headers).await,
            }
        };
        let outcome = tokio::time::timeout(HANG, call)
            .await
            .unwrap_or_else(|_| panic!("[{protocol}] the deadline is not enforced"));
        outcome.expect_error(Code::DeadlineExceeded, "REQUEST-DeadlineExceeded");
    }
    let listed = server.call(Protocol::Rest, Rpc::ListSessions, json!({}), &admin.token).await;
    assert!(listed.ok().get("sessions").is_none(), "no session was created: {listed:?}");
}

/// The CORS headers of a response, by name.
fn cors(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase)
}

/// What browser gRPC-Web and Connect clients ask a preflight to allow.
const REQUESTED_HEADERS: [&str; 7] = [
    "authorization",
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "connect-protocol-version",
    "connect-timeout-ms",
];

async fn preflight(server: &TestServer, path: &str, origin: &str) -> reqwest::Response {
    server
        .clients
        .http1
        .request(Method::OPTIONS, server.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", REQUESTED_HEADERS.join(", "))
        .send()
        .await
        .expect("preflight")
}

backend_test!(cors_preflights_name_authorization_and_responses_expose_grpc_status);
async fn cors_preflights_name_authorization_and_responses_expose_grpc_status(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    let origin = "https://app.example";
    for path in ["/v2/sessions", "/v2/sessions/abc", &Rpc::CreateSession.path()] {
        let response = preflight(&server, path, origin).await;
        assert!(response.status().is_success(), "{path}: {response:?}");
        let headers = response.headers();
        assert_eq!(cors(headers, "access-control-allow-origin").as_deref(), Some(origin), "{path}: {headers:?}");
        let allowed = cors(headers, "access-control-allow-headers").unwrap_or_default();
        for name in REQUESTED_HEADERS {
            assert!(allowed.split(',').any(|h| h.trim() == name), "{path}: {name} not allowed: {allowed}");
        }
        let max_age = cors(headers, "access-control-max-age").and_then(|v| v.parse::<u64>().ok());
        assert!(max_age.is_some_and(|s| s > 0), "{path}: {headers:?}");
        let methods = cors(headers, "access-control-allow-methods").unwrap_or_default();
        assert!(methods.contains("post"), "{path}: {methods}");
    }
    // Answers, successes and refusals alike, let the browser read the status headers.
    for protocol in Protocol::ALL {
        for token in [admin.token.as_str(), "unknown.token"] {
            let headers = Headers::bearer(token).with("origin", origin);
            let outcome = server.call_with(protocol, Rpc::ListSessions, json!({}), &headers).await;
            assert_eq!(cors(&outcome.headers, "access-control-allow-origin").as_deref(), Some(origin), "{outcome:?}");
            let exposed = cors(&outcome.headers, "access-control-expose-headers").unwrap_or_default();
            for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
                assert!(exposed.split(',').any(|h| h.trim() == name), "[{protocol}] {name} not exposed: {outcome:?}");
            }
        }
    }
}

backend_test!(cors_with_an_origin_list_ignores_other_origins);
async fn cors_with_an_origin_list_ignores_other_origins(backend: Backend) {
    let Some(server) = TestServer::on_with(backend, |c| c.cors_origins = vec!["https://good.example".into()]).await
    else {
        return;
    };
    let admin = admin(&server).await;
    let path = Rpc::CreateSession.path();
    let response = preflight(&server, &path, "https://good.example").await;
    assert_eq!(cors(response.headers(), "access-control-allow-origin").as_deref(), Some("https://good.example"));
    let no_cors_headers =
        |headers: &http::HeaderMap| !headers.keys().any(|k| k.as_str().starts_with("access-control-"));
    let response = preflight(&server, &path, "https://evil.example").await;
    assert!(no_cors_headers(response.headers()), "an outside origin gets no CORS headers at all: {response:?}");
    for protocol in Protocol::ALL {
        let headers = Headers::bearer(&admin.token).with("origin", "https://evil.example");
        let outcome = server.call_with(protocol, Rpc::ListSessions, json!({}), &headers).await;
        outcome.ok();
        assert!(no_cors_headers(&outcome.headers), "[{protocol}] {outcome:?}");
    }
}

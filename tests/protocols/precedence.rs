//! UNAUTHENTICATED comes first: a call whose token is invalid (revoked, unknown, or of a disabled
//! user) is refused as such on every protocol, whatever else is wrong with it (a not-found or
//! malformed session, a wrong session token, a missing permission, a request past the limits),
//! including the calls that decide their token in their own store step.

use base64::Engine;
use http::Method;
use serde_json::{Value, json};
use sessiond::domain::Permission::{SessionRead, SessionWrite};
use tonic::Code;

use crate::common::{
    Backend, Protocol, Rpc, TestServer,
    client::{BASE64, Headers, frame, json_outcome},
};

backend_test!(an_invalid_token_is_answered_before_every_other_error);
async fn an_invalid_token_is_answered_before_every_other_error(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    // Reads only: creating is PERMISSION_DENIED to it, so is deleting another's session.
    let reader = server.actor("reader", &[SessionRead]).await;
    let owner = server.actor("owner", &[SessionRead, SessionWrite]).await;
    let session = server.create(Protocol::Rest, &owner.id, &owner.token).await;
    let too_long = "a".repeat(201);
    let wrong_token = json!({ "sessionId": session.id, "sessionToken": "wrong" });
    let cases: [(Rpc, Value, Code, &str); 8] = [
        (Rpc::GetSession, json!({ "sessionId": "unknown" }), Code::NotFound, "SESSION-NotFound"),
        (Rpc::GetSession, json!({ "sessionId": too_long }), Code::InvalidArgument, "SESSION-InvalidId"),
        (Rpc::GetSession, wrong_token.clone(), Code::PermissionDenied, "SESSION-TokenInvalid"),
        (Rpc::DeleteSession, json!({ "sessionId": "unknown" }), Code::NotFound, "SESSION-NotFound"),
        (Rpc::DeleteSession, json!({ "sessionId": too_long }), Code::InvalidArgument, "SESSION-InvalidId"),
        (Rpc::DeleteSession, wrong_token, Code::PermissionDenied, "SESSION-TokenInvalid"),
        (Rpc::CreateSession, json!({}), Code::PermissionDenied, "SESSION-PermissionDenied"),
        (
            Rpc::CreateSession,
            json!({ "metadata": { "k".repeat(201): "eA==" } }),
            Code::InvalidArgument,
            "SESSION-InvalidMetadata",
        ),
    ];
    // What each call answers to a valid token: the error an invalid one must take precedence over.
    for protocol in Protocol::ALL {
        for (rpc, request, code, id) in &cases {
            server.call(protocol, *rpc, request.clone(), &reader.token).await.expect_error(*code, id);
        }
    }

    let (revoked_id, revoked) = server.token_expiring(&reader.id, &[SessionRead], None).await;
    server.revoke(&revoked_id).await;
    let disabled = server.actor("disabled", &[SessionRead]).await;
    server.disable(&disabled.id).await;
    let unknown = "c2Vzc2lvbmQ.dW5rbm93bg".to_owned();
    for protocol in Protocol::ALL {
        for token in [&revoked, &disabled.token, &unknown] {
            for (rpc, request, _, _) in &cases {
                let outcome = server.call(protocol, *rpc, request.clone(), token).await;
                outcome.expect_error(Code::Unauthenticated, "AUTH-InvalidToken");
            }
        }
    }
    // Nothing the refused calls asked for happened.
    let got = server.call(Protocol::Rest, Rpc::GetSession, json!({ "sessionId": session.id }), &owner.token).await;
    assert_eq!(got.ok()["session"]["sequence"], "1", "{got:?}");
}

backend_test!(a_request_of_the_wrong_form_is_unauthenticated_first_too);
async fn a_request_of_the_wrong_form_is_unauthenticated_first_too(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let reader = server.actor("reader", &[SessionRead]).await;
    let path = Rpc::GetSession.path();
    let unknown = "c2Vzc2lvbmQ.dW5rbm93bg";
    // What the transport refuses on the request's own form: a malformed deadline, a body that is
    // not one frame, not base64, not JSON, not protobuf.
    let truncated = vec![0, 0, 0, 0, 9, 1];
    let send = |protocol: Protocol, headers: Headers, malformed_body: bool| {
        let (server, path, truncated) = (&server, path.clone(), truncated.clone());
        async move {
            let get = Rpc::GetSession.encode(json!({ "sessionId": "x" }));
            // One fault at a time: the deadline is malformed only where the body is not.
            let timeout =
                |headers: Headers, name: &str| if malformed_body { headers } else { headers.with(name, "soon") };
            match protocol {
                Protocol::Grpc => {
                    let body = if malformed_body { truncated } else { frame(&get) };
                    server.clients.grpc_raw(&path, &timeout(headers, "grpc-timeout"), body, None).await
                }
                Protocol::GrpcWeb => {
                    let body = if malformed_body { truncated } else { frame(&get) };
                    server.clients.grpc_web_raw(false, &path, &timeout(headers, "grpc-timeout"), body, None).await
                }
                Protocol::GrpcWebText => {
                    let body = if malformed_body { b"!!!".to_vec() } else { BASE64.encode(frame(&get)).into_bytes() };
                    server.clients.grpc_web_raw(true, &path, &timeout(headers, "grpc-timeout"), body, None).await
                }
                Protocol::ConnectJson | Protocol::ConnectProto | Protocol::Rest => {
                    let json = protocol != Protocol::ConnectProto;
                    let content_type = if json { "application/json" } else { "application/proto" };
                    let headers = timeout(headers.with("content-type", content_type), "connect-timeout-ms");
                    let (method, path, body) = match (protocol, malformed_body) {
                        (Protocol::Rest, true) => (Method::POST, "/v2/sessions/search".to_owned(), b"{".to_vec()),
                        (Protocol::Rest, false) => (Method::GET, "/v2/sessions/x".to_owned(), Vec::new()),
                        (_, true) => (Method::POST, path, if json { b"{".to_vec() } else { vec![0xff] }),
                        (_, false) => (Method::POST, path, if json { b"{}".to_vec() } else { get }),
                    };
                    let raw = server.clients.exchange(false, method, &path, &headers, body).await;
                    json_outcome(protocol, raw)
                }
            }
        }
    };
    for protocol in Protocol::ALL {
        for malformed_body in [false, true] {
            let case = if malformed_body { "a malformed body" } else { "a malformed deadline" };
            let outcome = send(protocol, Headers::none(), malformed_body).await;
            assert_eq!(outcome.code, Code::Unauthenticated, "[{protocol}] {case}, no token: {outcome:?}");
            let outcome = send(protocol, Headers::bearer(unknown), malformed_body).await;
            assert_eq!(outcome.code, Code::Unauthenticated, "[{protocol}] {case}, unknown token: {outcome:?}");
            // A valid token gets the refusal of the form.
            let outcome = send(protocol, Headers::bearer(&reader.token), malformed_body).await;
            assert_eq!(outcome.code, Code::InvalidArgument, "[{protocol}] {case}, valid token: {outcome:?}");
        }
    }
}

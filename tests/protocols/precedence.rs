//! UNAUTHENTICATED comes first: a call whose token is invalid (revoked, unknown, or of a disabled
//! user) is refused as such on every protocol, whatever else is wrong with it (a not-found or
//! malformed session, a wrong session token, a missing permission, a request past the limits),
//! including the calls that decide their token in their own store step.

use serde_json::{Value, json};
use sessiond::domain::Permission::{SessionRead, SessionWrite};
use tonic::Code;

use crate::common::{Backend, Protocol, Rpc, TestServer};

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

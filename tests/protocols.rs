//! The protocol behaviour matrix: each behaviour of the Session API is written once and run over
//! gRPC, gRPC-Web (binary and text), Connect (JSON and binary) and REST against a real server, pinning the
//! exact HTTP status, gRPC code and error id of every refusal. The edges where the wire formats
//! differ (malformed input, routing, CORS, limits) are in `protocols/edges.rs`.

#[macro_use]
mod common;
#[path = "protocols/answers.rs"]
mod answers;
#[path = "protocols/edges.rs"]
mod edges;
#[path = "protocols/limits.rs"]
mod limits;
#[path = "protocols/precedence.rs"]
mod precedence;
#[path = "protocols/wire.rs"]
mod wire;

use base64::Engine;
use serde_json::{Value, json};
use sessiond::domain::{
    Permission::{SessionDelete, SessionRead, SessionWrite},
    Timestamp,
};
use tonic::Code;

use common::{
    Backend, Protocol, Rpc, TestServer,
    client::{BASE64, Headers},
    user_check,
};

fn b64(s: &str) -> String {
    BASE64.encode(s)
}

backend_test!(create_checks_the_user_by_id_or_login_name_and_get_shows_it);
async fn create_checks_the_user_by_id_or_login_name_and_get_shows_it(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let app = server.actor("app", &[SessionWrite]).await;
    let alice = server.actor("alice", &[]).await;
    for protocol in Protocol::ALL {
        let by_id = json!({ "user": { "userId": alice.id } });
        let by_login_name = json!({ "user": { "loginName": "alice" } });
        let mut tokens = Vec::new();
        for checks in [by_id, by_login_name] {
            let created = server.call(protocol, Rpc::CreateSession, json!({ "checks": checks }), &app.token).await;
            let body = created.ok_with_status(201);
            let id = created.str("/sessionId");
            let token = created.str("/sessionToken");
            assert!(!id.is_empty() && !token.is_empty(), "[{protocol}] {created:?}");
            assert_eq!(body["details"]["sequence"], "1", "[{protocol}] {created:?}");
            assert_eq!(body["details"]["resourceOwner"], "default", "[{protocol}] {created:?}");
            // Timestamps as ZITADEL writes them: RFC 3339 in UTC with `Z`, 0/3/6/9 fractional digits.
            let created_at = body["details"]["creationDate"].as_str().unwrap_or_default();
            assert!(rfc3339_utc(created_at), "[{protocol}] `{created_at}`: {created:?}");
            assert_eq!(body["details"]["changeDate"], body["details"]["creationDate"], "[{protocol}] {created:?}");
            tokens.push(token);

            // The session's own user reads it without any permission.
            let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": id }), &alice.token).await;
            let session = &got.ok_with_status(200)["session"];
            assert_eq!(session["id"], id, "[{protocol}] {got:?}");
            assert_eq!(session["sequence"], "1", "[{protocol}] {got:?}");
            assert_eq!(session["creationDate"], body["details"]["creationDate"], "[{protocol}] {got:?}");
            let user = &session["factors"]["user"];
            assert_eq!(user["id"], alice.id, "[{protocol}] {got:?}");
            assert_eq!(user["loginName"], "alice", "[{protocol}] {got:?}");
            assert_eq!(user["displayName"], "alice", "[{protocol}] {got:?}");
            assert_eq!(user["organizationId"], "default", "[{protocol}] {got:?}");
            assert!(user["verifiedAt"].is_string(), "[{protocol}] {got:?}");
            assert!(session.get("expirationDate").is_none(), "[{protocol}] no lifetime, no expiry: {got:?}");
        }
        assert_ne!(tokens[0], tokens[1], "[{protocol}] every session gets its own token");
    }
}

backend_test!(create_stores_metadata_user_agent_and_lifetime);
async fn create_stores_metadata_user_agent_and_lifetime(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let app = server.actor("app", &[SessionWrite, SessionRead]).await;
    let alice = server.user("alice").await;
    for protocol in Protocol::ALL {
        let request = json!({
            "checks": user_check(&alice),
            "metadata": { "color": b64("blue") },
            "userAgent": {
                "fingerprintId": "fp-1",
                "description": "firefox",
                "header": { "accept": { "values": ["a", "b"] } },
            },
            "lifetime": "3600s",
        });
        let created = server.call(protocol, Rpc::CreateSession, request, &app.token).await;
        created.ok();
        let got =
            server.call(protocol, Rpc::GetSession, json!({ "sessionId": created.str("/sessionId") }), &app.token).await;
        let session = &got.ok()["session"];
        assert_eq!(session["metadata"], json!({ "color": b64("blue") }), "[{protocol}] {got:?}");
        assert_eq!(session["userAgent"]["fingerprintId"], "fp-1", "[{protocol}] {got:?}");
        assert_eq!(session["userAgent"]["description"], "firefox", "[{protocol}] {got:?}");
        assert_eq!(session["userAgent"]["header"]["accept"]["values"], json!(["a", "b"]), "[{protocol}] {got:?}");
        assert!(session["expirationDate"].is_string(), "[{protocol}] a lifetime sets the expiry: {got:?}");

        // Metadata is bytes, not text; the user agent comes from the message, never from headers.
        let request = json!({ "checks": user_check(&alice), "metadata": { "raw": BASE64.encode([0u8, 0xff, 0x80]) } });
        let headers = Headers::bearer(&app.token).with("user-agent", "curl/8.0").with("x-forwarded-for", "203.0.113.7");
        let created = server.call_with(protocol, Rpc::CreateSession, request, &headers).await;
        let request = json!({ "sessionId": created.str("/sessionId") });
        let got = server.call(protocol, Rpc::GetSession, request, &app.token).await;
        let session = &got.ok()["session"];
        assert_eq!(session["metadata"]["raw"], BASE64.encode([0u8, 0xff, 0x80]), "[{protocol}] {got:?}");
        assert!(session.get("userAgent").is_none(), "[{protocol}] {got:?}");
    }
}

backend_test!(get_is_allowed_to_the_sessions_user_a_read_holder_and_the_token_bearer);
async fn get_is_allowed_to_the_sessions_user_a_read_holder_and_the_token_bearer(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let app = server.actor("app", &[SessionWrite, SessionDelete]).await;
    let alice = server.actor("alice", &[]).await;
    let reader = server.actor("reader", &[SessionRead]).await;
    let stranger = server.actor("stranger", &[]).await;
    for protocol in Protocol::ALL {
        let session = server.create(protocol, &alice.id, &app.token).await;
        let other = server.create(protocol, &alice.id, &app.token).await;
        let by_id = json!({ "sessionId": session.id });
        let with_token = json!({ "sessionId": session.id, "sessionToken": session.token });
        for (request, token) in
            [(&by_id, &alice.token), (&by_id, &reader.token), (&with_token, &stranger.token), (&with_token, &app.token)]
        {
            let got = server.call(protocol, Rpc::GetSession, request.clone(), token).await;
            assert_eq!(got.ok()["session"]["id"], session.id, "[{protocol}] {got:?}");
        }
        // Neither a stranger nor the creator (without session.read) may read it.
        for token in [&stranger.token, &app.token] {
            let got = server.call(protocol, Rpc::GetSession, by_id.clone(), token).await;
            got.expect_error(Code::PermissionDenied, "SESSION-PermissionDenied");
        }
        // A wrong token is refused even for those who could read without one.
        for token in [&alice.token, &reader.token] {
            let request = json!({ "sessionId": session.id, "sessionToken": other.token });
            let got = server.call(protocol, Rpc::GetSession, request, token).await;
            got.expect_error(Code::PermissionDenied, "SESSION-TokenInvalid");
        }
        let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": "nope" }), &stranger.token).await;
        got.expect_error(Code::NotFound, "SESSION-NotFound");
    }
}

backend_test!(a_session_created_without_checks_gets_its_user_later);
async fn a_session_created_without_checks_gets_its_user_later(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let app = server.actor("app", &[SessionWrite]).await;
    let alice = server.actor("alice", &[]).await;
    server.users.set_password(&alice.id, "secret".into()).await.expect("set password");
    for protocol in Protocol::ALL {
        let created = server.call(protocol, Rpc::CreateSession, json!({}), &app.token).await;
        created.ok_with_status(201);
        let (id, token) = (created.str("/sessionId"), created.str("/sessionToken"));
        // Nobody is its user yet: alice cannot read it, the token can.
        let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": id }), &alice.token).await;
        got.expect_error(Code::PermissionDenied, "SESSION-PermissionDenied");
        let request = json!({ "sessionId": id, "sessionToken": token });
        let got = server.call(protocol, Rpc::GetSession, request, &alice.token).await;
        assert!(got.ok()["session"]["factors"].get("user").is_none(), "[{protocol}] {got:?}");

        let request =
            json!({ "sessionId": id, "sessionToken": token, "checks": { "password": { "password": "secret" } } });
        let set = server.call(protocol, Rpc::SetSession, request, &app.token).await;
        set.expect_error(Code::FailedPrecondition, "SESSION-UserMissing");
        // User and password in one call, in request order.
        let request = json!({
            "sessionId": id,
            "sessionToken": token,
            "checks": { "user": { "loginName": "alice" }, "password": { "password": "secret" } },
        });
        let set = server.call(protocol, Rpc::SetSession, request, &app.token).await;
        assert_eq!(set.ok()["details"]["sequence"], "2", "[{protocol}] {set:?}");
        let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": id }), &alice.token).await;
        let factors = &got.ok()["session"]["factors"];
        assert_eq!(factors["user"]["id"], alice.id, "[{protocol}] now alice's: {got:?}");
        assert!(factors["password"]["verifiedAt"].is_string(), "[{protocol}] {got:?}");
    }
}

backend_test!(concurrent_deletes_all_succeed_with_the_same_details);
async fn concurrent_deletes_all_succeed_with_the_same_details(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let alice = server.actor("alice", &[SessionWrite]).await;
    for protocol in Protocol::ALL {
        let session = server.create(protocol, &alice.id, &alice.token).await;
        let request = json!({ "sessionId": session.id });
        let calls = Protocol::ALL
            .iter()
            .chain(Protocol::ALL.iter())
            .map(|p| server.call(*p, Rpc::DeleteSession, request.clone(), &alice.token));
        let outcomes = futures_util::future::join_all(calls).await;
        let details: Vec<_> = outcomes.iter().map(|o| o.ok()["details"].clone()).collect();
        assert_eq!(details[0]["sequence"], "2", "[{protocol}] {outcomes:?}");
        // Timestamps are rendered per protocol; compare each protocol's answers with its own.
        for (i, outcome) in outcomes.iter().enumerate().skip(Protocol::ALL.len()) {
            assert_eq!(details[i], details[i - Protocol::ALL.len()], "[{}] {outcomes:?}", outcome.protocol);
        }
    }
}

backend_test!(create_refuses_unknown_and_inactive_users_and_callers_without_session_write);
async fn create_refuses_unknown_and_inactive_users_and_callers_without_session_write(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let app = server.actor("app", &[SessionWrite]).await;
    let reader = server.actor("reader", &[SessionRead, SessionDelete]).await;
    let inactive = server.user("inactive").await;
    server.disable(&inactive).await;
    let alice = server.user("alice").await;
    for protocol in Protocol::ALL {
        for checks in [json!({ "user": { "userId": "nobody" } }), json!({ "user": { "loginName": "nobody" } })] {
            let outcome = server.call(protocol, Rpc::CreateSession, json!({ "checks": checks }), &app.token).await;
            outcome.expect_error(Code::NotFound, "USER-NotFound");
        }
        for checks in [json!({ "user": { "userId": inactive } }), json!({ "user": { "loginName": "inactive" } })] {
            let outcome = server.call(protocol, Rpc::CreateSession, json!({ "checks": checks }), &app.token).await;
            outcome.expect_error(Code::FailedPrecondition, "USER-Inactive");
        }
        let outcome =
            server.call(protocol, Rpc::CreateSession, json!({ "checks": user_check(&alice) }), &reader.token).await;
        outcome.expect_error(Code::PermissionDenied, "SESSION-PermissionDenied");
        for lifetime in ["-5s", "0s"] {
            let outcome = server.call(protocol, Rpc::CreateSession, json!({ "lifetime": lifetime }), &app.token).await;
            outcome.expect_error(Code::InvalidArgument, "SESSION-InvalidLifetime");
        }
        // A user check that names nobody is refused, never dropped (a session without a user).
        for user in [json!({}), json!({ "userId": "" }), json!({ "loginName": "" })] {
            let request = json!({ "checks": { "user": user } });
            let outcome = server.call(protocol, Rpc::CreateSession, request, &app.token).await;
            outcome.expect_error(Code::InvalidArgument, "SESSION-InvalidUserCheck");
        }
    }
    // None of the refused calls left a session behind.
    let everyone = server.actor("auditor", &[SessionRead]).await;
    let listed = server.call(Protocol::ConnectJson, Rpc::ListSessions, json!({}), &everyone.token).await;
    assert!(listed.ok().get("sessions").is_none(), "{listed:?}");
}

backend_test!(delete_is_allowed_to_the_owner_a_delete_holder_and_the_token_bearer);
async fn delete_is_allowed_to_the_owner_a_delete_holder_and_the_token_bearer(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let app = server.actor("app", &[SessionWrite]).await;
    let alice = server.actor("alice", &[]).await;
    let deleter = server.actor("deleter", &[SessionDelete]).await;
    let stranger = server.actor("stranger", &[]).await;
    for protocol in Protocol::ALL {
        let by_owner = server.create(protocol, &alice.id, &app.token).await;
        let by_holder = server.create(protocol, &alice.id, &app.token).await;
        let by_bearer = server.create(protocol, &alice.id, &app.token).await;
        let deletions = [
            (&by_owner, json!({ "sessionId": by_owner.id }), &alice.token),
            (&by_holder, json!({ "sessionId": by_holder.id }), &deleter.token),
            (&by_bearer, json!({ "sessionId": by_bearer.id, "sessionToken": by_bearer.token }), &stranger.token),
        ];
        for (session, request, token) in deletions {
            let deleted = server.call(protocol, Rpc::DeleteSession, request, token).await;
            let details = &deleted.ok_with_status(200)["details"];
            assert_eq!(details["sequence"], "2", "[{protocol}] {deleted:?}");
            assert_eq!(details["creationDate"], session.details["creationDate"], "[{protocol}] {deleted:?}");
            assert_eq!(details["resourceOwner"], "default", "[{protocol}] {deleted:?}");
            assert!(details["changeDate"].is_string(), "[{protocol}] {deleted:?}");
            let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": session.id }), &alice.token).await;
            got.expect_error(Code::NotFound, "SESSION-NotFound");
        }
    }
}

backend_test!(delete_by_a_stranger_or_with_a_wrong_token_is_denied_and_changes_nothing);
async fn delete_by_a_stranger_or_with_a_wrong_token_is_denied_and_changes_nothing(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let app = server.actor("app", &[SessionWrite]).await;
    let alice = server.actor("alice", &[]).await;
    let deleter = server.actor("deleter", &[SessionDelete, SessionRead, SessionWrite]).await;
    let stranger = server.actor("stranger", &[]).await;
    for protocol in Protocol::ALL {
        let session = server.create(protocol, &alice.id, &app.token).await;
        let other = server.create(protocol, &alice.id, &app.token).await;
        // Neither being someone else nor holding session.write allows terminating.
        for token in [&stranger.token, &app.token] {
            let outcome = server.call(protocol, Rpc::DeleteSession, json!({ "sessionId": session.id }), token).await;
            outcome.expect_error(Code::PermissionDenied, "SESSION-PermissionDenied");
        }
        // A presented token decides, whatever the caller holds: the owner and a session.delete
        // holder alike are refused with a wrong one (another session's token included).
        for wrong in ["wrong", other.token.as_str()] {
            for token in [&alice.token, &deleter.token] {
                let request = json!({ "sessionId": session.id, "sessionToken": wrong });
                let outcome = server.call(protocol, Rpc::DeleteSession, request, token).await;
                outcome.expect_error(Code::PermissionDenied, "SESSION-TokenInvalid");
            }
        }
        let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": session.id }), &alice.token).await;
        assert_eq!(got.ok()["session"]["sequence"], "1", "[{protocol}] the session is untouched: {got:?}");
        // An empty token is no token (proto3): the owner may terminate without one.
        let request = json!({ "sessionId": session.id, "sessionToken": "" });
        let deleted = server.call(protocol, Rpc::DeleteSession, request, &alice.token).await;
        assert_eq!(deleted.ok()["details"]["sequence"], "2", "[{protocol}] {deleted:?}");
    }
}

backend_test!(delete_of_an_unknown_or_malformed_id_is_refused);
async fn delete_of_an_unknown_or_malformed_id_is_refused(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let deleter = server.actor("deleter", &[SessionDelete, SessionRead, SessionWrite]).await;
    let longest = "a".repeat(200);
    let too_long = "a".repeat(201);
    for protocol in Protocol::ALL {
        for id in ["unknown", longest.as_str()] {
            for rpc in [Rpc::DeleteSession, Rpc::GetSession, Rpc::SetSession] {
                let outcome = server.call(protocol, rpc, json!({ "sessionId": id }), &deleter.token).await;
                outcome.expect_error(Code::NotFound, "SESSION-NotFound");
            }
        }
        for rpc in [Rpc::DeleteSession, Rpc::GetSession, Rpc::SetSession] {
            let outcome = server.call(protocol, rpc, json!({ "sessionId": too_long }), &deleter.token).await;
            outcome.expect_error(Code::InvalidArgument, "SESSION-InvalidId");
            let outcome = server.call(protocol, rpc, json!({ "sessionId": "" }), &deleter.token).await;
            match protocol {
                // `/v2/sessions/` names no route at all.
                Protocol::Rest => outcome.expect_error(Code::NotFound, "REQUEST-NoRoute"),
                _ => outcome.expect_error(Code::InvalidArgument, "SESSION-InvalidId"),
            }
        }
    }
}

backend_test!(error_messages_survive_every_protocols_encoding);
async fn error_messages_survive_every_protocols_encoding(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let reader = server.actor("reader", &[SessionRead]).await;
    for protocol in Protocol::ALL {
        for id in ["été ✓", "100%", "grpc-status:0"] {
            let outcome = server.call(protocol, Rpc::GetSession, json!({ "sessionId": id }), &reader.token).await;
            outcome.expect_error(Code::NotFound, "SESSION-NotFound");
            assert_eq!(outcome.message, format!("session `{id}` does not exist (SESSION-NotFound)"), "[{protocol}]");
        }
        // Control characters never make an id (and so never reach a message).
        let outcome = server.call(protocol, Rpc::GetSession, json!({ "sessionId": "a\r\nb" }), &reader.token).await;
        outcome.expect_error(Code::InvalidArgument, "SESSION-InvalidId");
        assert_eq!(
            outcome.message, "session_id must not contain control characters (SESSION-InvalidId)",
            "[{protocol}]"
        );
    }
}

backend_test!(repeated_delete_answers_the_same_details_and_the_session_is_gone);
async fn repeated_delete_answers_the_same_details_and_the_session_is_gone(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let app = server.actor("app", &[SessionWrite]).await;
    let alice = server.actor("alice", &[]).await;
    let admin = server.actor("admin", &[SessionRead, SessionWrite, SessionDelete]).await;
    for protocol in Protocol::ALL {
        let session = server.create(protocol, &alice.id, &app.token).await;
        let first = server.call(protocol, Rpc::DeleteSession, json!({ "sessionId": session.id }), &alice.token).await;
        let first = first.ok()["details"].clone();
        assert_eq!(first["sequence"], "2", "[{protocol}] {first}");
        for (request, token) in [
            (json!({ "sessionId": session.id }), &alice.token),
            (json!({ "sessionId": session.id }), &admin.token),
            (json!({ "sessionId": session.id, "sessionToken": session.token }), &app.token),
        ] {
            let again = server.call(protocol, Rpc::DeleteSession, request, token).await;
            assert_eq!(again.ok()["details"], first, "[{protocol}] a retry answers the first termination's details");
        }
        for token in [&alice.token, &admin.token] {
            let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": session.id }), token).await;
            got.expect_error(Code::NotFound, "SESSION-NotFound");
        }
        let request = json!({ "sessionId": session.id, "metadata": { "k": b64("v") } });
        let set = server.call(protocol, Rpc::SetSession, request, &admin.token).await;
        set.expect_error(Code::FailedPrecondition, "SESSION-Terminated");
        let request = json!({ "sessionId": session.id, "sessionToken": session.token, "lifetime": "60s" });
        let set = server.call(protocol, Rpc::SetSession, request, &alice.token).await;
        set.expect_error(Code::FailedPrecondition, "SESSION-Terminated");
    }
}

backend_test!(expired_sessions_cannot_be_read_or_changed_but_can_be_terminated);
async fn expired_sessions_cannot_be_read_or_changed_but_can_be_terminated(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = server.actor("admin", &[SessionRead, SessionWrite, SessionDelete]).await;
    let alice = server.user("alice").await;
    for protocol in Protocol::ALL {
        // One microsecond: over before the creating call has even answered.
        let request = json!({ "checks": user_check(&alice), "lifetime": "0.000001s" });
        let created = server.call(protocol, Rpc::CreateSession, request, &admin.token).await;
        created.ok();
        let id = created.str("/sessionId");
        let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": id }), &admin.token).await;
        got.expect_error(Code::NotFound, "SESSION-NotFound");
        let request = json!({ "sessionId": id, "lifetime": "3600s" });
        let set = server.call(protocol, Rpc::SetSession, request, &admin.token).await;
        set.expect_error(Code::FailedPrecondition, "SESSION-Terminated");
        let request = json!({ "queries": [{ "idsQuery": { "ids": [id] } }] });
        let listed = server.call(protocol, Rpc::ListSessions, request, &admin.token).await;
        assert!(listed.ok().get("sessions").is_none(), "[{protocol}] expired sessions are never listed: {listed:?}");
        let deleted = server.call(protocol, Rpc::DeleteSession, json!({ "sessionId": id }), &admin.token).await;
        assert_eq!(deleted.ok()["details"]["sequence"], "2", "[{protocol}] {deleted:?}");
    }
}

backend_test!(every_protocol_refuses_missing_malformed_and_invalid_credentials);
async fn every_protocol_refuses_missing_malformed_and_invalid_credentials(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let app = server.actor("app", &[SessionWrite, SessionRead, SessionDelete]).await;
    let alice = server.actor("alice", &[SessionWrite, SessionRead, SessionDelete]).await;
    let (revoked_id, revoked) = server.token_expiring(&app.id, &[SessionWrite, SessionRead], None).await;
    server.revoke(&revoked_id).await;
    let yesterday = Timestamp(Timestamp::now().micros() - 86_400_000_000);
    let (_, expired) = server.token_expiring(&app.id, &[SessionWrite, SessionRead], Some(yesterday)).await;
    // A token of a user who is disabled afterwards stops working at once.
    let disabled = alice.token.clone();
    server.disable(&alice.id).await;

    let cases = [
        ("no authorization header", Headers::none(), "AUTH-MissingCredentials"),
        ("`Bearer` with an empty token", Headers::none().with("authorization", "Bearer "), "AUTH-MalformedCredentials"),
        (
            "the Basic scheme",
            Headers::none().with("authorization", "Basic YXBwOnNlY3JldA=="),
            "AUTH-MalformedCredentials",
        ),
        (
            "two authorization headers",
            Headers::bearer(&app.token).with("authorization", &format!("Bearer {}", app.token)),
            "AUTH-AmbiguousCredentials",
        ),
        ("an unknown token", Headers::bearer("c2Vzc2lvbmQ.dW5rbm93bg"), "AUTH-InvalidToken"),
        ("a token that is not one of ours", Headers::bearer("opaque"), "AUTH-InvalidToken"),
        ("a revoked token", Headers::bearer(&revoked), "AUTH-InvalidToken"),
        ("an expired token", Headers::bearer(&expired), "AUTH-InvalidToken"),
        ("a disabled user's token", Headers::bearer(&disabled), "AUTH-InvalidToken"),
    ];
    let session = server.create(Protocol::ConnectJson, &app.id, &app.token).await;
    let requests = [
        (Rpc::CreateSession, json!({ "checks": user_check(&app.id) })),
        (Rpc::GetSession, json!({ "sessionId": session.id })),
        (Rpc::SetSession, json!({ "sessionId": session.id, "metadata": { "k": b64("v") } })),
        (Rpc::DeleteSession, json!({ "sessionId": session.id })),
        (Rpc::ListSessions, json!({})),
    ];
    for protocol in Protocol::ALL {
        for (case, headers, id) in &cases {
            for (rpc, request) in &requests {
                let outcome = server.call_with(protocol, *rpc, request.clone(), headers).await;
                let context = format!("[{protocol}] {} with {case}: {outcome:?}", rpc.name());
                assert_eq!((outcome.code, outcome.id.as_str()), (Code::Unauthenticated, *id), "{context}");
                outcome.expect_error(Code::Unauthenticated, id);
            }
        }
    }
    // Nothing the refused calls asked for happened.
    let got = server.call(Protocol::Rest, Rpc::GetSession, json!({ "sessionId": session.id }), &app.token).await;
    assert_eq!(got.ok()["session"]["sequence"], "1", "{got:?}");
    let listed = server.call(Protocol::Rest, Rpc::ListSessions, json!({}), &app.token).await;
    assert_eq!(listed.ok()["details"]["totalResult"], "1", "{listed:?}");
    // The scheme is matched case-insensitively.
    let headers = Headers::none().with("authorization", &format!("bEaReR {}", app.token));
    for protocol in Protocol::ALL {
        let got = server.call_with(protocol, Rpc::GetSession, json!({ "sessionId": session.id }), &headers).await;
        got.ok();
    }
}

backend_test!(set_session_rotates_the_token_on_every_change_and_only_then);
async fn set_session_rotates_the_token_on_every_change_and_only_then(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let app = server.actor("app", &[SessionWrite]).await;
    let alice = server.actor("alice", &[]).await;
    for protocol in Protocol::ALL {
        let session = server.create(protocol, &alice.id, &app.token).await;
        // The current token lets even a caller without permissions change the session.
        let request =
            json!({ "sessionId": session.id, "sessionToken": session.token, "metadata": { "color": b64("blue") } });
        let set = server.call(protocol, Rpc::SetSession, request, &alice.token).await;
        let details = &set.ok_with_status(200)["details"];
        assert_eq!(details["sequence"], "2", "[{protocol}] {set:?}");
        let rotated = set.str("/sessionToken");
        assert!(!rotated.is_empty() && rotated != session.token, "[{protocol}] a change issues a new token: {set:?}");

        // The old token stopped working everywhere it can be presented.
        let request = json!({ "sessionId": session.id, "sessionToken": session.token });
        let got = server.call(protocol, Rpc::GetSession, request.clone(), &alice.token).await;
        got.expect_error(Code::PermissionDenied, "SESSION-TokenInvalid");
        let deleted = server.call(protocol, Rpc::DeleteSession, request.clone(), &alice.token).await;
        deleted.expect_error(Code::PermissionDenied, "SESSION-TokenInvalid");
        let set = server.call(protocol, Rpc::SetSession, request, &app.token).await;
        set.expect_error(Code::PermissionDenied, "SESSION-TokenInvalid");

        let request = json!({ "sessionId": session.id, "sessionToken": rotated });
        let got = server.call(protocol, Rpc::GetSession, request, &alice.token).await;
        let read = &got.ok()["session"];
        assert_eq!(read["metadata"], json!({ "color": b64("blue") }), "[{protocol}] {got:?}");
        assert_eq!(read["sequence"], "2", "[{protocol}] {got:?}");

        // Nothing to change (no fields, or the value it already has): no new token, same sequence.
        for unchanged in [
            json!({ "sessionId": session.id, "sessionToken": rotated }),
            json!({ "sessionId": session.id, "sessionToken": rotated, "metadata": { "color": b64("blue") } }),
            json!({ "sessionId": session.id, "sessionToken": rotated, "metadata": { "absent": "" } }),
        ] {
            let set = server.call(protocol, Rpc::SetSession, unchanged, &alice.token).await;
            assert_eq!(set.ok()["details"]["sequence"], "2", "[{protocol}] {set:?}");
            // An empty token is a default value: omitted from the answer.
            assert!(set.ok().get("sessionToken").is_none(), "[{protocol}] {set:?}");
        }
        // An empty value removes the key: a change like any other.
        let request = json!({ "sessionId": session.id, "sessionToken": rotated, "metadata": { "color": "" } });
        let set = server.call(protocol, Rpc::SetSession, request, &alice.token).await;
        assert_eq!(set.ok()["details"]["sequence"], "3", "[{protocol}] {set:?}");
        let newest = set.str("/sessionToken");
        assert!(!newest.is_empty() && newest != rotated, "[{protocol}] {set:?}");
        let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": session.id }), &alice.token).await;
        assert!(got.ok()["session"].get("metadata").is_none(), "[{protocol}] {got:?}");
        assert!(got.ok()["session"].get("expirationDate").is_none(), "[{protocol}] {got:?}");

        // A lifetime sets the expiry from now: a change, with a new token.
        let request = json!({ "sessionId": session.id, "sessionToken": newest, "lifetime": "3600s" });
        let set = server.call(protocol, Rpc::SetSession, request, &alice.token).await;
        assert_eq!(set.ok()["details"]["sequence"], "4", "[{protocol}] {set:?}");
        assert!(!set.str("/sessionToken").is_empty(), "[{protocol}] {set:?}");
        let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": session.id }), &alice.token).await;
        let session = &got.ok()["session"];
        assert!(session["expirationDate"].is_string(), "[{protocol}] {got:?}");
        assert_eq!(session["changeDate"], set.ok()["details"]["changeDate"], "[{protocol}] {got:?}");
    }
}

backend_test!(set_session_refuses_strangers_and_a_user_check_naming_another_user);
async fn set_session_refuses_strangers_and_a_user_check_naming_another_user(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let app = server.actor("app", &[SessionWrite]).await;
    let alice = server.actor("alice", &[]).await;
    let bob = server.user("bob").await;
    for protocol in Protocol::ALL {
        let session = server.create(protocol, &alice.id, &app.token).await;
        // Changing needs the token or session.write; being the session's user is not enough.
        let request = json!({ "sessionId": session.id, "lifetime": "60s" });
        let set = server.call(protocol, Rpc::SetSession, request, &alice.token).await;
        set.expect_error(Code::PermissionDenied, "SESSION-PermissionDenied");
        for caller in [&alice.token, &app.token] {
            let request = json!({ "sessionId": session.id, "sessionToken": session.token, "checks": user_check(&bob) });
            let set = server.call(protocol, Rpc::SetSession, request, caller).await;
            set.expect_error(Code::InvalidArgument, "SESSION-UserMismatch");
        }
        // Checking the same user again is a change (a fresh verification time).
        let request =
            json!({ "sessionId": session.id, "sessionToken": session.token, "checks": user_check(&alice.id) });
        let set = server.call(protocol, Rpc::SetSession, request, &alice.token).await;
        assert_eq!(set.ok()["details"]["sequence"], "2", "[{protocol}] {set:?}");
        let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": session.id }), &alice.token).await;
        assert_eq!(got.ok()["session"]["factors"]["user"]["id"], alice.id, "[{protocol}] {got:?}");
    }
}

backend_test!(password_checks_report_failed_attempts_and_lock_the_user);
async fn password_checks_report_failed_attempts_and_lock_the_user(backend: Backend) {
    let Some(server) = TestServer::on_with(backend, |c| c.max_failed_attempts = 2).await else { return };
    let app = server.actor("app", &[SessionWrite]).await;
    for protocol in Protocol::ALL {
        let user = server.user(&format!("user-{protocol}")).await;
        server.users.set_password(&user, "correct horse".into()).await.expect("set password");
        let check =
            |password: &str| json!({ "checks": { "user": { "userId": user }, "password": { "password": password } } });
        let created = server.call(protocol, Rpc::CreateSession, check("correct horse"), &app.token).await;
        created.ok();
        let got =
            server.call(protocol, Rpc::GetSession, json!({ "sessionId": created.str("/sessionId") }), &app.token).await;
        got.expect_error(Code::PermissionDenied, "SESSION-PermissionDenied");
        let request = json!({ "sessionId": created.str("/sessionId"), "sessionToken": created.str("/sessionToken") });
        let got = server.call(protocol, Rpc::GetSession, request, &app.token).await;
        assert!(got.ok()["session"]["factors"]["password"]["verifiedAt"].is_string(), "[{protocol}] {got:?}");

        let failed = server.call(protocol, Rpc::CreateSession, check("wrong"), &app.token).await;
        failed.expect_error(Code::InvalidArgument, "USER-PasswordInvalid");
        assert_eq!(failed.failed_attempts, Some(1), "[{protocol}] {failed:?}");
        // The wrong password that reaches the limit is still a wrong password (ZITADEL's
        // `TestServer_CreateSession_lock_user`); only the checks after it find a locked user.
        let locking = server.call(protocol, Rpc::CreateSession, check("wrong"), &app.token).await;
        locking.expect_error(Code::InvalidArgument, "USER-PasswordInvalid");
        assert_eq!(locking.failed_attempts, Some(2), "[{protocol}] {locking:?}");
        let locked = server.call(protocol, Rpc::CreateSession, check("correct horse"), &app.token).await;
        locked.expect_error(Code::FailedPrecondition, "USER-Locked");
        assert_eq!(locked.failed_attempts, Some(2), "[{protocol}] {locked:?}");

        // A password check before any user is known has nothing to check against.
        let request = json!({ "checks": { "password": { "password": "correct horse" } } });
        let outcome = server.call(protocol, Rpc::CreateSession, request, &app.token).await;
        outcome.expect_error(Code::FailedPrecondition, "SESSION-UserMissing");
    }
}

backend_test!(list_shows_own_sessions_or_all_with_session_read_counting_every_match);
async fn list_shows_own_sessions_or_all_with_session_read_counting_every_match(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let app = server.actor("app", &[SessionWrite]).await;
    let alice = server.actor("alice", &[]).await;
    let bob = server.actor("bob", &[]).await;
    let reader = server.actor("reader", &[SessionRead]).await;
    // Created in this order: alice, bob, alice; and one of bob's, terminated, that no list shows.
    let mut created = Vec::new();
    for user in [&alice.id, &bob.id, &alice.id] {
        created.push(server.create(Protocol::ConnectJson, user, &app.token).await.id);
    }
    let ended = server.create(Protocol::ConnectJson, &bob.id, &app.token).await;
    server.call(Protocol::ConnectJson, Rpc::DeleteSession, json!({ "sessionId": ended.id }), &bob.token).await.ok();

    let ids = |body: &Value| -> Vec<String> {
        body.get("sessions")
            .and_then(Value::as_array)
            .map(|s| s.iter().map(|s| s["id"].as_str().unwrap_or_default().to_owned()).collect())
            .unwrap_or_default()
    };
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    for protocol in Protocol::ALL {
        let listed = server.call(protocol, Rpc::ListSessions, json!({}), &alice.token).await;
        let body = listed.ok_with_status(200);
        assert_eq!(ids(body), vec![created[2].clone(), created[0].clone()], "[{protocol}] own sessions: {listed:?}");
        assert_eq!(body["details"]["totalResult"], "2", "[{protocol}] {listed:?}");

        let listed = server.call(protocol, Rpc::ListSessions, json!({}), &reader.token).await;
        assert_eq!(ids(listed.ok()), newest_first, "[{protocol}] newest first by default: {listed:?}");
        assert_eq!(listed.ok()["details"]["totalResult"], "3", "[{protocol}] {listed:?}");

        let listed = server.call(protocol, Rpc::ListSessions, json!({ "query": { "asc": true } }), &reader.token).await;
        assert_eq!(ids(listed.ok()), created, "[{protocol}] asc: oldest first: {listed:?}");

        let request = json!({ "query": { "offset": "1", "limit": 1 } });
        let listed = server.call(protocol, Rpc::ListSessions, request, &reader.token).await;
        assert_eq!(ids(listed.ok()), vec![created[1].clone()], "[{protocol}] one page: {listed:?}");
        assert_eq!(listed.ok()["details"]["totalResult"], "3", "[{protocol}] the total counts every match: {listed:?}");

        let request = json!({ "query": { "offset": "10", "limit": 5 } });
        let listed = server.call(protocol, Rpc::ListSessions, request, &reader.token).await;
        assert!(ids(listed.ok()).is_empty(), "[{protocol}] past the end: {listed:?}");
        assert_eq!(listed.ok()["details"]["totalResult"], "3", "[{protocol}] {listed:?}");

        let request = json!({ "queries": [{ "userIdQuery": { "id": alice.id } }] });
        let listed = server.call(protocol, Rpc::ListSessions, request, &reader.token).await;
        assert_eq!(ids(listed.ok()), vec![created[2].clone(), created[0].clone()], "[{protocol}] {listed:?}");
        // bob without session.read asking for alice's sessions sees none of them.
        let request = json!({ "queries": [{ "userIdQuery": { "id": alice.id } }] });
        let listed = server.call(protocol, Rpc::ListSessions, request, &bob.token).await;
        assert!(ids(listed.ok()).is_empty(), "[{protocol}] {listed:?}");
        assert!(listed.ok()["details"].get("totalResult").is_none(), "[{protocol}] total 0: {listed:?}");

        let listed =
            server.call(protocol, Rpc::ListSessions, json!({ "query": { "limit": 1000 } }), &reader.token).await;
        assert_eq!(ids(listed.ok()).len(), 3, "[{protocol}] {listed:?}");
        let listed =
            server.call(protocol, Rpc::ListSessions, json!({ "query": { "limit": 1001 } }), &reader.token).await;
        listed.expect_error(Code::InvalidArgument, "SESSION-LimitTooLarge");
        let request = json!({ "queries": [{ "creatorQuery": { "id": "" } }] });
        let listed = server.call(protocol, Rpc::ListSessions, request, &reader.token).await;
        listed.expect_error(Code::InvalidArgument, "SESSION-InvalidQuery");
    }
}

backend_test!(list_pages_by_100_when_no_limit_is_given);
async fn list_pages_by_100_when_no_limit_is_given(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let app = server.actor("app", &[SessionWrite, SessionRead]).await;
    for _ in 0..101 {
        server.create(Protocol::ConnectJson, &app.id, &app.token).await;
    }
    for protocol in Protocol::ALL {
        for request in [json!({}), json!({ "query": { "limit": 0 } })] {
            let listed = server.call(protocol, Rpc::ListSessions, request, &app.token).await;
            let body = listed.ok();
            assert_eq!(body["sessions"].as_array().map(Vec::len), Some(100), "[{protocol}] {}", body["details"]);
            assert_eq!(body["details"]["totalResult"], "101", "[{protocol}] {}", body["details"]);
        }
    }
}

backend_test!(checks_and_challenges_that_are_not_built_are_unimplemented_by_name);
async fn checks_and_challenges_that_are_not_built_are_unimplemented_by_name(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let app = server.actor("app", &[SessionWrite]).await;
    let alice = server.user("alice").await;
    let checks = [
        ("idpIntent", json!({ "idpIntentId": "intent", "idpIntentToken": "token" })),
        ("recoveryCode", json!({ "code": "recovery" })),
    ];
    // One-time codes by SMS and email (tests/otp.rs) and passkeys (tests/passkeys.rs) are built.
    for protocol in Protocol::ALL {
        let session = server.create(protocol, &alice, &app.token).await;
        for (name, check) in &checks {
            // Refused whatever else the request holds: even the unknown user is not looked up.
            let mut request = json!({ "checks": { "user": { "userId": "nobody" } } });
            request["checks"][name] = check.clone();
            let outcome = server.call(protocol, Rpc::CreateSession, request, &app.token).await;
            outcome.expect_error(Code::Unimplemented, "CHECK-Unimplemented");
            assert!(outcome.message.contains(name), "[{protocol}] the message names {name}: {outcome:?}");

            let mut request = json!({ "sessionId": session.id, "sessionToken": session.token, "checks": {} });
            request["checks"][name] = check.clone();
            let outcome = server.call(protocol, Rpc::SetSession, request, &app.token).await;
            outcome.expect_error(Code::Unimplemented, "CHECK-Unimplemented");
            assert!(outcome.message.contains(name), "[{protocol}] the message names {name}: {outcome:?}");
        }
        // The session was never changed by the refused calls.
        let got = server
            .call(
                protocol,
                Rpc::GetSession,
                json!({ "sessionId": session.id, "sessionToken": session.token }),
                &app.token,
            )
            .await;
        assert_eq!(got.ok()["session"]["sequence"], "1", "[{protocol}] {got:?}");
    }
}

backend_test!(sessions_survive_a_restart);
async fn sessions_survive_a_restart(backend: Backend) {
    let Some(mut server) = TestServer::on(backend).await else { return };
    let app = server.actor("app", &[SessionWrite]).await;
    let alice = server.actor("alice", &[]).await;
    let mut sessions = Vec::new();
    for protocol in Protocol::ALL {
        let request = json!({
            "checks": user_check(&alice.id),
            "metadata": { "k": b64(&protocol.to_string()) },
            "lifetime": "3600s",
        });
        let created = server.call(protocol, Rpc::CreateSession, request, &app.token).await;
        created.ok();
        sessions.push((protocol, created.str("/sessionId"), created.str("/sessionToken")));
    }

    server.restart().await;
    for (protocol, id, token) in &sessions {
        // Tokens, users and sessions all came back from the database file.
        let request = json!({ "sessionId": id, "sessionToken": token });
        let got = server.call(*protocol, Rpc::GetSession, request, &app.token).await;
        let session = &got.ok()["session"];
        assert_eq!(session["factors"]["user"]["id"], alice.id, "[{protocol}] {got:?}");
        assert_eq!(session["metadata"]["k"], b64(&protocol.to_string()), "[{protocol}] {got:?}");
        assert!(session["expirationDate"].is_string(), "[{protocol}] {got:?}");
        let deleted = server.call(*protocol, Rpc::DeleteSession, json!({ "sessionId": id }), &alice.token).await;
        assert_eq!(deleted.ok()["details"]["sequence"], "2", "[{protocol}] {deleted:?}");
    }

    // The terminations were stored too.
    server.restart().await;
    for (protocol, id, _) in &sessions {
        let got = server.call(*protocol, Rpc::GetSession, json!({ "sessionId": id }), &alice.token).await;
        got.expect_error(Code::NotFound, "SESSION-NotFound");
    }
    server.stop().await;
}

/// `2025-03-04T15:26:53Z`, `...53.203Z`, `...53.203000Z` or `...53.203000001Z`: no offset other than `Z`.
fn rfc3339_utc(s: &str) -> bool {
    let Some((date_time, "")) = s.split_once('Z') else { return false };
    let (whole, fraction) = date_time.split_once('.').unwrap_or((date_time, ""));
    let shape = |text: &str, pattern: &str| {
        text.len() == pattern.len()
            && text.chars().zip(pattern.chars()).all(|(c, p)| if p == 'd' { c.is_ascii_digit() } else { c == p })
    };
    shape(whole, "dddd-dd-ddTdd:dd:dd")
        && [0, 3, 6, 9].contains(&fraction.len())
        && fraction.chars().all(|c| c.is_ascii_digit())
}

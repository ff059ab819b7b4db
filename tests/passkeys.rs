//! Passkeys without a browser: registration through the user service and sign-in through the
//! session service, over every wire format and on both stores, with a software authenticator
//! making real WebAuthn registrations and assertions; who may register; and the refusals of bad,
//! expired, reused and replayed registrations and assertions. (tests/passkeys_browser.rs does the
//! same through Chromium.)

mod common;

use std::time::Duration;

use common::{Actor, Backend, Outcome, Protocol, Rpc, TestServer, soft_passkey::SoftAuthenticator, user_check};
use serde_json::{Value, json};
use sessiond::domain::Permission;
use tonic::Code;

const ORIGIN: &str = "https://example.test";
const DOMAIN: &str = "example.test";

async fn server(backend: Backend) -> Option<TestServer> {
    TestServer::on_with(backend, |c| {
        c.webauthn_origins = vec![ORIGIN.into(), "https://login.example.test".into()];
    })
    .await
}

/// RegisterPasskey then VerifyPasskeyRegistration for `user` over `protocol`; the passkey's id.
async fn register(
    server: &TestServer,
    protocol: Protocol,
    user: &str,
    token: &str,
    authenticator: &mut SoftAuthenticator,
) -> String {
    let started = server.call(protocol, Rpc::RegisterPasskey, json!({ "userId": user, "domain": DOMAIN }), token).await;
    let passkey_id = started.str("/passkeyId");
    let credential = authenticator.register(&started.ok()["publicKeyCredentialCreationOptions"]);
    let request = json!({
        "userId": user, "passkeyId": passkey_id, "publicKeyCredential": credential, "passkeyName": "soft key",
    });
    server.call(protocol, Rpc::VerifyPasskeyRegistration, request, token).await.ok();
    passkey_id
}

/// A session with an open passkey challenge (for `user`, or discoverable without one): its id,
/// token and the request options.
async fn challenged(
    server: &TestServer,
    protocol: Protocol,
    user: Option<&str>,
    token: &str,
) -> (String, String, Value) {
    let mut request = json!({ "challenges": { "webAuthN": {
        "domain": DOMAIN, "userVerificationRequirement": "USER_VERIFICATION_REQUIREMENT_REQUIRED",
    } } });
    if let Some(user) = user {
        request["checks"] = user_check(user);
    }
    let created = server.call(protocol, Rpc::CreateSession, request, token).await;
    let options = created.ok()["challenges"]["webAuthN"]["publicKeyCredentialRequestOptions"].clone();
    assert!(options["publicKey"]["challenge"].is_string(), "[{protocol}] {options}");
    (created.str("/sessionId"), created.str("/sessionToken"), options)
}

async fn check(
    server: &TestServer,
    protocol: Protocol,
    session: &(String, String),
    assertion: &Value,
    token: &str,
) -> Outcome {
    let request = json!({
        "sessionId": session.0, "sessionToken": session.1,
        "checks": { "webAuthN": { "credentialAssertionData": assertion } },
    });
    server.call(protocol, Rpc::SetSession, request, token).await
}

async fn registration_and_sign_in_over_every_protocol(backend: Backend) {
    let Some(mut server) = server(backend).await else { return };
    let login_ui = server.actor("login-ui", &[Permission::SessionWrite, Permission::SessionRead]).await;
    for protocol in Protocol::ALL {
        let alice = server.actor(&format!("alice-{protocol}"), &[]).await;
        let mut key = SoftAuthenticator::new(ORIGIN);

        // Registration asks for a discoverable credential with user verification, for the domain.
        let started = server
            .call(protocol, Rpc::RegisterPasskey, json!({ "userId": alice.id, "domain": DOMAIN }), &alice.token)
            .await;
        let options = &started.ok()["publicKeyCredentialCreationOptions"]["publicKey"];
        assert_eq!(options["rp"]["id"], DOMAIN, "[{protocol}] {options}");
        assert_eq!(options["authenticatorSelection"]["residentKey"], "required", "[{protocol}] {options}");
        assert_eq!(options["authenticatorSelection"]["requireResidentKey"], true, "[{protocol}] {options}");
        assert_eq!(options["authenticatorSelection"]["userVerification"], "required", "[{protocol}] {options}");
        assert_eq!(options["user"]["name"], alice.login_name, "[{protocol}] {options}");
        let credential = key.register(&started.ok()["publicKeyCredentialCreationOptions"]);
        let verify = json!({
            "userId": alice.id, "passkeyId": started.str("/passkeyId"),
            "publicKeyCredential": credential, "passkeyName": "laptop",
        });
        let verified = server.call(protocol, Rpc::VerifyPasskeyRegistration, verify, &alice.token).await;
        assert!(verified.ok()["details"]["changeDate"].is_string(), "[{protocol}] {:?}", verified.body);
        let listed = server.users.passkeys(&alice.id).await.unwrap();
        assert_eq!(listed.len(), 1, "[{protocol}]");
        assert_eq!((listed[0].id.as_str(), listed[0].name.as_str()), (started.str("/passkeyId").as_str(), "laptop"));

        // Sign-in from the passkey alone: the discoverable challenge, then the check names the user.
        let (id, token, options) = challenged(&server, protocol, None, &login_ui.token).await;
        assert_eq!(options["publicKey"]["userVerification"], "required", "[{protocol}] {options}");
        let assertion = key.assert(&options);
        let session = (id, token);
        let set = check(&server, protocol, &session, &assertion, &login_ui.token).await;
        let new_token = set.str("/sessionToken");
        let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": session.0 }), &login_ui.token).await;
        let factors = &got.ok()["session"]["factors"];
        assert_eq!(factors["user"]["id"], alice.id, "[{protocol}] {factors}");
        assert_eq!(factors["webAuthN"]["userVerified"], true, "[{protocol}] {factors}");
        assert!(factors["webAuthN"]["verifiedAt"].is_string(), "[{protocol}] {factors}");

        // The same assertion again: the challenge is used up.
        check(&server, protocol, &(session.0.clone(), new_token), &assertion, &login_ui.token)
            .await
            .expect_error(Code::FailedPrecondition, "SESSION-WebAuthNNotRequested");

        // With the user checked first, the challenge lists the user's passkeys.
        let (id, token, options) = challenged(&server, protocol, Some(&alice.id), &login_ui.token).await;
        assert_eq!(
            options["publicKey"]["allowCredentials"].as_array().map(Vec::len),
            Some(1),
            "[{protocol}] {options}"
        );
        let assertion = key.assert(&options);
        check(&server, protocol, &(id, token), &assertion, &login_ui.token).await.ok();
    }
    server.stop().await;
}
backend_test!(registration_and_sign_in_over_every_protocol);

async fn the_user_or_a_user_write_token_may_register(backend: Backend) {
    let Some(mut server) = server(backend).await else { return };
    let alice = server.actor("alice", &[]).await;
    let bob =
        server.actor("bob", &[Permission::SessionWrite, Permission::SessionRead, Permission::SessionDelete]).await;
    let admin = server.actor("admin", &[Permission::UserWrite]).await;
    for protocol in Protocol::ALL {
        let start = json!({ "userId": alice.id, "domain": DOMAIN });
        // Neither the user nor `user.write`: refused, whether or not the user exists.
        server
            .call(protocol, Rpc::RegisterPasskey, start.clone(), &bob.token)
            .await
            .expect_error(Code::PermissionDenied, "USER-PermissionDenied");
        let nobody = json!({ "userId": "nobody", "domain": DOMAIN });
        server
            .call(protocol, Rpc::RegisterPasskey, nobody.clone(), &bob.token)
            .await
            .expect_error(Code::PermissionDenied, "USER-PermissionDenied");
        server
            .call(protocol, Rpc::RegisterPasskey, nobody, &admin.token)
            .await
            .expect_error(Code::NotFound, "USER-NotFound");
        server.call(protocol, Rpc::RegisterPasskey, start.clone(), &alice.token).await.ok();
        let by_admin = server.call(protocol, Rpc::RegisterPasskey, start, &admin.token).await;
        // Finishing is guarded alike; the registration stays for whoever may finish it.
        let answer = SoftAuthenticator::new(ORIGIN).register(&by_admin.ok()["publicKeyCredentialCreationOptions"]);
        let verify = json!({
            "userId": alice.id, "passkeyId": by_admin.str("/passkeyId"),
            "publicKeyCredential": answer, "passkeyName": "key",
        });
        server
            .call(protocol, Rpc::VerifyPasskeyRegistration, verify.clone(), &bob.token)
            .await
            .expect_error(Code::PermissionDenied, "USER-PermissionDenied");
        server.call(protocol, Rpc::VerifyPasskeyRegistration, verify, &admin.token).await.ok();
        // Without a token at all.
        let outcome = server
            .call_with(protocol, Rpc::RegisterPasskey, json!({ "userId": alice.id }), &common::client::Headers::none())
            .await;
        assert_eq!(outcome.code, Code::Unauthenticated, "[{protocol}] {outcome:?}");
    }
    // A `user.write` token registers a passkey the user then signs in with.
    let mut key = SoftAuthenticator::new(ORIGIN);
    register(&server, Protocol::ConnectJson, &alice.id, &admin.token, &mut key).await;
    let (id, token, options) = challenged(&server, Protocol::ConnectJson, Some(&alice.id), &bob.token).await;
    check(&server, Protocol::ConnectJson, &(id, token), &key.assert(&options), &bob.token).await.ok();
    server.stop().await;
}
backend_test!(the_user_or_a_user_write_token_may_register);

async fn bad_expired_and_reused_registrations_are_refused(backend: Backend) {
    let Some(mut server) = server(backend).await else { return };
    let alice = server.actor("alice", &[]).await;
    let protocol = Protocol::Rest;
    let start = |domain: &str| json!({ "userId": alice.id, "domain": domain });
    let call = |rpc, request| server.call(protocol, rpc, request, &alice.token);

    call(Rpc::RegisterPasskey, start("other.test"))
        .await
        .expect_error(Code::FailedPrecondition, "WEBAUTHN-DomainNotAllowed");
    call(Rpc::RegisterPasskey, start("Not A Domain"))
        .await
        .expect_error(Code::InvalidArgument, "PASSKEY-InvalidDomain");
    let with_code = json!({ "userId": alice.id, "code": { "id": "c", "code": "x" } });
    call(Rpc::RegisterPasskey, with_code).await.expect_error(Code::Unimplemented, "PASSKEY-CodeUnsupported");
    // An empty domain is the first origin's host.
    let started = call(Rpc::RegisterPasskey, json!({ "userId": alice.id })).await;
    assert_eq!(started.ok()["publicKeyCredentialCreationOptions"]["publicKey"]["rp"]["id"], DOMAIN);

    let verify = |passkey_id: &str, credential: Value| json!({ "userId": alice.id, "passkeyId": passkey_id, "publicKeyCredential": credential, "passkeyName": "key" });

    // Garbage is refused before the registration is used: the real answer still passes after it.
    let mut key = SoftAuthenticator::new(ORIGIN);
    let started = call(Rpc::RegisterPasskey, start(DOMAIN)).await;
    let passkey_id = started.str("/passkeyId");
    let garbage = call(Rpc::VerifyPasskeyRegistration, verify(&passkey_id, json!({ "id": 1, "rawId": [] }))).await;
    garbage.expect_error(Code::InvalidArgument, "WEBAUTHN-InvalidCredential");
    assert!(
        garbage.message.contains("publicKeyCredential") || garbage.message.contains("public_key_credential"),
        "{garbage:?}"
    );
    let empty = json!({ "userId": alice.id, "passkeyId": passkey_id, "passkeyName": "key" });
    call(Rpc::VerifyPasskeyRegistration, empty).await.expect_error(Code::InvalidArgument, "WEBAUTHN-InvalidCredential");
    let credential = key.register(&started.ok()["publicKeyCredentialCreationOptions"]);
    let nameless = json!({ "userId": alice.id, "passkeyId": passkey_id, "publicKeyCredential": credential });
    call(Rpc::VerifyPasskeyRegistration, nameless).await.expect_error(Code::InvalidArgument, "PASSKEY-InvalidName");
    call(Rpc::VerifyPasskeyRegistration, verify("unknown", credential.clone()))
        .await
        .expect_error(Code::NotFound, "PASSKEY-RegistrationNotFound");
    call(Rpc::VerifyPasskeyRegistration, verify(&passkey_id, credential.clone())).await.ok();
    // Used: the same answer again finds nothing.
    call(Rpc::VerifyPasskeyRegistration, verify(&passkey_id, credential))
        .await
        .expect_error(Code::NotFound, "PASSKEY-RegistrationNotFound");

    // An answer to another registration's challenge does not verify, and uses this one up.
    let first = call(Rpc::RegisterPasskey, start(DOMAIN)).await;
    let second = call(Rpc::RegisterPasskey, start(DOMAIN)).await;
    let mut other = SoftAuthenticator::new(ORIGIN);
    let answer = other.register(&first.ok()["publicKeyCredentialCreationOptions"]);
    let mismatched = call(Rpc::VerifyPasskeyRegistration, verify(&second.str("/passkeyId"), answer.clone())).await;
    mismatched.expect_error(Code::InvalidArgument, "PASSKEY-RegistrationInvalid");
    assert!(mismatched.message.contains("another challenge"), "{mismatched:?}");
    call(Rpc::VerifyPasskeyRegistration, verify(&second.str("/passkeyId"), answer))
        .await
        .expect_error(Code::NotFound, "PASSKEY-RegistrationNotFound");

    // From an origin that is not allowed.
    let started = call(Rpc::RegisterPasskey, start(DOMAIN)).await;
    let mut elsewhere = SoftAuthenticator::new("https://evil.example.test");
    let answer = elsewhere.register(&started.ok()["publicKeyCredentialCreationOptions"]);
    let refused = call(Rpc::VerifyPasskeyRegistration, verify(&started.str("/passkeyId"), answer)).await;
    refused.expect_error(Code::InvalidArgument, "PASSKEY-RegistrationInvalid");
    assert!(refused.message.contains("origin"), "{refused:?}");
    server.stop().await;

    // Expired: a server whose registrations last no time at all.
    let Some(mut server) = TestServer::on_with(backend, |c| {
        c.webauthn_origins = vec![ORIGIN.into()];
        c.webauthn_ceremony_lifetime = Duration::ZERO;
    })
    .await
    else {
        return;
    };
    let alice = server.actor("alice", &[]).await;
    let started = server.call(protocol, Rpc::RegisterPasskey, json!({ "userId": alice.id }), &alice.token).await;
    let answer = SoftAuthenticator::new(ORIGIN).register(&started.ok()["publicKeyCredentialCreationOptions"]);
    let request = json!({
        "userId": alice.id, "passkeyId": started.str("/passkeyId"), "publicKeyCredential": answer, "passkeyName": "k",
    });
    server
        .call(protocol, Rpc::VerifyPasskeyRegistration, request, &alice.token)
        .await
        .expect_error(Code::FailedPrecondition, "PASSKEY-RegistrationExpired");
    server.stop().await;

    // Without any origin, passkeys are not configured.
    let Some(mut server) = TestServer::on(backend).await else { return };
    let alice = server.actor("alice", &[]).await;
    server
        .call(protocol, Rpc::RegisterPasskey, json!({ "userId": alice.id }), &alice.token)
        .await
        .expect_error(Code::FailedPrecondition, "WEBAUTHN-NotConfigured");
    server.stop().await;
}
backend_test!(bad_expired_and_reused_registrations_are_refused);

async fn bad_and_replayed_assertions_are_refused(backend: Backend) {
    let Some(mut server) = server(backend).await else { return };
    let ui = server.actor("login-ui", &[Permission::SessionWrite, Permission::SessionRead]).await;
    let alice = server.actor("alice", &[]).await;
    let bob = server.actor("bob", &[]).await;
    let mut alice_key = SoftAuthenticator::new(ORIGIN);
    let mut bob_key = SoftAuthenticator::new(ORIGIN);
    for (user, key) in [(&alice, &mut alice_key), (&bob, &mut bob_key)] {
        register(&server, Protocol::ConnectJson, &user.id, &user.token, key).await;
    }
    let protocol = Protocol::GrpcWeb;

    // No challenge open; garbage; a check without data.
    let plain = server.create(protocol, &alice.id, &ui.token).await;
    let session = (plain.id.clone(), plain.token.clone());
    let (_, _, options) = challenged(&server, protocol, Some(&alice.id), &ui.token).await;
    check(&server, protocol, &session, &alice_key.assert(&options), &ui.token)
        .await
        .expect_error(Code::FailedPrecondition, "SESSION-WebAuthNNotRequested");
    let (id, token, options) = challenged(&server, protocol, Some(&alice.id), &ui.token).await;
    let session = (id, token);
    check(&server, protocol, &session, &json!({ "id": true }), &ui.token)
        .await
        .expect_error(Code::InvalidArgument, "WEBAUTHN-InvalidCredential");
    let empty = json!({ "sessionId": session.0, "sessionToken": session.1, "checks": { "webAuthN": {} } });
    server
        .call(protocol, Rpc::SetSession, empty, &ui.token)
        .await
        .expect_error(Code::InvalidArgument, "SESSION-InvalidCheck");

    // Bob's passkey on Alice's session.
    let (_, _, discoverable) = challenged(&server, protocol, None, &ui.token).await;
    let refused = check(&server, protocol, &session, &bob_key.assert(&discoverable), &ui.token).await;
    refused.expect_error(Code::InvalidArgument, "SESSION-UserMismatch");
    // Signed for another RP ID (the origin is on both).
    let elsewhere = alice_key.used_from("https://login.example.test").assert_for_rp(&options, "login.example.test");
    let refused = check(&server, protocol, &session, &elsewhere, &ui.token).await;
    refused.expect_error(Code::InvalidArgument, "SESSION-WebAuthNInvalid");
    assert!(refused.message.contains("RP ID"), "{refused:?}");
    alice_key.used_from(ORIGIN);
    // From an origin that is not allowed.
    let evil = alice_key.used_from("https://evil.example.test").assert(&options);
    let refused = check(&server, protocol, &session, &evil, &ui.token).await;
    refused.expect_error(Code::InvalidArgument, "SESSION-WebAuthNInvalid");
    assert!(refused.message.contains("origin"), "{refused:?}");
    alice_key.used_from(ORIGIN);
    // A refused assertion left the challenge open: the right one passes now. Failures counted on
    // no lockout either (more than either limit failed above and below).
    let good = alice_key.assert(&options);
    let passed = check(&server, protocol, &session, &good, &ui.token).await;
    let rotated = (session.0.clone(), passed.str("/sessionToken"));

    // Replays: once used up, the same assertion finds no challenge; against a new challenge it
    // answers another one.
    check(&server, protocol, &rotated, &good, &ui.token)
        .await
        .expect_error(Code::FailedPrecondition, "SESSION-WebAuthNNotRequested");
    let again = json!({ "sessionId": rotated.0, "sessionToken": rotated.1, "challenges": { "webAuthN": { "domain": DOMAIN } } });
    let again = server.call(protocol, Rpc::SetSession, again, &ui.token).await;
    let rotated = (rotated.0.clone(), again.str("/sessionToken"));
    let replay = check(&server, protocol, &rotated, &good, &ui.token).await;
    replay.expect_error(Code::InvalidArgument, "SESSION-WebAuthNInvalid");
    assert!(replay.message.contains("another challenge"), "{replay:?}");

    // The signature counter only moves forward: an older assertion after a newer one is refused.
    let (first_id, first_token, first_options) = challenged(&server, protocol, None, &ui.token).await;
    let (second_id, second_token, second_options) = challenged(&server, protocol, None, &ui.token).await;
    let older = alice_key.assert(&first_options);
    let newer = alice_key.assert(&second_options);
    check(&server, protocol, &(second_id, second_token), &newer, &ui.token).await.ok();
    let stale = check(&server, protocol, &(first_id, first_token), &older, &ui.token).await;
    stale.expect_error(Code::InvalidArgument, "SESSION-WebAuthNInvalid");
    assert!(stale.message.contains("counter"), "{stale:?}");

    // One assertion sent twice at once passes once.
    let (id, token, options) = challenged(&server, protocol, None, &ui.token).await;
    let assertion = alice_key.assert(&options);
    let session = (id, token);
    let (a, b) = tokio::join!(
        check(&server, Protocol::ConnectJson, &session, &assertion, &ui.token),
        check(&server, Protocol::Grpc, &session, &assertion, &ui.token),
    );
    let passed = [&a, &b].iter().filter(|o| o.code == Code::Ok).count();
    assert_eq!(passed, 1, "exactly one of two concurrent checks passes: {a:?} {b:?}");
    let loser = if a.code == Code::Ok { &b } else { &a };
    // Refused however the two met: a lost write (ABORTED), the counter already moved
    // (INVALID_ARGUMENT), or, had the winner committed first, the token it rotated away.
    assert!(
        matches!(loser.code, Code::Aborted | Code::InvalidArgument | Code::PermissionDenied),
        "the other is refused: {loser:?}"
    );

    // A disabled user's passkey signs nobody in.
    let (id, token, options) = challenged(&server, protocol, None, &ui.token).await;
    server.disable(&bob.id).await;
    check(&server, protocol, &(id, token), &bob_key.assert(&options), &ui.token)
        .await
        .expect_error(Code::FailedPrecondition, "USER-Inactive");

    // A user without a passkey for the domain gets no challenge.
    let carol = server.actor("carol", &[]).await;
    let request = json!({ "checks": user_check(&carol.id), "challenges": { "webAuthN": { "domain": DOMAIN } } });
    server
        .call(protocol, Rpc::CreateSession, request, &ui.token)
        .await
        .expect_error(Code::FailedPrecondition, "USER-NoPasskey");
    // A malformed domain is the request's own fault, refused before the user is looked up.
    let request = json!({ "checks": user_check("nobody"), "challenges": { "webAuthN": { "domain": "Not A Domain" } } });
    server
        .call(protocol, Rpc::CreateSession, request, &ui.token)
        .await
        .expect_error(Code::InvalidArgument, "SESSION-InvalidChallenge");
    server.stop().await;
}
backend_test!(bad_and_replayed_assertions_are_refused);

async fn removed_passkeys_sign_nobody_in(backend: Backend) {
    let Some(mut server) = server(backend).await else { return };
    let ui = server.actor("login-ui", &[Permission::SessionWrite]).await;
    let alice: Actor = server.actor("alice", &[]).await;
    let mut key = SoftAuthenticator::new(ORIGIN);
    let passkey_id = register(&server, Protocol::Grpc, &alice.id, &alice.token, &mut key).await;
    let (id, token, options) = challenged(&server, Protocol::Grpc, None, &ui.token).await;
    // The operator lists and removes it with the CLI.
    let database = server.config.database.clone();
    let listed = cli(&database, &["users", "passkeys", &alice.id]);
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8(listed.stdout).unwrap();
    let columns: Vec<&str> = listed.trim().split('\t').collect();
    assert_eq!(columns[..3], [passkey_id.as_str(), "soft key", DOMAIN], "{listed}");
    let removed = cli(&database, &["users", "remove-passkey", &alice.id, &passkey_id]);
    assert!(removed.status.success(), "{removed:?}");
    assert!(server.users.passkeys(&alice.id).await.unwrap().is_empty());
    let again = cli(&database, &["users", "remove-passkey", &alice.id, &passkey_id]);
    assert!(
        !again.status.success() && String::from_utf8_lossy(&again.stderr).contains("PASSKEY-NotFound"),
        "{again:?}"
    );
    check(&server, Protocol::Grpc, &(id, token), &key.assert(&options), &ui.token)
        .await
        .expect_error(Code::InvalidArgument, "SESSION-WebAuthNInvalid");
    server.stop().await;
}
backend_test!(removed_passkeys_sign_nobody_in);

/// The admin CLI on `database`, run to completion.
fn cli(database: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["--database", database])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("sessiond runs")
}

/// The user service as ZITADEL publishes it: names, field numbers, types and HTTP bindings, so that
/// `@zitadel/client`'s generated user service works unchanged.
#[test]
fn the_user_service_has_zitadels_names_numbers_and_bindings() {
    use prost_reflect::Kind;
    let pool = sessiond::proto::pool();
    let service = pool.get_service_by_name("zitadel.user.v2.UserService").expect("the user service");
    let http = pool.get_extension_by_name("google.api.http").expect("google.api.http");
    for (rpc, binding) in [
        ("RegisterPasskey", "/v2/users/{user_id}/passkeys"),
        ("VerifyPasskeyRegistration", "/v2/users/{user_id}/passkeys/{passkey_id}"),
    ] {
        let method = service.methods().find(|m| m.name() == rpc).unwrap_or_else(|| panic!("no {rpc}"));
        assert_eq!(method.input().full_name(), format!("zitadel.user.v2.{rpc}Request"));
        assert_eq!(method.output().full_name(), format!("zitadel.user.v2.{rpc}Response"));
        let rule = method.options().get_extension(&http).as_message().unwrap().clone();
        let rule = rule.transcode_to::<sessiond::proto::google::api::HttpRule>().unwrap();
        assert_eq!(rule.pattern, Some(sessiond::proto::google::api::http_rule::Pattern::Post(binding.into())), "{rpc}");
        assert_eq!(rule.body, "*", "{rpc}");
    }
    let kind = |kind: &Kind| match kind {
        Kind::String => "string".to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
        Kind::Message(m) => m.full_name().to_owned(),
        other => format!("{other:?}"),
    };
    for (message, fields) in [
        (
            "RegisterPasskeyRequest",
            vec![
                (1, "user_id", "string"),
                (2, "code", "zitadel.user.v2.PasskeyRegistrationCode"),
                (3, "authenticator", "zitadel.user.v2.PasskeyAuthenticator"),
                (4, "domain", "string"),
            ],
        ),
        (
            "RegisterPasskeyResponse",
            vec![
                (1, "details", "zitadel.object.v2.Details"),
                (2, "passkey_id", "string"),
                (3, "public_key_credential_creation_options", "google.protobuf.Struct"),
            ],
        ),
        (
            "VerifyPasskeyRegistrationRequest",
            vec![
                (1, "user_id", "string"),
                (2, "passkey_id", "string"),
                (3, "public_key_credential", "google.protobuf.Struct"),
                (4, "passkey_name", "string"),
            ],
        ),
        ("VerifyPasskeyRegistrationResponse", vec![(1, "details", "zitadel.object.v2.Details")]),
        ("PasskeyRegistrationCode", vec![(1, "id", "string"), (2, "code", "string")]),
    ] {
        let descriptor = pool.get_message_by_name(&format!("zitadel.user.v2.{message}")).expect(message);
        let served: Vec<(u32, String, String)> =
            descriptor.fields().map(|f| (f.number(), f.name().to_owned(), kind(&f.kind()))).collect();
        let expected: Vec<(u32, String, String)> =
            fields.into_iter().map(|(n, name, kind)| (n, name.to_owned(), kind.to_owned())).collect();
        assert_eq!(served, expected, "{message}");
    }
    let code = descriptor_field(pool, "RegisterPasskeyRequest", "code");
    assert!(code.supports_presence(), "`code` is `optional`");
    let authenticator = pool.get_enum_by_name("zitadel.user.v2.PasskeyAuthenticator").unwrap();
    let values: Vec<(String, i32)> = authenticator.values().map(|v| (v.name().to_owned(), v.number())).collect();
    assert_eq!(
        values,
        [
            ("PASSKEY_AUTHENTICATOR_UNSPECIFIED".to_owned(), 0),
            ("PASSKEY_AUTHENTICATOR_PLATFORM".to_owned(), 1),
            ("PASSKEY_AUTHENTICATOR_CROSS_PLATFORM".to_owned(), 2),
        ]
    );
}

fn descriptor_field(
    pool: &prost_reflect::DescriptorPool,
    message: &str,
    field: &str,
) -> prost_reflect::FieldDescriptor {
    pool.get_message_by_name(&format!("zitadel.user.v2.{message}")).unwrap().get_field_by_name(field).unwrap()
}

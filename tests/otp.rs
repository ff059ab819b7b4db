//! One-time codes by SMS and email, over every wire format and on both stores: codes returned to
//! the caller and checked once, wrong, expired and reused codes refused, the one-time-code
//! lockout, and delivery through a webhook the test runs (signature checked, a failing receiver
//! retried).

#[macro_use]
mod common;

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use common::{Backend, Protocol, Rpc, TestServer};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sessiond::{
    domain::{Permission, otp::OtpMethod},
    notify,
};
use tokio::sync::Notify;
use tonic::Code;

const ALL_PERMISSIONS: [Permission; 3] = [Permission::SessionRead, Permission::SessionWrite, Permission::SessionDelete];

/// A user with a phone and an email, both methods enabled.
async fn otp_user(server: &TestServer, login_name: &str) -> String {
    let user = server.user(login_name).await;
    server.users.set_contact(&user, OtpMethod::Sms, Some("+41790000000".into())).await.unwrap();
    server.users.set_contact(&user, OtpMethod::Email, Some(format!("{user}@example.com"))).await.unwrap();
    server.users.enable_otp(&user, OtpMethod::Sms).await.unwrap();
    server.users.enable_otp(&user, OtpMethod::Email).await.unwrap();
    user
}

fn create_with_challenge(user: &str, challenges: Value) -> Value {
    json!({ "checks": { "user": { "userId": user } }, "challenges": challenges })
}

fn check(session_id: &str, method: &str, code: &str) -> Value {
    json!({ "sessionId": session_id, "checks": { method: { "code": code } } })
}

fn returned_code(created: &common::Outcome, method: &str) -> String {
    let code = created.ok()["challenges"][method].as_str().unwrap_or_else(|| panic!("no {method} code: {created:?}"));
    assert!(code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    code.to_owned()
}

fn other_code(code: &str) -> String {
    if code == "00000000" { "00000001".into() } else { "00000000".into() }
}

backend_test!(returned_codes_pass_once_over_every_protocol);
async fn returned_codes_pass_once_over_every_protocol(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    for protocol in Protocol::ALL {
        let user = otp_user(&server, &format!("otp-{protocol}")).await;
        for (method, challenge) in [
            ("otpSms", json!({ "otpSms": { "returnCode": true } })),
            ("otpEmail", json!({ "otpEmail": { "returnCode": {} } })),
        ] {
            let created =
                server.call(protocol, Rpc::CreateSession, create_with_challenge(&user, challenge), &ui.token).await;
            let code = returned_code(&created, method);
            let id = created.str("/sessionId");

            let wrong = server.call(protocol, Rpc::SetSession, check(&id, method, &other_code(&code)), &ui.token).await;
            wrong.expect_error(Code::InvalidArgument, "SESSION-OtpInvalid");
            let right = server.call(protocol, Rpc::SetSession, check(&id, method, &code), &ui.token).await;
            assert_eq!(right.ok()["details"]["sequence"], "2", "[{protocol}] {right:?}");
            assert!(!right.str("/sessionToken").is_empty(), "a passed check rotates the token");

            let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": id }), &ui.token).await;
            assert!(got.ok()["session"]["factors"][method]["verifiedAt"].is_string(), "[{protocol}] {got:?}");
            // The code is used up: the same code again finds nothing open.
            let reused = server.call(protocol, Rpc::SetSession, check(&id, method, &code), &ui.token).await;
            reused.expect_error(Code::FailedPrecondition, "SESSION-OtpNotRequested");
        }
        // SetSession issues a code too, replacing the open one; only the newest passes.
        let created = server
            .call(
                protocol,
                Rpc::CreateSession,
                create_with_challenge(&user, json!({ "otpSms": { "returnCode": true } })),
                &ui.token,
            )
            .await;
        let first = returned_code(&created, "otpSms");
        let id = created.str("/sessionId");
        let again = server
            .call(
                protocol,
                Rpc::SetSession,
                json!({ "sessionId": id, "challenges": { "otpSms": { "returnCode": true } } }),
                &ui.token,
            )
            .await;
        let second = returned_code(&again, "otpSms");
        if first != second {
            let stale = server.call(protocol, Rpc::SetSession, check(&id, "otpSms", &first), &ui.token).await;
            stale.expect_error(Code::InvalidArgument, "SESSION-OtpInvalid");
        }
        server.call(protocol, Rpc::SetSession, check(&id, "otpSms", &second), &ui.token).await.ok();
        server.users.unlock(&user).await.unwrap();
    }
}

backend_test!(codes_need_an_enabled_method_a_user_and_a_delivery);
async fn codes_need_an_enabled_method_a_user_and_a_delivery(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    let plain = server.user("plain").await;
    let enabled = otp_user(&server, "enabled").await;
    for protocol in Protocol::ALL {
        let sms = json!({ "otpSms": { "returnCode": true } });
        let outcome =
            server.call(protocol, Rpc::CreateSession, create_with_challenge(&plain, sms.clone()), &ui.token).await;
        outcome.expect_error(Code::FailedPrecondition, "USER-OtpSmsNotEnabled");
        let anonymous = server.call(protocol, Rpc::CreateSession, json!({ "challenges": sms }), &ui.token).await;
        anonymous.expect_error(Code::FailedPrecondition, "SESSION-UserMissing");
        // Sending needs a delivery (`--notify-webhook`); this server has none.
        let send = json!({ "otpEmail": { "sendCode": {} } });
        let outcome = server.call(protocol, Rpc::CreateSession, create_with_challenge(&enabled, send), &ui.token).await;
        outcome.expect_error(Code::FailedPrecondition, "OTP-NoDelivery");
        // A check with nothing issued is refused without counting.
        let created = server.create(protocol, &enabled, &ui.token).await;
        let outcome =
            server.call(protocol, Rpc::SetSession, check(&created.id, "otpEmail", "12345678"), &ui.token).await;
        outcome.expect_error(Code::FailedPrecondition, "SESSION-OtpNotRequested");
    }
    assert_eq!(server.users.user(&enabled).await.unwrap().otp_failed_attempts, 0);
    // Enabling a method needs somewhere to send its codes.
    let error = server.users.enable_otp(&plain, OtpMethod::Sms).await.unwrap_err();
    assert_eq!(error.id, "USER-NoPhone");
    let error = server.users.set_contact(&plain, OtpMethod::Sms, Some("0790000000".into())).await.unwrap_err();
    assert_eq!(error.id, "USER-InvalidPhone");
}

backend_test!(expired_codes_are_refused);
async fn expired_codes_are_refused(backend: Backend) {
    let Some(server) = TestServer::on_with(backend, |c| c.otp_code_lifetime = Duration::from_micros(1)).await else {
        return;
    };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    let user = otp_user(&server, "late").await;
    for protocol in Protocol::ALL {
        let created = server
            .call(
                protocol,
                Rpc::CreateSession,
                create_with_challenge(&user, json!({ "otpSms": { "returnCode": true } })),
                &ui.token,
            )
            .await;
        let code = returned_code(&created, "otpSms");
        let late =
            server.call(protocol, Rpc::SetSession, check(&created.str("/sessionId"), "otpSms", &code), &ui.token).await;
        late.expect_error(Code::FailedPrecondition, "SESSION-OtpExpired");
    }
}

backend_test!(wrong_codes_lock_on_the_one_time_code_counter);
async fn wrong_codes_lock_on_the_one_time_code_counter(backend: Backend) {
    const MAX: i32 = 3;
    let Some(server) = TestServer::on_with(backend, |c| c.max_failed_otp_attempts = MAX).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    for protocol in Protocol::ALL {
        let user = otp_user(&server, &format!("guessed-{protocol}")).await;
        let created = server
            .call(
                protocol,
                Rpc::CreateSession,
                create_with_challenge(&user, json!({ "otpEmail": { "returnCode": {} } })),
                &ui.token,
            )
            .await;
        let code = returned_code(&created, "otpEmail");
        let id = created.str("/sessionId");
        for _ in 0..MAX {
            let wrong =
                server.call(protocol, Rpc::SetSession, check(&id, "otpEmail", &other_code(&code)), &ui.token).await;
            wrong.expect_error(Code::InvalidArgument, "SESSION-OtpInvalid");
        }
        let locked = server.call(protocol, Rpc::SetSession, check(&id, "otpEmail", &code), &ui.token).await;
        locked.expect_error(Code::FailedPrecondition, "USER-Locked");
        assert_eq!(locked.failed_attempts, Some(MAX), "{locked:?}");
        server.users.unlock(&user).await.unwrap();
        let right = server.call(protocol, Rpc::SetSession, check(&id, "otpEmail", &code), &ui.token).await;
        right.ok();
    }
}

/// What the test's webhook receiver saw: each request's headers and body.
#[derive(Default)]
struct Received {
    requests: Mutex<Vec<(http::HeaderMap, Bytes)>>,
    delivered: Notify,
}

/// A receiver that answers 503 to the first `failures` requests, then 200.
async fn receiver(failures: usize) -> (String, Arc<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/otp", listener.local_addr().unwrap());
    let received = Arc::new(Received::default());
    let seen = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let seen = Arc::clone(&seen);
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let count = {
                            let mut requests = seen.requests.lock().unwrap();
                            requests.push((parts.headers, body));
                            requests.len()
                        };
                        let status = if count <= failures { 503 } else { 200 };
                        if status == 200 {
                            seen.delivered.notify_one();
                        }
                        Ok::<_, Infallible>(Response::builder().status(status).body(Full::new(Bytes::new())).unwrap())
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (url, received)
}

backend_test!(sent_codes_reach_the_webhook_signed_and_retried);
async fn sent_codes_reach_the_webhook_signed_and_retried(backend: Backend) {
    let (url, received) = receiver(2).await;
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("webhook.key");
    let key = "a-webhook-signing-key-of-at-least-32-characters";
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let Some(server) = TestServer::on_with(backend, |c| {
        c.notify_webhook = Some(url);
        c.notify_webhook_secret_file = Some(key_file);
    })
    .await
    else {
        return;
    };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    let user = otp_user(&server, "hooked").await;

    let send = json!({ "otpEmail": { "sendCode": { "urlTemplate": "https://login.example.com/otp?code={{.Code}}" } } });
    let created =
        server.call(Protocol::ConnectJson, Rpc::CreateSession, create_with_challenge(&user, send), &ui.token).await;
    assert!(created.ok()["challenges"]["otpEmail"].is_null(), "a sent code is not returned: {created:?}");
    tokio::time::timeout(Duration::from_secs(20), received.delivered.notified()).await.expect("the code is delivered");

    let requests = received.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3, "two refusals, then the delivery");
    let delivery = requests[0].0[notify::DELIVERY_HEADER].clone();
    for (headers, body) in &requests {
        let timestamp: i64 = headers[notify::TIMESTAMP_HEADER].to_str().unwrap().parse().unwrap();
        let signature = headers[notify::SIGNATURE_HEADER].to_str().unwrap();
        assert_eq!(signature, notify::signature(key.as_bytes(), timestamp, body), "the receiver can verify it");
        assert_eq!(headers[notify::DELIVERY_HEADER], delivery, "retries carry the same delivery id");
    }
    let payload: Value = serde_json::from_slice(&requests[2].1).unwrap();
    assert_eq!(payload["type"], "otp_email");
    assert_eq!(payload["userId"], user.as_str());
    assert_eq!(payload["recipient"], format!("{user}@example.com"));
    assert_eq!(payload["urlTemplate"], "https://login.example.com/otp?code={{.Code}}");
    assert!(payload["expiresAt"].as_str().unwrap().ends_with('Z'), "{payload}");
    let code = payload["code"].as_str().unwrap();

    // The delivered code passes its check, once.
    let id = created.str("/sessionId");
    server.call(Protocol::Rest, Rpc::SetSession, check(&id, "otpEmail", code), &ui.token).await.ok();
    let reused = server.call(Protocol::Grpc, Rpc::SetSession, check(&id, "otpEmail", code), &ui.token).await;
    reused.expect_error(Code::FailedPrecondition, "SESSION-OtpNotRequested");
}

backend_test!(a_code_used_by_many_at_once_passes_once);
async fn a_code_used_by_many_at_once_passes_once(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    let user = otp_user(&server, "raced").await;
    let created = server
        .call(
            Protocol::Grpc,
            Rpc::CreateSession,
            create_with_challenge(&user, json!({ "otpSms": { "returnCode": true } })),
            &ui.token,
        )
        .await;
    let code = returned_code(&created, "otpSms");
    let id = created.str("/sessionId");
    let uses =
        (0..20).map(|i| server.call(Protocol::ALL[i % 5], Rpc::SetSession, check(&id, "otpSms", &code), &ui.token));
    let outcomes = futures_util::future::join_all(uses).await;
    let passed = outcomes.iter().filter(|o| o.code == Code::Ok).count();
    assert_eq!(passed, 1, "{outcomes:?}");
    for outcome in outcomes.iter().filter(|o| o.code != Code::Ok) {
        assert!(
            matches!(
                (outcome.code, outcome.id.as_str()),
                (Code::Aborted, "SESSION-Conflict")
                    | (Code::FailedPrecondition, "SESSION-OtpNotRequested" | "USER-Locked")
            ),
            "{outcome:?}"
        );
    }
    let read = server.users.user(&user).await.unwrap();
    assert_eq!((read.otp_failed_attempts, read.otp_locked), (0, false), "right codes leave no lock behind");
    let got = server.call(Protocol::Rest, Rpc::GetSession, json!({ "sessionId": id }), &ui.token).await;
    assert_eq!(got.ok()["session"]["sequence"], "2", "one change recorded: {got:?}");
}

backend_test!(over_long_codes_and_templates_are_refused);
async fn over_long_codes_and_templates_are_refused(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    let user = otp_user(&server, "bounded").await;
    let session = server.create(Protocol::Grpc, &user, &ui.token).await;
    for protocol in Protocol::ALL {
        let long_code =
            server.call(protocol, Rpc::SetSession, check(&session.id, "otpSms", &"1".repeat(17)), &ui.token).await;
        long_code.expect_error(Code::InvalidArgument, "SESSION-InvalidCheck");
        let template = |len: usize| json!({ "otpEmail": { "sendCode": { "urlTemplate": "x".repeat(len) } } });
        let long =
            server.call(protocol, Rpc::CreateSession, create_with_challenge(&user, template(2049)), &ui.token).await;
        long.expect_error(Code::InvalidArgument, "SESSION-InvalidChallenge");
        // At the bound the request gets as far as the delivery, which this server lacks.
        let at_bound =
            server.call(protocol, Rpc::CreateSession, create_with_challenge(&user, template(2048)), &ui.token).await;
        at_bound.expect_error(Code::FailedPrecondition, "OTP-NoDelivery");
    }
    assert_eq!(server.users.user(&user).await.unwrap().otp_failed_attempts, 0, "nothing counted");
}

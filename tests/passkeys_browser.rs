//! Passkeys in a real browser: Debian's Chromium, headless, driven over the DevTools protocol
//! with a virtual authenticator (CTAP2, internal, resident keys, user verification). A page the
//! test serves registers a passkey through RegisterPasskey / VerifyPasskeyRegistration and signs
//! in with it through CreateSession's challenge and SetSession's check, over Connect JSON; then a
//! replayed assertion and an assertion for another RP ID are refused.
//!
//! Chromium is `SESSIOND_TEST_BROWSER` (which `.ci/run` sets: then a missing browser fails the
//! test) or `/usr/bin/chromium`; with neither the test passes without running, saying why.

#[path = "browser/cdp.rs"]
mod cdp;
mod common;

use std::path::PathBuf;

use common::{Backend, TestServer};
use serde_json::{Value, json};
use sessiond::domain::Permission;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

const PAGE: &str = include_str!("fixtures/passkeys.html");

/// The Chromium to drive, or `None` (said why) when the test should not run here.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SESSIOND_TEST_BROWSER") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "SESSIOND_TEST_BROWSER={} is not a file: install chromium", path.display());
        return Some(path);
    }
    let default = PathBuf::from("/usr/bin/chromium");
    if default.is_file() {
        return Some(default);
    }
    eprintln!("skipping the browser test: no /usr/bin/chromium, and SESSIOND_TEST_BROWSER is unset");
    None
}

/// Serves the page on 127.0.0.1 (any path); its port.
async fn serve_page() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the page server");
    let port = listener.local_addr().expect("page address").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

/// A JavaScript call of the page's `function` with JSON arguments.
fn call(function: &str, args: &[Value]) -> String {
    let args: Vec<String> = args.iter().map(Value::to_string).collect();
    format!("{function}({})", args.join(", "))
}

async fn registration_and_sign_in_in_chromium(backend: Backend) {
    let Some(chromium) = chromium() else { return };
    let page_port = serve_page().await;
    // `sub.localhost` is a secure context that Chromium resolves to loopback; the page there may
    // use the RP ID `sub.localhost` and the server also accepts it for the RP ID `localhost`.
    let origin = format!("http://sub.localhost:{page_port}");
    let Some(mut server) = TestServer::on_with(backend, |c| c.webauthn_origins = vec![origin.clone()]).await else {
        return;
    };
    let alice = server.actor("alice", &[]).await;
    let ui = server.actor("login-ui", &[Permission::SessionWrite, Permission::SessionRead]).await;

    let mut browser = cdp::Browser::launch(&chromium).await;
    browser.command("WebAuthn.enable", json!({ "enableUI": false })).await;
    let options = json!({ "options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": true, "hasUserVerification": true,
        "isUserVerified": true, "automaticPresenceSimulation": true,
    } });
    let authenticator = browser.command("WebAuthn.addVirtualAuthenticator", options).await["authenticatorId"].clone();
    browser.open(&format!("{origin}/?api={}", server.url(""))).await;

    // Registration: a resident key, with user verification.
    let registered = browser
        .evaluate(&call("registerPasskey", &[json!(alice.id), json!(alice.token), json!("sub.localhost")]))
        .await;
    assert_eq!(registered["status"], 200, "{registered}");
    assert_eq!(registered["options"]["authenticatorSelection"]["residentKey"], "required", "{registered}");
    assert_eq!(registered["residentKey"], true, "the browser made a discoverable credential: {registered}");
    let credentials = browser.command("WebAuthn.getCredentials", json!({ "authenticatorId": authenticator })).await;
    let credentials = credentials["credentials"].as_array().expect("credentials");
    assert_eq!(credentials.len(), 1, "{credentials:?}");
    assert_eq!(credentials[0]["isResidentCredential"], true, "{credentials:?}");
    assert_eq!(credentials[0]["rpId"], "sub.localhost", "{credentials:?}");
    let stored = server.users.passkeys(&alice.id).await.expect("the user's passkeys");
    assert_eq!((stored.len(), stored[0].name.as_str()), (1, "chromium"));

    // Sign-in from the passkey alone: CreateSession's challenge, SetSession's check.
    let challenge = json!({ "challenges": { "webAuthN": {
        "domain": "sub.localhost", "userVerificationRequirement": "USER_VERIFICATION_REQUIREMENT_REQUIRED",
    } } });
    let created = browser.evaluate(&call("session", &[json!("CreateSession"), challenge, json!(ui.token)])).await;
    assert_eq!(created["status"], 200, "{created}");
    let session_id = created["body"]["sessionId"].clone();
    let request_options = created["body"]["challenges"]["webAuthN"]["publicKeyCredentialRequestOptions"].clone();
    let assertion = browser.evaluate(&call("sign", &[request_options, Value::Null])).await;
    assert!(assertion["response"]["userHandle"].is_string(), "a resident key names its user: {assertion}");
    let checked = browser
        .evaluate(&call("session", &[json!("SetSession"), check(&session_id, &created, &assertion), json!(ui.token)]))
        .await;
    assert_eq!(checked["status"], 200, "{checked}");
    let got = browser
        .evaluate(&call("session", &[json!("GetSession"), json!({ "sessionId": session_id }), json!(ui.token)]))
        .await;
    let factors = &got["body"]["session"]["factors"];
    assert_eq!(factors["user"]["id"], json!(alice.id), "{got}");
    assert_eq!(factors["webAuthN"]["userVerified"], true, "{got}");

    // A replayed assertion: a new challenge on the same session, answered with the old one.
    let again = json!({
        "sessionId": session_id, "sessionToken": checked["body"]["sessionToken"],
        "challenges": { "webAuthN": { "domain": "sub.localhost" } },
    });
    let again = browser.evaluate(&call("session", &[json!("SetSession"), again, json!(ui.token)])).await;
    assert_eq!(again["status"], 200, "{again}");
    let replayed = browser
        .evaluate(&call("session", &[json!("SetSession"), check(&session_id, &again, &assertion), json!(ui.token)]))
        .await;
    expect_refused(&replayed, "another challenge");

    // An assertion for another RP ID: the challenge is for `localhost`, the browser signs for
    // `sub.localhost` (its origin is allowed for both).
    let challenge = json!({ "challenges": { "webAuthN": { "domain": "localhost" } } });
    let created = browser.evaluate(&call("session", &[json!("CreateSession"), challenge, json!(ui.token)])).await;
    assert_eq!(created["status"], 200, "{created}");
    let request_options = created["body"]["challenges"]["webAuthN"]["publicKeyCredentialRequestOptions"].clone();
    assert_eq!(request_options["publicKey"]["rpId"], "localhost", "{request_options}");
    let assertion = browser.evaluate(&call("sign", &[request_options, json!("sub.localhost")])).await;
    let session_id = created["body"]["sessionId"].clone();
    let refused = browser
        .evaluate(&call("session", &[json!("SetSession"), check(&session_id, &created, &assertion), json!(ui.token)]))
        .await;
    expect_refused(&refused, "another RP ID");
    server.stop().await;
}
backend_test!(registration_and_sign_in_in_chromium);

/// SetSession's check of `assertion` with the token of the answer `previous`.
fn check(session_id: &Value, previous: &Value, assertion: &Value) -> Value {
    json!({
        "sessionId": session_id, "sessionToken": previous["body"]["sessionToken"],
        "checks": { "webAuthN": { "credentialAssertionData": assertion } },
    })
}

/// A Connect error: 400 `invalid_argument`, the assertion refused for `why`.
fn expect_refused(answer: &Value, why: &str) {
    assert_eq!(answer["status"], 400, "{answer}");
    assert_eq!(answer["body"]["code"], "invalid_argument", "{answer}");
    let message = answer["body"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(why) && message.ends_with("(SESSION-WebAuthNInvalid)"), "{answer}");
}

//! JWT access tokens from an OIDC provider (`--oidc-issuer`): a real sessiond against the tests'
//! own issuer (discovery and JWKS on 127.0.0.1, keys generated here). Valid RS256, ES256 and EdDSA
//! tokens authorize calls beside API tokens; scopes decide permissions; every token that does not
//! verify is UNAUTHENTICATED; keys rotate with one rate-limited fetch; an issuer that is away
//! never turns into a 5xx or a hang.

#[macro_use]
mod common;
#[path = "oidc/issuer.rs"]
mod issuer;

use std::{
    process::Command,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sessiond::{
    domain::Permission::{SessionRead, SessionWrite},
    oidc::OidcConfig,
};
use tonic::Code;

use common::{Backend, Outcome, Protocol, Rpc, TestServer};
use issuer::{Issuer, Mode, SigningKey};

/// The audience sessiond is configured with (beside a second one).
const AUDIENCE: &str = "sessiond-api";
const INVALID: &str = "AUTH-InvalidJwt";

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The claims of a token for `sub` with `scope`, valid for five minutes.
fn claims(issuer: &Issuer, sub: &str, scope: &str) -> Value {
    json!({"iss": issuer.url, "aud": [AUDIENCE, "account"], "sub": sub, "scope": scope, "iat": now(), "exp": now() + 300})
}

/// A server that trusts `issuer` for `AUDIENCE`, with `configure` applied to the OIDC settings.
async fn server_trusting(
    backend: Backend,
    issuer: &Issuer,
    configure: impl FnOnce(&mut OidcConfig),
) -> Option<TestServer> {
    TestServer::on_with(backend, |config| {
        let mut oidc = OidcConfig::new(issuer.url.clone(), vec![AUDIENCE.into(), "another-api".into()]);
        configure(&mut oidc);
        config.oidc = Some(oidc);
    })
    .await
}

async fn get(server: &TestServer, protocol: Protocol, session_id: &str, token: &str) -> Outcome {
    server.call(protocol, Rpc::GetSession, json!({ "sessionId": session_id }), token).await
}

#[track_caller]
fn refused(outcome: &Outcome, id: &str, says: &str) {
    outcome.expect_error(Code::Unauthenticated, id);
    assert!(outcome.message.contains(says), "expected the message to say `{says}`: {outcome:?}");
}

async fn each_algorithm_authorizes_calls_beside_api_tokens(backend: Backend) {
    let keys = [SigningKey::rsa("rsa-1"), SigningKey::p256("ec-1"), SigningKey::ed25519("ed-1")];
    let issuer = Issuer::start(&keys.iter().collect::<Vec<_>>()).await;
    let Some(server) = server_trusting(backend, &issuer, |_| {}).await else { return };
    let alice = server.user("alice").await;
    let auditor = server.actor("auditor", &[SessionRead]).await;

    for (key, create_over, get_over) in [
        (&keys[0], Protocol::Grpc, Protocol::Rest),
        (&keys[1], Protocol::Rest, Protocol::Grpc),
        (&keys[2], Protocol::ConnectJson, Protocol::GrpcWeb),
    ] {
        let jwt = key.sign(&claims(&issuer, &alice, "openid profile session.write session.read"));
        let created = server.create(create_over, &alice, &jwt).await;
        let read = get(&server, get_over, &created.id, &jwt).await;
        assert_eq!(read.ok()["session"]["factors"]["user"]["id"], json!(alice), "{:?}", key.alg);
        // sessiond's own API tokens keep working beside the JWTs.
        get(&server, get_over, &created.id, &auditor.token).await.ok();
    }
    // One fetch served every key.
    assert_eq!(issuer.jwks_hits(), 1);

    // The token's subject must be an active sessiond user, as an API token's owner must be.
    let nobody = keys[0].sign(&claims(&issuer, "no-such-user", "session.read"));
    let created = server.create(Protocol::Grpc, &alice, &keys[0].sign(&claims(&issuer, &alice, "session.write"))).await;
    for protocol in [Protocol::Grpc, Protocol::Rest] {
        refused(&get(&server, protocol, &created.id, &nobody).await, "AUTH-UnknownUser", "not an active");
    }
    let jwt = keys[1].sign(&claims(&issuer, &alice, "session.read"));
    get(&server, Protocol::Rest, &created.id, &jwt).await.ok();
    server.disable(&alice).await;
    for protocol in [Protocol::Grpc, Protocol::Rest] {
        refused(&get(&server, protocol, &created.id, &jwt).await, "AUTH-UnknownUser", "not an active");
    }
}
backend_test!(each_algorithm_authorizes_calls_beside_api_tokens);

#[tokio::test]
async fn the_permissions_claim_decides_what_a_token_may_do() {
    let key = SigningKey::ed25519("ed-1");
    let issuer = Issuer::start(&[&key]).await;
    let server = server_trusting(Backend::Sqlite, &issuer, |_| {}).await.unwrap();
    let (alice, bob) = (server.user("alice").await, server.user("bob").await);
    let writer = server.actor("writer", &[SessionWrite]).await;
    let bobs = server.create(Protocol::Grpc, &bob, &writer.token).await;

    // `session.read` only: reads any session, creates none.
    let reader = key.sign(&claims(&issuer, &alice, "openid session.read"));
    for protocol in [Protocol::Grpc, Protocol::Rest] {
        get(&server, protocol, &bobs.id, &reader).await.ok();
        let create = server.call(protocol, Rpc::CreateSession, json!({"checks": common::user_check(&alice)}), &reader);
        create.await.expect_error(Code::PermissionDenied, "SESSION-PermissionDenied");
    }
    // No permissions claim at all: the user's own sessions only.
    let mut bare = claims(&issuer, &alice, "");
    bare.as_object_mut().unwrap().remove("scope");
    let bare = key.sign(&bare);
    get(&server, Protocol::Rest, &bobs.id, &bare)
        .await
        .expect_error(Code::PermissionDenied, "SESSION-PermissionDenied");

    // Other claim names, and permissions as an array.
    let custom = server_trusting(Backend::Sqlite, &issuer, |oidc| {
        oidc.user_claim = "sessiond_user".into();
        oidc.permissions_claim = "permissions".into();
    })
    .await
    .unwrap();
    let carol = custom.user("carol").await;
    let mut token = claims(&issuer, "someone-at-the-idp", "");
    token["sessiond_user"] = json!(carol);
    token["permissions"] = json!(["session.write", "billing.admin"]);
    let created = custom.create(Protocol::Rest, &carol, &key.sign(&token)).await;
    assert!(!created.id.is_empty());
    let mut wrong_type = token.clone();
    wrong_type["permissions"] = json!({"session.write": true});
    let outcome = get(&custom, Protocol::Grpc, &created.id, &key.sign(&wrong_type)).await;
    refused(&outcome, INVALID, "`permissions` claim");
    let without_user = key.sign(&claims(&issuer, &carol, "session.read"));
    refused(&get(&custom, Protocol::Rest, &created.id, &without_user).await, INVALID, "`sessiond_user` claim");
}

/// `header.payload.` with `alg: none` (no signature).
fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"}).to_string());
    format!("{header}.{}.", URL_SAFE_NO_PAD.encode(claims.to_string()))
}

#[tokio::test]
async fn tokens_that_do_not_verify_are_unauthenticated() {
    let (rsa, ec) = (SigningKey::rsa("rsa-1"), SigningKey::p256("ec-1"));
    let impostor = SigningKey::rsa("rsa-1");
    let issuer = Issuer::start(&[&rsa, &ec]).await;
    let server = server_trusting(Backend::Sqlite, &issuer, |_| {}).await.unwrap();
    let alice = server.user("alice").await;
    let writer = server.actor("writer", &[SessionWrite]).await;
    let session = server.create(Protocol::Grpc, &alice, &writer.token).await;
    let valid = claims(&issuer, &alice, "session.read");
    let with = |changes: Value| {
        let mut c = valid.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };

    // Within the leeway (60 s) an expired token still passes; past it, not.
    get(&server, Protocol::Grpc, &session.id, &rsa.sign(&with(json!({"exp": now() - 30})))).await.ok();

    let hs256 = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        let secret = EncodingKey::from_secret(&rsa.public_n()).unwrap();
        jsonwebtoken::encode(&header, &valid, &secret).unwrap()
    };
    let bad_signature = {
        let good = rsa.sign(&valid);
        let other = rsa.sign(&with(json!({"sub": "someone-else"})));
        let (message, _) = good.rsplit_once('.').unwrap();
        format!("{message}.{}", other.rsplit_once('.').unwrap().1)
    };
    let ec_claims_rsa_kid = {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("rsa-1".into());
        ec.sign_with(&header, &valid)
    };
    let no_kid = rsa.sign_with(&Header::new(Algorithm::RS256), &valid);
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired past the leeway", rsa.sign(&with(json!({"exp": now() - 120}))), "expired"),
        ("without exp", rsa.sign(&with(json!({"exp": null}))), "no `exp` claim"),
        ("not valid yet", ec.sign(&with(json!({"nbf": now() + 300}))), "not valid yet"),
        ("another issuer", rsa.sign(&with(json!({"iss": "https://evil.example"}))), "issuer"),
        ("the issuer with a trailing slash", rsa.sign(&with(json!({"iss": format!("{}/", issuer.url)}))), "issuer"),
        ("another audience", ec.sign(&with(json!({"aud": "someone-else"}))), "audience"),
        ("no audience", ec.sign(&with(json!({"aud": null}))), "no `aud` claim"),
        ("alg none", unsigned(&valid), "algorithm `none` is not accepted"),
        ("HS256 keyed with the public key", hs256, "algorithm `HS256` is not accepted"),
        ("a signature of other claims", bad_signature, "signature does not verify"),
        ("signed by another key under a published kid", impostor.sign(&valid), "signature does not verify"),
        ("ES256 naming an RSA key", ec_claims_rsa_kid, "does not match its signing key"),
        ("no kid", no_kid, "names no signing key"),
        ("a header that is not JSON", format!("bm90LWpzb24.{}.c2ln", URL_SAFE_NO_PAD.encode("{}")), "header"),
        ("over 8 KiB", rsa.sign(&with(json!({"padding": "x".repeat(9000)}))), "longer than 8192 bytes"),
    ];
    for (what, token, says) in &cases {
        for protocol in [Protocol::Grpc, Protocol::Rest, Protocol::ConnectJson] {
            let outcome = get(&server, protocol, &session.id, token).await;
            assert_eq!(outcome.code, Code::Unauthenticated, "{what}: {outcome:?}");
            refused(&outcome, INVALID, says);
        }
    }
    // None of these made the server fetch keys again: every kid they named was known.
    assert_eq!(issuer.jwks_hits(), 1);
}

#[tokio::test]
async fn keys_behind_a_discovery_document_of_another_issuer_are_never_trusted() {
    let key = SigningKey::rsa("rsa-1");
    let issuer = Issuer::start(&[&key]).await;
    issuer.claim_issuer("https://idp.example");
    let server = server_trusting(Backend::Sqlite, &issuer, |_| {}).await.unwrap();
    let alice = server.user("alice").await;
    let writer = server.actor("writer", &[SessionWrite]).await;
    let session = server.create(Protocol::Grpc, &alice, &writer.token).await;
    let jwt = key.sign(&claims(&issuer, &alice, "session.read"));
    for protocol in [Protocol::Grpc, Protocol::Rest] {
        refused(&get(&server, protocol, &session.id, &jwt).await, INVALID, "not one of the issuer's keys");
    }
    assert_eq!(issuer.jwks_hits(), 0, "the JWKS it names was never fetched");
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_a_retired_one_stops_working() {
    let (old, new) = (SigningKey::rsa("2026-11"), SigningKey::ed25519("2026-12"));
    let issuer = Issuer::start(&[&old]).await;
    let server = server_trusting(Backend::Sqlite, &issuer, |_| {}).await.unwrap();
    let alice = server.user("alice").await;
    let session = server.create(Protocol::Grpc, &alice, &old.sign(&claims(&issuer, &alice, "session.write"))).await;
    assert_eq!(issuer.jwks_hits(), 1);

    // The issuer rotates: the new key is published, the old one withdrawn.
    issuer.publish(&[&new]);
    let fresh = new.sign(&claims(&issuer, &alice, "session.read"));
    for protocol in [Protocol::Rest, Protocol::Grpc] {
        get(&server, protocol, &session.id, &fresh).await.ok();
    }
    assert_eq!(issuer.jwks_hits(), 2, "the unknown kid made one fetch");
    // The fetched set replaced the cached one: the withdrawn key no longer verifies.
    let stale = old.sign(&claims(&issuer, &alice, "session.read"));
    refused(&get(&server, Protocol::Rest, &session.id, &stale).await, INVALID, "not one of the issuer's keys");
    assert_eq!(issuer.jwks_hits(), 2, "within the window, no second fetch");
}

#[tokio::test]
async fn keys_past_their_age_are_refetched_in_the_background() {
    let key = SigningKey::p256("ec-1");
    let issuer = Issuer::start(&[&key]).await;
    let server = server_trusting(Backend::Sqlite, &issuer, |oidc| oidc.max_key_age = Duration::ZERO).await.unwrap();
    let alice = server.user("alice").await;
    let writer = server.actor("writer", &[SessionWrite]).await;
    let session = server.create(Protocol::Grpc, &alice, &writer.token).await;

    // The issuer withdraws its only key: the cached copy answers the next call at once, and
    // sends a refetch off in the background, after which the key no longer verifies.
    let jwt = key.sign(&claims(&issuer, &alice, "session.read"));
    get(&server, Protocol::Grpc, &session.id, &jwt).await.ok();
    issuer.publish(&[]);
    get(&server, Protocol::Grpc, &session.id, &jwt).await.ok();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let outcome = get(&server, Protocol::Rest, &session.id, &jwt).await;
        if outcome.code == Code::Unauthenticated {
            refused(&outcome, INVALID, "not one of the issuer's keys");
            break;
        }
        outcome.ok();
        assert!(Instant::now() < deadline, "the withdrawn key still verifies");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The start's fetch, one or two in the background (the first call may have found the start's
    // keys cached and already due), and one for the kid that became unknown: a handful, not one
    // per call.
    for _ in 0..5 {
        refused(&get(&server, Protocol::Grpc, &session.id, &jwt).await, INVALID, "not one of the issuer's keys");
    }
    let hits = issuer.jwks_hits();
    assert!((2..=4).contains(&hits), "{hits} fetches");
}

#[tokio::test]
async fn a_burst_of_unknown_kids_makes_at_most_one_fetch() {
    let key = SigningKey::ed25519("known");
    let issuer = Issuer::start(&[&key]).await;
    let server = server_trusting(Backend::Sqlite, &issuer, |_| {}).await.unwrap();
    let alice = server.user("alice").await;
    let session = server.create(Protocol::Grpc, &alice, &key.sign(&claims(&issuer, &alice, "session.write"))).await;
    assert_eq!(issuer.jwks_hits(), 1);

    let forged: Vec<String> = (0..32)
        .map(|i| SigningKey::ed25519(&format!("forged-{i}")).sign(&claims(&issuer, &alice, "session.read")))
        .collect();
    let started = Instant::now();
    let outcomes = futures_util::future::join_all(forged.iter().enumerate().map(|(i, token)| {
        let protocol = if i % 2 == 0 { Protocol::Grpc } else { Protocol::Rest };
        get(&server, protocol, &session.id, token)
    }))
    .await;
    for outcome in &outcomes {
        refused(outcome, INVALID, "not one of the issuer's keys");
    }
    assert_eq!(issuer.jwks_hits(), 2, "32 unknown kids at once made one fetch");
    // Later unknown kids within the window make none; the known key works throughout.
    refused(&get(&server, Protocol::Grpc, &session.id, &forged[0]).await, INVALID, "not one of the issuer's keys");
    get(&server, Protocol::Grpc, &session.id, &key.sign(&claims(&issuer, &alice, ""))).await.ok();
    assert_eq!(issuer.jwks_hits(), 2);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn while_the_issuer_is_away_cached_keys_work_and_unknown_ones_are_refused_at_once() {
    let key = SigningKey::p256("ec-1");
    let issuer = Issuer::start(&[&key]).await;
    let server = server_trusting(Backend::Sqlite, &issuer, |_| {}).await.unwrap();
    let alice = server.user("alice").await;
    let session = server.create(Protocol::Grpc, &alice, &key.sign(&claims(&issuer, &alice, "session.write"))).await;

    issuer.set_mode(Mode::Unavailable);
    let cached = key.sign(&claims(&issuer, &alice, "session.read"));
    let unknown = SigningKey::ed25519("ed-new").sign(&claims(&issuer, &alice, "session.read"));
    for protocol in [Protocol::Grpc, Protocol::Rest] {
        get(&server, protocol, &session.id, &cached).await.ok();
        let started = Instant::now();
        let outcome = get(&server, protocol, &session.id, &unknown).await;
        refused(&outcome, INVALID, "not one of the issuer's keys");
        assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    }
    assert_eq!(issuer.jwks_hits(), 2, "one fetch tried (and failed), then the rate limit");
}

#[tokio::test]
async fn an_issuer_that_never_answers_costs_a_token_at_most_the_fetch_timeout() {
    let key = SigningKey::ed25519("ed-1");
    let issuer = Issuer::start(&[&key]).await;
    issuer.set_mode(Mode::Hang);
    // The start does not wait for the issuer, and API tokens work at once.
    let server = server_trusting(Backend::Sqlite, &issuer, |_| {}).await.unwrap();
    let alice = server.user("alice").await;
    let writer = server.actor("writer", &[SessionWrite]).await;
    let started = Instant::now();
    let session = server.create(Protocol::Grpc, &alice, &writer.token).await;
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());

    // Tokens arriving while the keys are still being fetched wait for that one fetch (2 s).
    let jwt = key.sign(&claims(&issuer, &alice, "session.read"));
    let started = Instant::now();
    let outcomes = futures_util::future::join_all(
        [Protocol::Grpc, Protocol::Rest, Protocol::ConnectJson].map(|p| get(&server, p, &session.id, &jwt)),
    )
    .await;
    for outcome in &outcomes {
        refused(outcome, INVALID, "not one of the issuer's keys");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3500), "took {took:?}");
}

#[tokio::test]
async fn an_issuer_away_at_start_is_asked_again_when_a_token_needs_a_key() {
    let key = SigningKey::rsa("rsa-1");
    let issuer = Issuer::start(&[&key]).await;
    issuer.set_mode(Mode::Unavailable);
    let server = server_trusting(Backend::Sqlite, &issuer, |_| {}).await.unwrap();
    // The start's fetch was refused (503), and the server serves all the same.
    let deadline = Instant::now() + Duration::from_secs(5);
    while issuer.discovery_hits() == 0 {
        assert!(Instant::now() < deadline, "sessiond never asked the issuer");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let alice = server.user("alice").await;
    let writer = server.actor("writer", &[SessionWrite]).await;
    let session = server.create(Protocol::Rest, &alice, &writer.token).await;

    issuer.set_mode(Mode::Up);
    get(&server, Protocol::Rest, &session.id, &key.sign(&claims(&issuer, &alice, "session.read"))).await.ok();
    assert_eq!((issuer.discovery_hits(), issuer.jwks_hits()), (2, 1), "asked again when a token needed a key");
}

#[test]
fn the_oidc_flags_are_configuration_keys_and_an_issuer_needs_an_audience() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sessiond.toml"),
        "oidc-issuer = \"https://idp.example/realms/main\"\n\
         oidc-audience = [\"sessiond-api\", \"login-ui\"]\n\
         oidc_permissions_claim = \"permissions\"\n",
    )
    .unwrap();
    let sessiond = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sessiond"));
        command.current_dir(dir.path()).env("RUST_LOG", "warn");
        for var in ["SESSIOND_CONFIG", "SESSIOND_OIDC_ISSUER", "SESSIOND_OIDC_AUDIENCE", "SESSIOND_OIDC_LEEWAY_SECS"] {
            command.env_remove(var);
        }
        command
    };
    let out = sessiond()
        .args(["--config", "sessiond.toml", "config"])
        .env("SESSIOND_OIDC_LEEWAY_SECS", "30")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    for line in [
        "oidc-issuer = \"https://idp.example/realms/main\"  # configuration file",
        "oidc-audience = [\"sessiond-api\", \"login-ui\"]  # configuration file",
        "oidc-user-claim = \"sub\"  # default",
        "oidc-permissions-claim = \"permissions\"  # configuration file",
        "oidc-leeway-secs = \"30\"  # environment",
    ] {
        assert!(printed.lines().any(|l| l == line), "no `{line}` in\n{printed}");
    }

    let out = sessiond().args(["serve", "--oidc-issuer", "https://idp.example"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--oidc-audience"), "{stderr}");
}

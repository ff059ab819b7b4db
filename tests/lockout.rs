//! Guessing under attack: concurrent wrong passwords and TOTP codes, spread over every wire format,
//! never get more verifications than the lockout allows; a locked user stays locked for the right
//! credential too until `users unlock`; a burst beyond the hashing slots is shed without counting.

#[macro_use]
mod common;

use std::collections::HashMap;

use common::{Backend, Outcome, Protocol, Rpc, TestServer};
use futures_util::future::join_all;
use serde_json::{Value, json};
use sessiond::domain::{Permission, Timestamp, totp};
use tonic::Code;

const ALL_PERMISSIONS: [Permission; 3] = [Permission::SessionRead, Permission::SessionWrite, Permission::SessionDelete];

fn password_check(user: &str, password: &str) -> Value {
    json!({ "checks": { "user": { "userId": user }, "password": { "password": password } } })
}

/// Sends `requests` all at once, round-robin over every wire format.
async fn burst(server: &TestServer, rpc: Rpc, requests: Vec<Value>, token: &str) -> Vec<Outcome> {
    let calls = requests
        .into_iter()
        .enumerate()
        .map(|(i, request)| server.call(Protocol::ALL[i % Protocol::ALL.len()], rpc, request, token));
    join_all(calls).await
}

/// Answers by (code, error id), and the failed-attempt counts the wrong-credential answers carried.
fn tally(outcomes: &[Outcome]) -> (HashMap<(Code, String), usize>, Vec<i32>) {
    let mut by_kind = HashMap::new();
    let mut counts = Vec::new();
    for outcome in outcomes {
        *by_kind.entry((outcome.code, outcome.id.clone())).or_default() += 1;
        if outcome.code == Code::InvalidArgument {
            counts.extend(outcome.failed_attempts);
        }
    }
    counts.sort();
    (by_kind, counts)
}

async fn guesses_never_outrun_the_password_lockout(backend: Backend, guesses: usize) {
    const MAX: i32 = 5;
    let Some(server) = TestServer::on_with(backend, |c| c.max_failed_attempts = MAX).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    let user = server.user("victim").await;
    server.users.set_password(&user, "correct horse".into()).await.unwrap();

    let wrong = (0..guesses).map(|i| password_check(&user, &format!("guess {i}"))).collect();
    let outcomes = burst(&server, Rpc::CreateSession, wrong, &ui.token).await;
    let (by_kind, counts) = tally(&outcomes);
    let verified = by_kind.get(&(Code::InvalidArgument, "USER-PasswordInvalid".into())).copied().unwrap_or(0);
    let refused = by_kind.get(&(Code::FailedPrecondition, "USER-Locked".into())).copied().unwrap_or(0);
    // Shed before verifying anything: by the hashing slots, or by the adaptive in-flight limit when
    // the machine is too slow for the burst (a loaded CI host).
    let shed = by_kind.get(&(Code::ResourceExhausted, "USER-HashingBusy".into())).copied().unwrap_or(0)
        + by_kind.get(&(Code::ResourceExhausted, "SERVER-Overloaded".into())).copied().unwrap_or(0);
    assert_eq!(verified + refused + shed, guesses, "only these answers: {by_kind:?}");
    // Each verified guess held one claimed attempt: exactly the limit's worth, numbered 1..=MAX.
    assert!(verified <= MAX as usize, "{verified} wrong passwords verified, limit {MAX}: {by_kind:?}");
    if shed == 0 {
        assert_eq!(counts, (1..=MAX).collect::<Vec<_>>(), "{by_kind:?}");
    }
    for outcome in outcomes.iter().filter(|o| o.code == Code::FailedPrecondition) {
        assert_eq!(outcome.failed_attempts, Some(MAX), "a refusal carries the count: {outcome:?}");
    }

    // The right password after the burst finds a locked user, on every protocol.
    for protocol in Protocol::ALL {
        let right = server.call(protocol, Rpc::CreateSession, password_check(&user, "correct horse"), &ui.token).await;
        right.expect_error(Code::FailedPrecondition, "USER-Locked");
        assert_eq!(right.failed_attempts, Some(MAX), "{right:?}");
    }
    // So does a user check alone: a locked user is not active.
    let user_only = json!({ "checks": { "user": { "userId": user } } });
    server
        .call(Protocol::Grpc, Rpc::CreateSession, user_only, &ui.token)
        .await
        .expect_error(Code::FailedPrecondition, "USER-Locked");

    server.users.unlock(&user).await.unwrap();
    let right =
        server.call(Protocol::Rest, Rpc::CreateSession, password_check(&user, "correct horse"), &ui.token).await;
    right.ok();
    assert_eq!(server.users.user(&user).await.unwrap().failed_attempts, 0, "a success clears the count");
}

backend_test!(sixty_four_concurrent_wrong_passwords);
async fn sixty_four_concurrent_wrong_passwords(backend: Backend) {
    guesses_never_outrun_the_password_lockout(backend, 64).await;
}

backend_test!(four_hundred_concurrent_wrong_passwords);
async fn four_hundred_concurrent_wrong_passwords(backend: Backend) {
    guesses_never_outrun_the_password_lockout(backend, 400).await;
}

backend_test!(a_success_starts_the_password_count_over);
async fn a_success_starts_the_password_count_over(backend: Backend) {
    let Some(server) = TestServer::on_with(backend, |c| c.max_failed_attempts = 3).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    let user = server.user("alice").await;
    server.users.set_password(&user, "right".into()).await.unwrap();
    for round in 0..2 {
        for attempt in 1..=2 {
            let wrong =
                server.call(Protocol::Grpc, Rpc::CreateSession, password_check(&user, "wrong"), &ui.token).await;
            wrong.expect_error(Code::InvalidArgument, "USER-PasswordInvalid");
            assert_eq!(wrong.failed_attempts, Some(attempt), "round {round}: {wrong:?}");
        }
        let right =
            server.call(Protocol::ConnectJson, Rpc::CreateSession, password_check(&user, "right"), &ui.token).await;
        right.ok();
    }
}

fn totp_check(session_id: &str, code: &str) -> Value {
    json!({ "sessionId": session_id, "checks": { "totp": { "code": code } } })
}

/// The codes of the steps around now (wider than the skew window, so a step may pass meanwhile).
fn valid_codes(secret: &[u8]) -> Vec<String> {
    let now = totp::step_at(Timestamp::now().micros() / 1_000_000);
    (now - 2..=now + 2).map(|step| totp::code_for_step(secret, step)).collect()
}

/// The code for now, and one that is wrong for every step in the skew window.
fn codes(secret: &[u8]) -> (String, String) {
    let valid = valid_codes(secret);
    let wrong = (0..).map(|n| format!("{n:06}")).find(|c| !valid.contains(c)).unwrap();
    (valid[2].clone(), wrong)
}

backend_test!(totp_guesses_lock_on_their_own_counter);
async fn totp_guesses_lock_on_their_own_counter(backend: Backend) {
    const MAX: i32 = 3;
    let Some(server) = TestServer::on_with(backend, |c| c.max_failed_otp_attempts = MAX).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    for protocol in Protocol::ALL {
        let user = server.user(&format!("totp-{protocol}")).await;
        server.users.set_password(&user, "right".into()).await.unwrap();
        let secret = common::otpauth_secret(&server.users.add_totp(&user, "sessiond-test").await.unwrap());
        let session = server.create(protocol, &user, &ui.token).await;

        // A success clears the counter: MAX - 1 wrong codes, a right one, MAX - 1 wrong again.
        let (code, wrong) = codes(&secret);
        for _ in 1..MAX {
            let outcome = server.call(protocol, Rpc::SetSession, totp_check(&session.id, &wrong), &ui.token).await;
            outcome.expect_error(Code::InvalidArgument, "USER-TotpInvalid");
        }
        server.call(protocol, Rpc::SetSession, totp_check(&session.id, &code), &ui.token).await.ok();
        let later = server.create(protocol, &user, &ui.token).await;
        for _ in 1..=MAX {
            let outcome = server.call(protocol, Rpc::SetSession, totp_check(&session.id, &wrong), &ui.token).await;
            outcome.expect_error(Code::InvalidArgument, "USER-TotpInvalid");
        }

        // MAX wrong codes in a row: the next check is refused before the code is looked at (the
        // right one included), and so is the password, until an unlock.
        let locked = server.call(protocol, Rpc::SetSession, totp_check(&later.id, &code), &ui.token).await;
        locked.expect_error(Code::FailedPrecondition, "USER-Locked");
        assert_eq!(locked.failed_attempts, Some(MAX), "{locked:?}");
        let password = json!({ "sessionId": later.id, "checks": { "password": { "password": "right" } } });
        server
            .call(protocol, Rpc::SetSession, password.clone(), &ui.token)
            .await
            .expect_error(Code::FailedPrecondition, "USER-Locked");

        server.users.unlock(&user).await.unwrap();
        server.call(protocol, Rpc::SetSession, password, &ui.token).await.ok();
        let read = server.users.user(&user).await.unwrap();
        assert_eq!((read.otp_failed_attempts, read.otp_locked), (0, false), "[{protocol}] unlocked");
    }
}

backend_test!(concurrent_totp_guesses_never_outrun_the_lockout);
async fn concurrent_totp_guesses_never_outrun_the_lockout(backend: Backend) {
    const MAX: i32 = 5;
    let Some(server) = TestServer::on_with(backend, |c| c.max_failed_otp_attempts = MAX).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    let user = server.user("totp-victim").await;
    let secret = common::otpauth_secret(&server.users.add_totp(&user, "sessiond-test").await.unwrap());
    let session = server.create(Protocol::Grpc, &user, &ui.token).await;

    // Every code of the million but the valid ones, 200 at a time: what a guesser would send.
    let valid = valid_codes(&secret);
    let guesses: Vec<Value> = (0..200)
        .map(|n| format!("{:06}", n * 4999 % 1_000_000))
        .filter(|guess| !valid.contains(guess))
        .map(|guess| totp_check(&session.id, &guess))
        .collect();
    let outcomes = burst(&server, Rpc::SetSession, guesses.clone(), &ui.token).await;
    let (by_kind, _) = tally(&outcomes);
    let wrong = outcomes.iter().filter(|o| o.code == Code::InvalidArgument).count();
    let refused = by_kind.get(&(Code::FailedPrecondition, "USER-Locked".into())).copied().unwrap_or(0);
    let overloaded = by_kind.get(&(Code::ResourceExhausted, "SERVER-Overloaded".into())).copied().unwrap_or(0);
    assert!(wrong <= MAX as usize, "{wrong} codes verified, limit {MAX}: {by_kind:?}");
    assert_eq!(wrong + refused + overloaded, guesses.len(), "only wrong, locked or shed unread: {by_kind:?}");

    let right = server.call(Protocol::Rest, Rpc::SetSession, totp_check(&session.id, &valid[2]), &ui.token).await;
    right.expect_error(Code::FailedPrecondition, "USER-Locked");
}

backend_test!(a_login_burst_beyond_the_hashing_slots_is_shed_without_counting);
async fn a_login_burst_beyond_the_hashing_slots_is_shed_without_counting(backend: Backend) {
    let Some(server) = TestServer::on_with(backend, |c| {
        c.max_failed_attempts = 1_000;
        c.max_hash_wait = std::time::Duration::from_millis(1);
    })
    .await
    else {
        return;
    };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    let user = server.user("busy").await;
    server.users.set_password(&user, "right".into()).await.unwrap();

    let wrong = (0..60).map(|i| password_check(&user, &format!("guess {i}"))).collect();
    let outcomes = burst(&server, Rpc::CreateSession, wrong, &ui.token).await;
    let (by_kind, _) = tally(&outcomes);
    let verified = by_kind.get(&(Code::InvalidArgument, "USER-PasswordInvalid".into())).copied().unwrap_or(0);
    let shed = by_kind.get(&(Code::ResourceExhausted, "USER-HashingBusy".into())).copied().unwrap_or(0);
    assert_eq!(verified + shed, 60, "{by_kind:?}");
    assert!(shed > 0, "60 checks at once on a few slots with a 1 ms wait shed some: {by_kind:?}");
    for outcome in outcomes.iter().filter(|o| o.code == Code::ResourceExhausted) {
        if let Some(http) = outcome.http {
            assert_eq!(http, if outcome.protocol.is_json() { 429 } else { 200 }, "{outcome:?}");
        }
    }
    // Only the verified guesses count against the user.
    let read = server.users.user(&user).await.unwrap();
    assert_eq!(read.failed_attempts, i32::try_from(verified).unwrap(), "{by_kind:?}");
}

backend_test!(an_over_long_password_or_code_is_refused_without_counting);
async fn an_over_long_password_or_code_is_refused_without_counting(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    let user = server.user("long").await;
    server.users.set_password(&user, "right".into()).await.unwrap();
    server.users.add_totp(&user, "sessiond-test").await.unwrap();
    let session = server.create(Protocol::Grpc, &user, &ui.token).await;
    for protocol in Protocol::ALL {
        let long = "p".repeat(1025);
        let outcome = server.call(protocol, Rpc::CreateSession, password_check(&user, &long), &ui.token).await;
        outcome.expect_error(Code::InvalidArgument, "SESSION-InvalidCheck");
        let outcome = server.call(protocol, Rpc::SetSession, totp_check(&session.id, &"1".repeat(17)), &ui.token).await;
        outcome.expect_error(Code::InvalidArgument, "SESSION-InvalidCheck");
    }
    let read = server.users.user(&user).await.unwrap();
    assert_eq!((read.failed_attempts, read.otp_failed_attempts), (0, 0), "nothing counted");
    // At the bound the password is checked (and, being wrong, counted).
    let at_bound =
        server.call(Protocol::Rest, Rpc::CreateSession, password_check(&user, &"p".repeat(1024)), &ui.token).await;
    at_bound.expect_error(Code::InvalidArgument, "USER-PasswordInvalid");
    assert_eq!(at_bound.failed_attempts, Some(1), "{at_bound:?}");
}

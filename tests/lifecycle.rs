//! The whole session lifecycle a login UI drives, over every wire format: password and TOTP
//! logins, lockout and unlock, TOTP replay, checks before a user is known, expiry, paging, and
//! concurrent writers on one session.

#[macro_use]
mod common;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use common::{Backend, Protocol, Rpc, TestServer, user_check};
use serde_json::json;
use sessiond::{
    domain::{Permission, Timestamp, totp},
    store,
};
use tonic::Code;

const ALL_PERMISSIONS: [Permission; 3] = [Permission::SessionRead, Permission::SessionWrite, Permission::SessionDelete];

backend_test!(password_login_over_every_protocol);
async fn password_login_over_every_protocol(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    for protocol in Protocol::ALL {
        let user = server.user(&format!("pw-{protocol}")).await;
        server.users.set_password(&user, "correct horse".into()).await.unwrap();

        let created = server.create(protocol, &user, &ui.token).await;
        let set = server
            .call(
                protocol,
                Rpc::SetSession,
                json!({"sessionId": created.id, "sessionToken": created.token, "checks": {"password": {"password": "correct horse"}}}),
                &ui.token,
            )
            .await;
        let set_body = set.ok().clone();
        assert_eq!(set_body["details"]["sequence"], "2", "[{protocol}] {set:?}");
        let new_token = set.str("/sessionToken");
        assert!(!new_token.is_empty() && new_token != created.token, "[{protocol}] a change rotates the token");

        let got = server
            .call(protocol, Rpc::GetSession, json!({"sessionId": created.id, "sessionToken": new_token}), &ui.token)
            .await;
        let session = &got.ok()["session"];
        assert_eq!(session["factors"]["user"]["id"], user.as_str(), "[{protocol}] {got:?}");
        assert!(session["factors"]["password"]["verifiedAt"].is_string(), "[{protocol}] password factor: {got:?}");

        let stale = server
            .call(protocol, Rpc::GetSession, json!({"sessionId": created.id, "sessionToken": created.token}), &ui.token)
            .await;
        stale.expect_error(Code::PermissionDenied, "SESSION-TokenInvalid");

        let listed = server
            .call(protocol, Rpc::ListSessions, json!({"queries": [{"idsQuery": {"ids": [created.id]}}]}), &ui.token)
            .await;
        let listed_body = listed.ok();
        assert_eq!(listed_body["details"]["totalResult"], "1", "[{protocol}] {listed:?}");
        assert_eq!(listed_body["sessions"][0]["id"], created.id.as_str());

        let deleted = server
            .call(protocol, Rpc::DeleteSession, json!({"sessionId": created.id, "sessionToken": new_token}), &ui.token)
            .await;
        assert_eq!(deleted.ok()["details"]["sequence"], "3", "[{protocol}] {deleted:?}");
    }
}

backend_test!(wrong_passwords_lock_the_user_until_unlocked);
async fn wrong_passwords_lock_the_user_until_unlocked(backend: Backend) {
    let Some(server) = TestServer::on_with(backend, |c| c.max_failed_attempts = 3).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    for protocol in Protocol::ALL {
        let user = server.user(&format!("lock-{protocol}")).await;
        server.users.set_password(&user, "right".into()).await.unwrap();
        let created = server.create(protocol, &user, &ui.token).await;
        let check = |password: &str| json!({"sessionId": created.id, "checks": {"password": {"password": password}}});

        for attempt in 1..=2 {
            let wrong = server.call(protocol, Rpc::SetSession, check("wrong"), &ui.token).await;
            wrong.expect_error(Code::InvalidArgument, "USER-PasswordInvalid");
            assert_eq!(wrong.failed_attempts, Some(attempt), "{wrong:?}");
        }
        let locking = server.call(protocol, Rpc::SetSession, check("wrong"), &ui.token).await;
        locking.expect_error(Code::InvalidArgument, "USER-PasswordInvalid");
        assert_eq!(locking.failed_attempts, Some(3), "{locking:?}");

        let locked = server.call(protocol, Rpc::SetSession, check("right"), &ui.token).await;
        locked.expect_error(Code::FailedPrecondition, "USER-Locked");
        // A failed check left the session unchanged.
        let got = server.call(protocol, Rpc::GetSession, json!({"sessionId": created.id}), &ui.token).await;
        assert_eq!(got.ok()["session"]["sequence"], "1", "[{protocol}] {got:?}");

        server.users.unlock(&user).await.unwrap();
        let unlocked = server.call(protocol, Rpc::SetSession, check("right"), &ui.token).await;
        assert_eq!(unlocked.ok()["details"]["sequence"], "2", "[{protocol}] {unlocked:?}");
    }
}

backend_test!(totp_login_refuses_wrong_and_replayed_codes);
async fn totp_login_refuses_wrong_and_replayed_codes(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    for protocol in Protocol::ALL {
        let user = server.user(&format!("totp-{protocol}")).await;
        let uri = server.users.add_totp(&user, "sessiond-test").await.unwrap();
        assert!(uri.starts_with("otpauth://totp/") && uri.contains("secret="), "{uri}");
        let secret = common::otpauth_secret(&uri);
        let code = totp::code_for_step(&secret, totp::step_at(Timestamp::now().micros() / 1_000_000));

        let first = server.create(protocol, &user, &ui.token).await;
        let wrong_code = if code == "000000" { "111111" } else { "000000" };
        let wrong = server
            .call(
                protocol,
                Rpc::SetSession,
                json!({"sessionId": first.id, "checks": {"totp": {"code": wrong_code}}}),
                &ui.token,
            )
            .await;
        wrong.expect_error(Code::InvalidArgument, "USER-TotpInvalid");

        let ok = server
            .call(
                protocol,
                Rpc::SetSession,
                json!({"sessionId": first.id, "checks": {"totp": {"code": code}}}),
                &ui.token,
            )
            .await;
        assert_eq!(ok.ok()["details"]["sequence"], "2", "[{protocol}] {ok:?}");
        let got = server.call(protocol, Rpc::GetSession, json!({"sessionId": first.id}), &ui.token).await;
        assert!(got.ok()["session"]["factors"]["totp"]["verifiedAt"].is_string(), "[{protocol}] {got:?}");

        // The same code again, even on another session: a replay.
        let second = server.create(protocol, &user, &ui.token).await;
        let replay = server
            .call(
                protocol,
                Rpc::SetSession,
                json!({"sessionId": second.id, "checks": {"totp": {"code": code}}}),
                &ui.token,
            )
            .await;
        replay.expect_error(Code::InvalidArgument, "USER-TotpReused");
    }
}

backend_test!(factor_checks_need_a_user_first);
async fn factor_checks_need_a_user_first(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    for protocol in Protocol::ALL {
        let anonymous = server.call(protocol, Rpc::CreateSession, json!({}), &ui.token).await;
        let id = anonymous.ok()["sessionId"].as_str().unwrap().to_owned();
        for checks in [json!({"password": {"password": "x"}}), json!({"totp": {"code": "123456"}})] {
            let early =
                server.call(protocol, Rpc::SetSession, json!({"sessionId": id, "checks": checks}), &ui.token).await;
            early.expect_error(Code::FailedPrecondition, "SESSION-UserMissing");
        }
        // An empty password or code is malformed, never a failed attempt.
        for checks in [json!({"password": {}}), json!({"totp": {"code": ""}})] {
            let empty =
                server.call(protocol, Rpc::SetSession, json!({"sessionId": id, "checks": checks}), &ui.token).await;
            empty.expect_error(Code::InvalidArgument, "SESSION-InvalidCheck");
        }
        let no_password_user = server.user(&format!("nopw-{protocol}")).await;
        let created = server
            .call(
                protocol,
                Rpc::CreateSession,
                json!({"checks": {"user": {"userId": no_password_user}, "password": {"password": "x"}}}),
                &ui.token,
            )
            .await;
        created.expect_error(Code::FailedPrecondition, "USER-NoPassword");
    }
}

backend_test!(expired_sessions_read_as_gone_but_can_be_terminated);
async fn expired_sessions_read_as_gone_but_can_be_terminated(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    let user = server.user("expiring").await;
    // A long lifetime shows as creation date + lifetime.
    let lasting = server
        .call(Protocol::Rest, Rpc::CreateSession, json!({"checks": user_check(&user), "lifetime": "3600s"}), &ui.token)
        .await;
    let got =
        server.call(Protocol::Rest, Rpc::GetSession, json!({"sessionId": lasting.str("/sessionId")}), &ui.token).await;
    let session = &got.ok()["session"];
    let seconds = |field: &str| {
        let text = session[field].as_str().unwrap();
        time_of(text)
    };
    assert_eq!(seconds("expirationDate") - seconds("creationDate"), 3600, "{got:?}");

    let mut short = Vec::new();
    for protocol in Protocol::ALL {
        let created = server
            .call(protocol, Rpc::CreateSession, json!({"checks": user_check(&user), "lifetime": "0.100s"}), &ui.token)
            .await;
        short.push((protocol, created.str("/sessionId"), created.str("/sessionToken")));
    }
    // Time has to pass for a lifetime to end.
    tokio::time::sleep(Duration::from_millis(150)).await;
    for (protocol, id, token) in short {
        let gone = server.call(protocol, Rpc::GetSession, json!({"sessionId": id}), &ui.token).await;
        gone.expect_error(Code::NotFound, "SESSION-NotFound");
        let set = server
            .call(protocol, Rpc::SetSession, json!({"sessionId": id, "metadata": {"k": "dg=="}}), &ui.token)
            .await;
        set.expect_error(Code::FailedPrecondition, "SESSION-Terminated");
        let listed = server
            .call(protocol, Rpc::ListSessions, json!({"queries": [{"idsQuery": {"ids": [id]}}]}), &ui.token)
            .await;
        assert_eq!(
            listed.ok()["details"]["totalResult"],
            serde_json::Value::Null,
            "[{protocol}] 0 is omitted: {listed:?}"
        );
        let deleted =
            server.call(protocol, Rpc::DeleteSession, json!({"sessionId": id, "sessionToken": token}), &ui.token).await;
        assert_eq!(
            deleted.ok()["details"]["sequence"],
            "2",
            "[{protocol}] an expired session is terminated: {deleted:?}"
        );
    }
    let zero = server.call(Protocol::Rest, Rpc::CreateSession, json!({"lifetime": "0s"}), &ui.token).await;
    zero.expect_error(Code::InvalidArgument, "SESSION-InvalidLifetime");
    let negative = server.call(Protocol::Grpc, Rpc::CreateSession, json!({"lifetime": "-5s"}), &ui.token).await;
    negative.expect_error(Code::InvalidArgument, "SESSION-InvalidLifetime");
}

backend_test!(list_pages_and_counts);
async fn list_pages_and_counts(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    let user = server.user("paged").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(server.create(Protocol::Grpc, &user, &ui.token).await.id);
    }
    let by_user = |query: serde_json::Value| json!({"query": query, "queries": [{"userIdQuery": {"id": user}}]});
    for protocol in Protocol::ALL {
        let page = |query| {
            let request = by_user(query);
            let server = &server;
            let token = ui.token.clone();
            async move { server.call(protocol, Rpc::ListSessions, request, &token).await }
        };
        let listed_ids = |o: &common::Outcome| -> Vec<String> {
            o.body["sessions"]
                .as_array()
                .map_or(Vec::new(), |a| a.iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect())
        };

        let newest_first = page(json!({})).await;
        assert_eq!(newest_first.ok()["details"]["totalResult"], "5", "[{protocol}] {newest_first:?}");
        assert_eq!(
            listed_ids(&newest_first),
            ids.iter().rev().cloned().collect::<Vec<_>>(),
            "[{protocol}] default order"
        );
        assert!(newest_first.body["details"]["timestamp"].is_string());

        let oldest_first = page(json!({"asc": true, "limit": 2})).await;
        assert_eq!(listed_ids(&oldest_first), ids[..2].to_vec(), "[{protocol}] asc + limit");
        assert_eq!(oldest_first.body["details"]["totalResult"], "5", "[{protocol}] total counts every match");

        let tail = page(json!({"asc": true, "offset": "4", "limit": 10})).await;
        assert_eq!(listed_ids(&tail), ids[4..].to_vec(), "[{protocol}] offset");
        let past_end = page(json!({"offset": "10"})).await;
        assert!(listed_ids(&past_end).is_empty(), "[{protocol}] past the end: {past_end:?}");
        assert_eq!(past_end.body["details"]["totalResult"], "5", "[{protocol}]");
        let default_limit = page(json!({"limit": 0})).await;
        assert_eq!(listed_ids(&default_limit).len(), 5, "[{protocol}] limit 0 is the default page size");

        let too_large = page(json!({"limit": 1001})).await;
        too_large.expect_error(Code::InvalidArgument, "SESSION-LimitTooLarge");
    }
}

backend_test!(concurrent_writers_on_one_session_never_lose_an_update);
async fn concurrent_writers_on_one_session_never_lose_an_update(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let ui = server.actor("login-ui", &ALL_PERMISSIONS).await;
    let user = server.user("contended").await;
    let created = server.create(Protocol::Grpc, &user, &ui.token).await;
    let server = Arc::new(server);

    let mut tasks = Vec::new();
    for task in 0..16 {
        let (server, token, id) = (Arc::clone(&server), ui.token.clone(), created.id.clone());
        tasks.push(tokio::spawn(async move {
            let protocol = Protocol::ALL[task % Protocol::ALL.len()];
            let mut outcomes = Vec::new();
            for round in 0..8 {
                let value = base64_of(&format!("{task}-{round}"));
                let request = json!({"sessionId": id, "metadata": {format!("k{task}"): value}});
                outcomes.push(server.call(protocol, Rpc::SetSession, request, &token).await);
            }
            outcomes
        }));
    }
    let mut sequences = BTreeSet::new();
    for task in tasks {
        for outcome in task.await.unwrap() {
            match outcome.code {
                Code::Ok => assert!(sequences.insert(outcome.str("/details/sequence")), "two writers got one sequence"),
                Code::Aborted => outcome.expect_error(Code::Aborted, "SESSION-Conflict"),
                _ => panic!("only success or ABORTED: {outcome:?}"),
            }
        }
    }
    assert!(!sequences.is_empty());
    let got = server.call(Protocol::Rest, Rpc::GetSession, json!({"sessionId": created.id}), &ui.token).await;
    let final_sequence: u64 = got.str("/session/sequence").parse().unwrap();
    assert_eq!(final_sequence, 1 + sequences.len() as u64, "every success is one change, nothing lost");

    let store = store::open(&server.config.database, Default::default()).await.unwrap();
    let history = store.session_history(&created.id).await.unwrap();
    let recorded: Vec<u64> = history.iter().map(|h| h.sequence).collect();
    assert_eq!(recorded, (1..=final_sequence).collect::<Vec<_>>(), "history is gapless");
    store.close().await;
}

/// Seconds since the epoch of an RFC 3339 timestamp, read by the proto3 JSON mapping.
fn time_of(text: &str) -> i64 {
    serde_json::from_value::<sessiond::proto::Timestamp>(json!(text)).unwrap().seconds
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

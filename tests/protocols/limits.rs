//! The bounds on what a caller sends (`sessiond::domain::limits`): each just under and just over
//! its limit, over every protocol and on both stores. A request past a bound is INVALID_ARGUMENT
//! with a stable id and a message naming the field and the limit, never a 5xx, and leaves nothing
//! behind; a request at the bound is served.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use sessiond::{
    domain::{
        Permission::{SessionDelete, SessionRead, SessionWrite},
        Timestamp,
        session::{Change, HistoryEntry},
    },
    store,
};
use tonic::Code;

use crate::common::{Actor, Backend, Outcome, Protocol, Rpc, TestServer, client::BASE64, user_check};

async fn admin(server: &TestServer) -> Actor {
    server.actor("admin", &[SessionRead, SessionWrite, SessionDelete]).await
}

/// A `metadata` map: each key with a value of that many bytes.
fn metadata<K: AsRef<str>>(entries: impl IntoIterator<Item = (K, usize)>) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, n)| (k.as_ref().to_owned(), Value::String(BASE64.encode(vec![b'x'; n]))))
            .collect(),
    )
}

/// `n` keys `k0`, `k1`, ... of one byte each.
fn keys(n: usize) -> Value {
    metadata((0..n).map(|i| (format!("k{i}"), 1)))
}

/// INVALID_ARGUMENT (HTTP 400 on REST and Connect) with `id`, the message naming each of `named`.
#[track_caller]
fn refused(outcome: &Outcome, id: &str, named: &[&str]) {
    outcome.expect_error(Code::InvalidArgument, id);
    for name in named {
        assert!(outcome.message.contains(name), "the message names `{name}`: {outcome:?}");
    }
}

/// The number of live sessions an all-seeing reader finds.
async fn total(server: &TestServer, admin: &Actor) -> String {
    let listed = server.call(Protocol::ConnectJson, Rpc::ListSessions, json!({}), &admin.token).await;
    listed.ok()["details"]["totalResult"].as_str().unwrap_or("0").to_owned()
}

backend_test!(metadata_is_bounded_in_keys_key_length_value_size_and_total);
async fn metadata_is_bounded_in_keys_key_length_value_size_and_total(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    // Four values of 8191 bytes under one-byte keys: exactly the 32768 bytes a session holds.
    let at_total = metadata([("a", 8191), ("b", 8191), ("c", 8191), ("d", 8191)]);
    let over_total = metadata([("a", 8191), ("b", 8191), ("c", 8191), ("d", 8192)]);
    let accepted = [metadata([("k".repeat(200), 1)]), metadata([("k", 8192)]), keys(64), at_total.clone()];
    let refusals = [
        (metadata([("k".repeat(201), 1)]), &["metadata key", "200 bytes"][..]),
        (metadata([("k", 8193)]), &["metadata value", "8192 bytes"]),
        (keys(65), &["64"]),
        (over_total, &["32769", "32768 bytes"]),
        (metadata([("a\0b", 1)]), &["metadata key", "control character"]),
        (metadata([("line\nbreak", 1)]), &["control character"]),
    ];
    for protocol in Protocol::ALL {
        for metadata in &accepted {
            let request = json!({ "checks": user_check(&admin.id), "metadata": metadata });
            server.call(protocol, Rpc::CreateSession, request, &admin.token).await.ok_with_status(201);
        }
        for (metadata, named) in &refusals {
            let request = json!({ "checks": user_check(&admin.id), "metadata": metadata });
            let outcome = server.call(protocol, Rpc::CreateSession, request, &admin.token).await;
            refused(&outcome, "SESSION-InvalidMetadata", named);
        }
        // What was accepted at the bound is stored and read back whole.
        let request = json!({ "checks": user_check(&admin.id), "metadata": at_total });
        let created = server.call(protocol, Rpc::CreateSession, request, &admin.token).await;
        let got =
            server.call(protocol, Rpc::GetSession, json!({ "sessionId": created.str("/sessionId") }), &admin.token);
        assert_eq!(got.await.ok()["session"]["metadata"], at_total, "[{protocol}]");
    }
    assert_eq!(total(&server, &admin).await, (5 * Protocol::ALL.len()).to_string(), "refusals left nothing behind");
}

backend_test!(set_session_refuses_a_merge_past_the_per_session_bounds_and_changes_nothing);
async fn set_session_refuses_a_merge_past_the_per_session_bounds_and_changes_nothing(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    // Metadata keys in order (gRPC's decoded maps have none).
    let names = |session: &Value| -> Vec<String> {
        let mut keys: Vec<String> =
            session["metadata"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        keys.sort();
        keys
    };
    for protocol in Protocol::ALL {
        let request =
            json!({ "checks": user_check(&admin.id), "metadata": metadata([("a", 8191), ("b", 8191), ("c", 8191)]) });
        let created = server.call(protocol, Rpc::CreateSession, request, &admin.token).await;
        let (id, token) = (created.str("/sessionId"), created.str("/sessionToken"));

        // Each request on its own is fine; merged with what the session holds, it is one byte over.
        let set = json!({ "sessionId": id, "sessionToken": token, "metadata": metadata([("d", 8192)]) });
        let outcome = server.call(protocol, Rpc::SetSession, set, &admin.token).await;
        refused(&outcome, "SESSION-InvalidMetadata", &["32769", "32768 bytes"]);
        // Unchanged: same sequence, same metadata, and the token was not rotated.
        let get = json!({ "sessionId": id, "sessionToken": token });
        let got = server.call(protocol, Rpc::GetSession, get, &admin.token).await;
        assert_eq!(got.ok()["session"]["sequence"], "1", "[{protocol}] {got:?}");
        assert_eq!(names(&got.ok()["session"]), ["a", "b", "c"], "[{protocol}]");

        // Exactly at the bound, and a change that removes as much as it adds, are served.
        let set = json!({ "sessionId": id, "sessionToken": token, "metadata": metadata([("d", 8191)]) });
        let outcome = server.call(protocol, Rpc::SetSession, set, &admin.token).await;
        let token = outcome.ok()["sessionToken"].as_str().unwrap_or_default().to_owned();
        let swap = metadata([("a", 0), ("e", 8191)]);
        let set = json!({ "sessionId": id, "sessionToken": token, "metadata": swap });
        server.call(protocol, Rpc::SetSession, set, &admin.token).await.ok();
        let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": id }), &admin.token).await;
        assert_eq!(got.ok()["session"]["sequence"], "3", "[{protocol}] {got:?}");
        assert_eq!(names(&got.ok()["session"]), ["b", "c", "d", "e"], "[{protocol}]");

        // The number of keys is bounded after the merge too.
        let request = json!({ "checks": user_check(&admin.id), "metadata": keys(64) });
        let id = server.call(protocol, Rpc::CreateSession, request, &admin.token).await.str("/sessionId");
        let set = json!({ "sessionId": id, "metadata": metadata([("one-more", 1)]) });
        let outcome = server.call(protocol, Rpc::SetSession, set, &admin.token).await;
        refused(&outcome, "SESSION-InvalidMetadata", &["65 metadata keys", "at most 64"]);
        let set = json!({ "sessionId": id, "metadata": metadata([("k0", 0), ("one-more", 1)]) });
        server.call(protocol, Rpc::SetSession, set, &admin.token).await.ok();
    }
}

backend_test!(lifetimes_are_bounded_by_max_lifetime_secs);
async fn lifetimes_are_bounded_by_max_lifetime_secs(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    for protocol in Protocol::ALL {
        // 400 days is the default bound.
        let request = json!({ "checks": user_check(&admin.id), "lifetime": "34560000s" });
        let created = server.call(protocol, Rpc::CreateSession, request, &admin.token).await;
        let id = created.str("/sessionId");
        let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": id }), &admin.token).await;
        assert!(got.ok()["session"]["expirationDate"].is_string(), "[{protocol}] {got:?}");
        // Just over, and the ten thousand years proto3 allows: refused, on Create and on Set.
        for lifetime in ["34560001s", "34560000.000000001s", "315576000000s"] {
            let request = json!({ "checks": user_check(&admin.id), "lifetime": lifetime });
            let outcome = server.call(protocol, Rpc::CreateSession, request, &admin.token).await;
            refused(&outcome, "SESSION-InvalidLifetime", &["lifetime", "at most 34560000s"]);
            let request = json!({ "sessionId": id, "lifetime": lifetime });
            let outcome = server.call(protocol, Rpc::SetSession, request, &admin.token).await;
            refused(&outcome, "SESSION-InvalidLifetime", &["at most 34560000s"]);
        }
        let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": id }), &admin.token).await;
        assert_eq!(got.ok()["session"]["sequence"], "1", "[{protocol}] nothing changed: {got:?}");
    }
    assert_eq!(total(&server, &admin).await, Protocol::ALL.len().to_string());

    // An operator's own bound.
    let Some(server) = TestServer::on_with(backend, |c| c.limits.max_lifetime = Duration::from_secs(60)).await else {
        return;
    };
    let admin = self::admin(&server).await;
    for protocol in Protocol::ALL {
        let request = json!({ "checks": user_check(&admin.id), "lifetime": "60s" });
        server.call(protocol, Rpc::CreateSession, request, &admin.token).await.ok();
        let request = json!({ "checks": user_check(&admin.id), "lifetime": "61s" });
        let outcome = server.call(protocol, Rpc::CreateSession, request, &admin.token).await;
        refused(&outcome, "SESSION-InvalidLifetime", &["at most 60s, got 61s"]);
    }
}

backend_test!(a_stored_expiration_past_year_9999_still_renders_on_every_protocol);
async fn a_stored_expiration_past_year_9999_still_renders_on_every_protocol(backend: Backend) {
    let Some(mut server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    let id = server.create(Protocol::ConnectJson, &admin.id, &admin.token).await.id;
    // A time no request can set any more, written as an older server (or a hand edit) could have.
    server.stop().await;
    let store = store::open(&server.config.database, Default::default()).await.expect("open the store");
    let current = store.session(&id).await.expect("read").expect("the session");
    let mut next = current.clone();
    next.sequence += 1;
    next.expiration_date = Some(Timestamp(i64::MAX));
    let entry = HistoryEntry {
        session_id: id.clone(),
        sequence: next.sequence,
        at: Timestamp::now(),
        actor: admin.id.clone(),
        changes: vec![Change::LifetimeSet { expiration_date: Timestamp(i64::MAX) }],
    };
    store.update_session(&current, &next, &entry).await.expect("write");
    store.close().await;
    server.restart().await;

    for protocol in Protocol::ALL {
        let got = server.call(protocol, Rpc::GetSession, json!({ "sessionId": id }), &admin.token).await;
        assert_eq!(got.ok()["session"]["expirationDate"], "9999-12-31T23:59:59.999999Z", "[{protocol}] {got:?}");
        let listed = server.call(protocol, Rpc::ListSessions, json!({}), &admin.token).await;
        let sessions = &listed.ok()["sessions"];
        assert_eq!(sessions[0]["expirationDate"], "9999-12-31T23:59:59.999999Z", "[{protocol}] {listed:?}");
    }
}

backend_test!(user_agents_are_bounded_field_by_field_and_in_total);
async fn user_agents_are_bounded_field_by_field_and_in_total(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    let headers = |n: usize, values: usize, size: usize| -> Value {
        Value::Object((0..n).map(|i| (format!("h{i}"), json!({ "values": vec!["v".repeat(size); values] }))).collect())
    };
    let header = |name: String, size: usize| {
        Value::Object([(name, json!({ "values": ["v".repeat(size)] }))].into_iter().collect())
    };
    // Four headers `hN` of 4094-byte values: 16384 bytes in all, the bound.
    let at_total = headers(4, 1, 4094);
    let mut over_total = at_total.clone();
    over_total["h0"]["values"][0] = Value::String("v".repeat(4095));
    let accepted = [
        json!({ "fingerprintId": "f".repeat(200) }),
        json!({ "ip": "i".repeat(128) }),
        json!({ "description": "d".repeat(2048) }),
        json!({ "header": headers(32, 1, 8) }),
        json!({ "header": headers(1, 16, 8) }),
        json!({ "header": header("n".repeat(200), 4096) }),
        json!({ "header": at_total }),
    ];
    let refusals = [
        (json!({ "fingerprintId": "f".repeat(201) }), &["user_agent.fingerprint_id", "at most 200"][..]),
        (json!({ "fingerprintId": "fp\u{0}" }), &["user_agent.fingerprint_id", "control characters"]),
        (json!({ "ip": "i".repeat(129) }), &["user_agent.ip", "at most 128"]),
        (json!({ "description": "d".repeat(2049) }), &["user_agent.description", "at most 2048"]),
        (json!({ "header": headers(33, 1, 8) }), &["user_agent.header", "at most 32"]),
        (json!({ "header": headers(1, 17, 8) }), &["user_agent.header", "at most 16"]),
        (json!({ "header": header("n".repeat(201), 8) }), &["user_agent.header name", "at most 200"]),
        (json!({ "header": header("n".into(), 4097) }), &["user_agent.header", "at most 4096"]),
        (json!({ "header": over_total }), &["16385", "at most 16384"]),
    ];
    for protocol in Protocol::ALL {
        for agent in &accepted {
            let request = json!({ "checks": user_check(&admin.id), "userAgent": agent });
            server.call(protocol, Rpc::CreateSession, request, &admin.token).await.ok();
        }
        for (agent, named) in &refusals {
            let request = json!({ "checks": user_check(&admin.id), "userAgent": agent });
            let outcome = server.call(protocol, Rpc::CreateSession, request, &admin.token).await;
            refused(&outcome, "SESSION-InvalidUserAgent", named);
        }
    }
    assert_eq!(total(&server, &admin).await, (accepted.len() * Protocol::ALL.len()).to_string());
}

backend_test!(ids_names_and_query_strings_are_bounded_and_refuse_nul_and_control_characters);
async fn ids_names_and_query_strings_are_bounded_and_refuse_nul_and_control_characters(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    let longest = "u".repeat(200);
    let too_long = "u".repeat(201);
    for protocol in Protocol::ALL {
        for bad in ["a\0b", "a\u{7f}b", "tab\there"] {
            for rpc in [Rpc::GetSession, Rpc::SetSession, Rpc::DeleteSession] {
                let outcome = server.call(protocol, rpc, json!({ "sessionId": bad }), &admin.token).await;
                refused(&outcome, "SESSION-InvalidId", &["session_id", "control characters"]);
            }
            for (field, user) in [("user_id", json!({ "userId": bad })), ("login_name", json!({ "loginName": bad }))] {
                let request = json!({ "checks": { "user": user } });
                let outcome = server.call(protocol, Rpc::CreateSession, request, &admin.token).await;
                refused(&outcome, "SESSION-InvalidUserCheck", &[field, "control characters"]);
            }
            let queries = [
                ("user_id_query.id", json!({ "userIdQuery": { "id": bad } })),
                ("creator_query.id", json!({ "creatorQuery": { "id": bad } })),
                ("user_agent_query.fingerprint_id", json!({ "userAgentQuery": { "fingerprintId": bad } })),
                ("ids_query.ids", json!({ "idsQuery": { "ids": ["fine", bad] } })),
            ];
            for (field, query) in queries {
                let outcome =
                    server.call(protocol, Rpc::ListSessions, json!({ "queries": [query] }), &admin.token).await;
                refused(&outcome, "SESSION-InvalidQuery", &[field, "control characters"]);
            }
        }
        // 200 characters reach the store (and find nobody); 201 are refused before it.
        for user in [json!({ "userId": longest }), json!({ "loginName": longest })] {
            let request = json!({ "checks": { "user": user } });
            let outcome = server.call(protocol, Rpc::CreateSession, request, &admin.token).await;
            outcome.expect_error(Code::NotFound, "USER-NotFound");
        }
        for (field, user) in
            [("user_id", json!({ "userId": too_long })), ("login_name", json!({ "loginName": too_long }))]
        {
            let request = json!({ "checks": { "user": user } });
            let outcome = server.call(protocol, Rpc::CreateSession, request, &admin.token).await;
            refused(&outcome, "SESSION-InvalidUserCheck", &[field, "at most 200"]);
        }
        let query = json!({ "queries": [{ "creatorQuery": { "id": longest } }] });
        server.call(protocol, Rpc::ListSessions, query, &admin.token).await.ok();
        let query = json!({ "queries": [{ "creatorQuery": { "id": too_long } }] });
        let outcome = server.call(protocol, Rpc::ListSessions, query, &admin.token).await;
        refused(&outcome, "SESSION-InvalidQuery", &["creator_query.id", "at most 200"]);
    }
    assert_eq!(total(&server, &admin).await, "0", "no refusal made a session");
}

backend_test!(list_sessions_bounds_queries_ids_and_offset);
async fn list_sessions_bounds_queries_ids_and_offset(backend: Backend) {
    let Some(server) = TestServer::on(backend).await else { return };
    let admin = admin(&server).await;
    let session = server.create(Protocol::ConnectJson, &admin.id, &admin.token).await;
    // `n` ids, the session's own among them.
    let ids = |n: usize| -> Value {
        let mut ids: Vec<Value> = (1..n).map(|i| Value::String(format!("id-{i:05}"))).collect();
        ids.push(Value::String(session.id.clone()));
        json!({ "idsQuery": { "ids": ids } })
    };
    let user = json!({ "userIdQuery": { "id": admin.id } });
    for protocol in Protocol::ALL {
        // At the bounds: 20 queries, 1000 ids each (20,000 ids in one statement), offset 10,000.
        let cases = [
            (json!({ "queries": vec![user.clone(); 20] }), "1"),
            (json!({ "queries": [ids(1000)] }), "1"),
            (json!({ "queries": vec![ids(1000); 20] }), "1"),
            (json!({ "query": { "offset": "10000" } }), "1"),
        ];
        for (request, matches) in cases {
            let listed = server.call(protocol, Rpc::ListSessions, request, &admin.token).await;
            assert_eq!(listed.ok()["details"]["totalResult"], matches, "[{protocol}] {listed:?}");
        }
        // Just over, and what the attack sent: 40,000 ids, 1,000 queries.
        let refusals = [
            (json!({ "queries": vec![user.clone(); 21] }), "SESSION-InvalidQuery", &["queries", "at most 20"][..]),
            (json!({ "queries": vec![user.clone(); 1000] }), "SESSION-InvalidQuery", &["at most 20"]),
            (json!({ "queries": [ids(1001)] }), "SESSION-InvalidQuery", &["ids_query.ids", "at most 1000"]),
            (json!({ "queries": [ids(40_000)] }), "SESSION-InvalidQuery", &["at most 1000"]),
            (json!({ "query": { "offset": "10001" } }), "SESSION-OffsetTooLarge", &["query.offset", "at most 10000"]),
            (json!({ "query": { "offset": u64::MAX.to_string() } }), "SESSION-OffsetTooLarge", &["at most 10000"]),
        ];
        for (request, id, named) in refusals {
            let outcome = server.call(protocol, Rpc::ListSessions, request, &admin.token).await;
            refused(&outcome, id, named);
        }
    }
}

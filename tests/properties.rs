//! Property tests: the TOTP window (RFC 6238, one step of skew each way) and token rotation (only
//! the newest session token ever works; the sequence counts exactly the calls that changed the
//! session), the latter through the domain over a real SQLite store.

use std::{collections::BTreeMap, sync::Arc};

use proptest::prelude::*;
use sessiond::{
    domain::{
        Caller, ErrorClass, Permission, Permissions,
        keyring::Keyring,
        password::PasswordHasher,
        secrets::Secrets,
        session::{CreateSession, Sessions, SetSession},
        token::Secret,
        totp,
    },
    store,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A code is accepted exactly within one step of the current one (a code that also happens
    /// to be the code of a step inside the window is, correctly, accepted for that step).
    #[test]
    fn totp_accepts_exactly_the_skew_window(secret in proptest::collection::vec(any::<u8>(), 10..40), now in 1_000i64..10_000_000_000, offset in -4i64..=4) {
        let now_step = totp::step_at(now);
        let code = totp::code_for_step(&secret, now_step + offset);
        let window: Vec<i64> = (now_step - 1..=now_step + 1).collect();
        let expected = window.iter().copied().find(|s| totp::code_for_step(&secret, *s) == code);
        prop_assert_eq!(totp::matching_step(&secret, &code, now_step), expected);
        if offset.abs() <= 1 {
            prop_assert!(expected.is_some());
        }
    }

    /// Malformed codes never match.
    #[test]
    fn totp_refuses_malformed_codes(secret in proptest::collection::vec(any::<u8>(), 20..21), code in "[0-9a-z]{0,8}") {
        prop_assume!(!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())));
        prop_assert_eq!(totp::matching_step(&secret, &code, 1000), None);
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// SetSession changing metadata (a change: rotates the token).
    Change(u8),
    /// SetSession changing nothing (no new token).
    Noop,
    /// GetSession with the token issued `age` rotations ago (0 = current).
    GetWith(usize),
    /// GetSession with a token that was never issued.
    GetWithForeign,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<u8>().prop_map(Op::Change),
        Just(Op::Noop),
        (0usize..4).prop_map(Op::GetWith),
        Just(Op::GetWithForeign)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn only_the_newest_token_works_and_sequence_counts_changes(ops in proptest::collection::vec(op(), 1..24)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let dir = tempfile::tempdir().unwrap();
            let store = store::open(&format!("sqlite:{}", dir.path().join("p.db").display()), Default::default()).await.unwrap();
            let keyring = Keyring::parse(&Keyring::generate_line(None).unwrap()).unwrap();
            let secrets = Secrets::unlock(Arc::clone(&store), keyring).await.unwrap();
            let sessions = Sessions::new(Arc::clone(&store), PasswordHasher::default(), Default::default(), secrets);
            // A caller with no permissions at all: only tokens can open the session.
            let writer = Caller { user_id: "w".into(), org_id: "o".into(), token_id: "t".into(), permissions: [Permission::SessionWrite].into_iter().collect() };
            let nobody = Caller { permissions: Permissions::default(), ..writer.clone() };
            let created = sessions.create(&writer, CreateSession::default()).await.unwrap();
            let id = created.session_id.clone();
            let mut issued = vec![created.token.unwrap().expose().to_owned()];
            let mut expected_sequence = 1u64;
            let mut value = None;
            for op in ops {
                match op {
                    Op::Change(v) => {
                        let next = if value == Some(v) { v.wrapping_add(1) } else { v };
                        value = Some(next);
                        let set = SetSession {
                            session_id: id.clone(),
                            token: Some(Secret::new(issued.last().unwrap().clone())),
                            metadata: BTreeMap::from([("k".to_owned(), vec![next])]),
                            ..SetSession::default()
                        };
                        let out = sessions.set(&nobody, set).await.unwrap();
                        expected_sequence += 1;
                        assert_eq!(out.details.sequence, expected_sequence);
                        let token = out.token.expect("a change issues a token").expose().to_owned();
                        assert!(!issued.contains(&token), "tokens are never reused");
                        issued.push(token);
                    }
                    Op::Noop => {
                        let set = SetSession { session_id: id.clone(), token: Some(Secret::new(issued.last().unwrap().clone())), ..SetSession::default() };
                        let out = sessions.set(&nobody, set).await.unwrap();
                        assert!(out.token.is_none(), "nothing changed, no token");
                        assert_eq!(out.details.sequence, expected_sequence);
                    }
                    Op::GetWith(age) => {
                        let Some(token) = issued.iter().rev().nth(age) else { continue };
                        let result = sessions.get(&nobody, &id, Some(token)).await;
                        if age == 0 {
                            assert_eq!(result.unwrap().sequence, expected_sequence);
                        } else {
                            assert_eq!(result.unwrap_err().class, ErrorClass::PermissionDenied, "a rotated-out token");
                        }
                    }
                    Op::GetWithForeign => {
                        let result = sessions.get(&nobody, &id, Some("never-issued")).await;
                        assert_eq!(result.unwrap_err().class, ErrorClass::PermissionDenied);
                    }
                }
            }
            let history = sessions.history(&id).await.unwrap();
            let sequences: Vec<u64> = history.iter().map(|h| h.sequence).collect();
            assert_eq!(sequences, (1..=expected_sequence).collect::<Vec<_>>(), "history is gapless");
            store.close().await;
        });
    }
}

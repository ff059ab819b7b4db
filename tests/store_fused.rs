//! The stores' fused calls, on every backend: the token row is read in the same step as the call's
//! own rows, the decision runs on what that step read, and nothing is written for a token that is
//! revoked, expired or whose user is disabled (through the store, as the CLI does), nor for a
//! refused termination or creation.

#[path = "common/backend.rs"]
mod backend;
#[macro_use]
#[path = "common/stores.rs"]
mod stores;

use std::{collections::BTreeMap, sync::Arc};

use sessiond::{
    domain::{
        Error, Permission, Timestamp,
        port::StoreError,
        port::{AuthorizedTermination, SessionBuild, TerminationCheck},
        session::{Change, Factors, HistoryEntry, Session, UserAgent, UserCheck, UserFactor},
        token::{ApiToken, SecretHash},
        user::{ApiTokenRecord, User, UserState, authenticated},
    },
    store::{Store, Termination},
};

on_every_store!(
    token_and_session_are_read_together,
    termination_decides_on_the_token_as_stored_and_writes_nothing_refused,
    creation_decides_on_the_token_and_user_as_stored_and_writes_nothing_refused,
    concurrent_fused_writes_each_get_their_own_answer,
);

const NOW: Timestamp = Timestamp(50_000);

fn user(id: &str) -> User {
    User {
        id: id.into(),
        login_name: format!("{id}-login"),
        display_name: format!("{id} display"),
        org_id: "org".into(),
        state: UserState::Active,
        password_hash: None,
        failed_attempts: 0,
        locked: false,
        otp_failed_attempts: 0,
        otp_locked: false,
        email: None,
        phone: None,
        otp_email: false,
        otp_sms: false,
        totp: None,
        created_at: Timestamp(1_000),
    }
}

/// A token of `user_id`'s, stored, with every session permission; expiring at `expires_at`.
async fn token(store: &Arc<dyn Store>, user_id: &str, expires_at: Option<Timestamp>) -> ApiToken {
    let token = ApiToken::generate();
    let permissions = [Permission::SessionRead, Permission::SessionWrite, Permission::SessionDelete];
    let record = ApiTokenRecord {
        id: token.id.clone(),
        user_id: user_id.into(),
        secret_hash: token.secret.hash(),
        permissions: permissions.into_iter().collect(),
        expires_at,
        revoked_at: None,
        created_at: Timestamp(1_000),
    };
    store.insert_api_token(&record).await.expect("insert token");
    token
}

fn session(id: &str, user: Option<&str>) -> Session {
    let factors = Factors {
        user: user.map(|u| UserFactor {
            id: u.into(),
            login_name: format!("{u}-login"),
            display_name: format!("{u} display"),
            org_id: "org".into(),
            verified_at: Timestamp(1_000),
        }),
        ..Factors::default()
    };
    Session {
        id: id.into(),
        resource_owner: "org".into(),
        creator_id: "creator".into(),
        creation_date: Timestamp(1_000),
        change_date: Timestamp(1_000),
        sequence: 1,
        token_hash: SecretHash([1; 32]),
        factors,
        metadata: BTreeMap::new(),
        user_agent: UserAgent::default(),
        expiration_date: None,
        terminated_at: None,
        otp_challenges: Default::default(),
        passkey_challenge: None,
    }
}

fn first_entry(session: &Session, actor: &str) -> HistoryEntry {
    HistoryEntry {
        session_id: session.id.clone(),
        sequence: 1,
        at: session.creation_date,
        actor: actor.into(),
        changes: vec![Change::Created],
    }
}

/// The domain's decision for a termination: the token must authenticate; anyone may terminate.
fn decide(token: &ApiToken) -> AuthorizedTermination {
    let token = token.clone();
    Box::new(move |row| {
        let caller = authenticated(&token, row, NOW)?;
        Ok((caller, Box::new(|_: &Session| Ok(())) as TerminationCheck))
    })
}

/// The domain's decision for a creation: the token must authenticate and the user exist.
fn build(token: &ApiToken, id: &str) -> SessionBuild {
    let (token, id) = (token.clone(), id.to_owned());
    Box::new(move |row, user| {
        let caller = authenticated(&token, row, NOW)?;
        let user = user.ok_or_else(|| Error::not_found("USER-NotFound", "no such user"))?;
        let mut made = session(&id, Some(&user.id));
        made.creator_id = caller.user_id.clone();
        let entry = first_entry(&made, &caller.user_id);
        Ok((made, entry))
    })
}

fn refused_id(answer: &Result<Session, Error>) -> &str {
    answer.as_ref().err().map_or("written", |e| e.id)
}

async fn token_and_session_are_read_together(store: Arc<dyn Store>) {
    store.insert_user(&user("u1")).await.unwrap();
    let t = token(&store, "u1", None).await;
    let s = session("s1", Some("u1"));
    store.create_session(&s, &first_entry(&s, "u1")).await.unwrap();

    let (row, found) = store.token_and_session(&t.id, "s1").await.unwrap();
    let (record, owner) = row.expect("the token is found");
    assert_eq!((record.id.as_str(), owner.id.as_str(), record.secret_hash), (t.id.as_str(), "u1", t.secret.hash()));
    assert_eq!(found, Some(s.clone()));
    let (row, found) = store.token_and_session("nope", "s1").await.unwrap();
    assert_eq!((row, found), (None, Some(s)));
    let (row, found) = store.token_and_session(&t.id, "nope").await.unwrap();
    assert_eq!((row.is_some(), found), (true, None));
}

async fn termination_decides_on_the_token_as_stored_and_writes_nothing_refused(store: Arc<dyn Store>) {
    for id in ["u1", "u2"] {
        store.insert_user(&user(id)).await.unwrap();
    }
    let s = session("s1", Some("u1"));
    store.create_session(&s, &first_entry(&s, "u1")).await.unwrap();
    let revoked = token(&store, "u1", None).await;
    store.revoke_api_token(&revoked.id, Timestamp(2_000)).await.unwrap();
    let expired = token(&store, "u1", Some(NOW)).await;
    let disabled = token(&store, "u2", None).await;
    store.set_user_state("u2", UserState::Inactive).await.unwrap();
    let wrong_secret = ApiToken { secret: ApiToken::generate().secret, ..token(&store, "u1", None).await };

    for (what, t) in [("revoked", &revoked), ("expired", &expired), ("disabled", &disabled), ("wrong", &wrong_secret)] {
        let answer = store.terminate_session_as(&t.id, "s1", NOW, decide(t)).await.unwrap();
        assert!(matches!(&answer, Termination::Refused(e) if e.id == "AUTH-InvalidToken"), "{what}: {answer:?}");
        assert_eq!(store.session("s1").await.unwrap(), Some(s.clone()), "{what}: nothing written");
        assert_eq!(store.session_history("s1").await.unwrap().len(), 1, "{what}: no history");
    }
    // A refused token is refused before the session is looked at.
    let answer = store.terminate_session_as(&revoked.id, "nope", NOW, decide(&revoked)).await.unwrap();
    assert!(matches!(&answer, Termination::Refused(e) if e.id == "AUTH-InvalidToken"), "{answer:?}");

    let valid = token(&store, "u1", None).await;
    let answer = store.terminate_session_as(&valid.id, "nope", NOW, decide(&valid)).await.unwrap();
    assert!(matches!(answer, Termination::NotFound), "{answer:?}");
    let Termination::Terminated(done) = store.terminate_session_as(&valid.id, "s1", NOW, decide(&valid)).await.unwrap()
    else {
        panic!("not terminated")
    };
    assert_eq!((done.sequence, done.terminated_at), (2, Some(NOW)));
    assert_eq!(store.session("s1").await.unwrap(), Some(done.clone()));
    let history = store.session_history("s1").await.unwrap();
    assert_eq!(
        (history.len(), history[1].actor.as_str(), history[1].changes.clone()),
        (2, "u1", vec![Change::Terminated])
    );
    let again = store.terminate_session_as(&valid.id, "s1", NOW, decide(&valid)).await.unwrap();
    assert!(matches!(&again, Termination::AlreadyTerminated(t) if *t == done), "{again:?}");

    // Revoked through the store, as the CLI does: refused on the very next call.
    let s2 = session("s2", Some("u1"));
    store.create_session(&s2, &first_entry(&s2, "u1")).await.unwrap();
    store.revoke_api_token(&valid.id, NOW).await.unwrap();
    let answer = store.terminate_session_as(&valid.id, "s2", NOW, decide(&valid)).await.unwrap();
    assert!(matches!(&answer, Termination::Refused(e) if e.id == "AUTH-InvalidToken"), "{answer:?}");
    assert_eq!(store.session("s2").await.unwrap(), Some(s2));
}

async fn creation_decides_on_the_token_and_user_as_stored_and_writes_nothing_refused(store: Arc<dyn Store>) {
    store.insert_user(&user("u1")).await.unwrap();
    let valid = token(&store, "u1", None).await;
    let by_name = UserCheck::ByLoginName("u1-login".into());
    let by_id = UserCheck::ById("u1".into());

    let nobody = UserCheck::ByLoginName("nobody".into());
    let answer = store.create_session_as(&valid.id, Some(&nobody), NOW, build(&valid, "s0")).await.unwrap();
    assert_eq!(refused_id(&answer), "USER-NotFound");
    assert_eq!(store.session("s0").await.unwrap(), None, "nothing written");

    let made = store.create_session_as(&valid.id, Some(&by_name), NOW, build(&valid, "s1")).await.unwrap();
    let made = made.expect("created");
    assert_eq!(made.user_id(), Some("u1"));
    assert_eq!(store.session("s1").await.unwrap(), Some(made.clone()));
    assert_eq!(store.session_history("s1").await.unwrap(), vec![first_entry(&made, "u1")]);
    let made = store.create_session_as(&valid.id, Some(&by_id), NOW, build(&valid, "s2")).await.unwrap();
    assert_eq!(made.expect("created").user_id(), Some("u1"));

    let expired = token(&store, "u1", Some(NOW)).await;
    let answer = store.create_session_as(&expired.id, Some(&by_id), NOW, build(&expired, "s3")).await.unwrap();
    assert_eq!(refused_id(&answer), "AUTH-InvalidToken");
    // Revoked and disabled through the store, as the CLI does: refused on the very next call.
    store.revoke_api_token(&valid.id, NOW).await.unwrap();
    let answer = store.create_session_as(&valid.id, Some(&by_id), NOW, build(&valid, "s4")).await.unwrap();
    assert_eq!(refused_id(&answer), "AUTH-InvalidToken");
    let other = token(&store, "u1", None).await;
    store.set_user_state("u1", UserState::Inactive).await.unwrap();
    let answer = store.create_session_as(&other.id, None, NOW, build(&other, "s5")).await.unwrap();
    assert_eq!(refused_id(&answer), "AUTH-InvalidToken");
    for id in ["s3", "s4", "s5"] {
        assert_eq!(store.session(id).await.unwrap(), None, "{id}: nothing written");
        assert!(store.session_history(id).await.unwrap().is_empty(), "{id}: no history");
    }
}

/// Hundreds of fused writes at once (the PostgreSQL store writes concurrent ones together, as one
/// statement): each call gets the answer a call alone would have had. Every session ends exactly
/// once, with one history entry for it; every new session is written with its first entry; and a
/// creation whose id is taken fails alone, without failing the creations written beside it.
async fn concurrent_fused_writes_each_get_their_own_answer(store: Arc<dyn Store>) {
    const SESSIONS: usize = 60;
    const RACERS: usize = 4;
    store.insert_user(&user("u1")).await.unwrap();
    let t = token(&store, "u1", None).await;
    for n in 0..SESSIONS {
        let s = session(&format!("old{n:03}"), Some("u1"));
        store.create_session(&s, &first_entry(&s, "u1")).await.unwrap();
    }
    let by_id = UserCheck::ById("u1".into());
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..SESSIONS {
        for _ in 0..RACERS {
            let (store, t, id) = (store.clone(), t.clone(), format!("old{n:03}"));
            calls.spawn(async move {
                let answer = store.terminate_session_as(&t.id, &id, NOW, decide(&t)).await;
                (id, format!("{answer:?}"), matches!(answer, Ok(Termination::Terminated(_))))
            });
        }
        // A new session, and every tenth time one whose id is taken.
        let new = if n % 10 == 0 { format!("old{n:03}") } else { format!("new{n:03}") };
        let (store, t, by_id) = (store.clone(), t.clone(), by_id.clone());
        calls.spawn(async move {
            let answer = store.create_session_as(&t.id, Some(&by_id), NOW, build(&t, &new)).await;
            let made = matches!(answer, Ok(Ok(_)));
            (format!("create {new}"), format!("{answer:?}"), made)
        });
    }
    let mut terminated = BTreeMap::<String, usize>::new();
    while let Some(done) = calls.join_next().await {
        let (what, answer, written) = done.unwrap();
        if let Some(new) = what.strip_prefix("create ") {
            if new.starts_with("old") {
                assert!(!written && answer.contains("AlreadyExists"), "{what}: {answer}");
            } else {
                assert!(written, "{what}: {answer}");
            }
            continue;
        }
        // A racer that lost answers that it ended already (or, after its retries, a conflict).
        let lost = answer.contains("AlreadyTerminated") || answer.contains(&format!("{:?}", StoreError::Conflict));
        assert!(written || lost, "{what}: {answer}");
        *terminated.entry(what).or_default() += usize::from(written);
    }
    assert_eq!(terminated.len(), SESSIONS);
    for n in 0..SESSIONS {
        let id = format!("old{n:03}");
        assert_eq!(terminated[&id], 1, "{id} ended exactly once");
        let ended = store.session(&id).await.unwrap().expect("still stored");
        assert_eq!((ended.sequence, ended.terminated_at, ended.creator_id.as_str()), (2, Some(NOW), "creator"), "{id}");
        let history = store.session_history(&id).await.unwrap();
        let changes: Vec<_> = history.iter().map(|e| (e.sequence, e.changes.clone())).collect();
        assert_eq!(changes, vec![(1, vec![Change::Created]), (2, vec![Change::Terminated])], "{id}");
        if n % 10 != 0 {
            let id = format!("new{n:03}");
            let made = store.session(&id).await.unwrap().expect("created");
            assert_eq!((made.user_id(), made.sequence, made.terminated_at), (Some("u1"), 1, None), "{id}");
            assert_eq!(store.session_history(&id).await.unwrap(), vec![first_entry(&made, "u1")], "{id}");
        }
    }
}

//! One store suite, every backend: each behaviour of the `Store` trait is written once as a
//! function over `Arc<dyn Store>` and instantiated for SQLite and PostgreSQL (the latter only when
//! `SESSIOND_TEST_POSTGRES` is set; each test gets a schema of its own).

#[path = "common/backend.rs"]
mod backend;
#[macro_use]
#[path = "common/stores.rs"]
mod stores;

use std::{collections::BTreeMap, sync::Arc};

use sessiond::{
    domain::{
        Permissions, Timestamp,
        keyring::SealedSecret,
        otp::OtpChallenge,
        secrets::KeyCheck,
        session::{
            Change, Factors, HistoryEntry, Session, SessionQuery, TimeComparison, UserAgent, UserFactor, WebAuthnFactor,
        },
        token::SecretHash,
        user::{ApiTokenRecord, Claim, LockoutCounter, TokenHolder, TotpEnrolment, User, UserState},
    },
    store::{SessionFilter, Store, StoreError, Termination},
};

on_every_store!(
    users_round_trip,
    duplicate_login_name_is_already_exists,
    users_list_in_byte_order,
    tokens_round_trip_and_revoke,
    admin_writes_change_only_their_own_columns,
    claims_lock_at_max_and_successes_clear_them,
    counters_lock_apart_and_unlock_together,
    concurrent_claims_admit_exactly_max,
    totp_steps_are_used_once,
    key_checks_keep_the_first_verifier_of_each_key,
    resealing_replaces_only_the_secret_it_read,
    session_create_read_update_with_history,
    duplicate_session_id_is_already_exists,
    update_with_stale_sequence_conflicts,
    updates_keep_what_they_do_not_change_and_move_what_they_do,
    concurrent_updates_have_one_winner_per_sequence,
    terminate_reads_checks_and_writes_once,
    list_filters_by_each_query,
    list_expiration_rules,
    list_orders_pages_and_counts,
    list_shows_only_live_visible_sessions,
    sweep_removes_ended_rows_and_keeps_history,
    history_sweep_removes_old_entries_in_bounded_steps,
    sweep_removes_the_earliest_ended_in_bounded_steps,
    closed_store_is_unavailable,
);

// ---- records ----

fn user(id: &str, login_name: &str) -> User {
    User {
        id: id.into(),
        login_name: login_name.into(),
        display_name: format!("{login_name} display"),
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

fn token(id: &str, user_id: &str, created_at: i64) -> ApiTokenRecord {
    ApiTokenRecord {
        id: id.into(),
        user_id: user_id.into(),
        secret_hash: SecretHash([7; 32]),
        permissions: Permissions::from_bits(3),
        expires_at: Some(Timestamp(99_000)),
        revoked_at: None,
        created_at: Timestamp(created_at),
    }
}

fn session(id: &str, creation: i64) -> Session {
    Session {
        id: id.into(),
        resource_owner: "org".into(),
        creator_id: "creator".into(),
        creation_date: Timestamp(creation),
        change_date: Timestamp(creation),
        sequence: 1,
        token_hash: SecretHash([1; 32]),
        factors: Factors::default(),
        metadata: BTreeMap::new(),
        user_agent: UserAgent::default(),
        expiration_date: None,
        terminated_at: None,
        otp_challenges: Default::default(),
        passkey_challenge: None,
    }
}

fn entry(session: &Session, changes: Vec<Change>) -> HistoryEntry {
    HistoryEntry {
        session_id: session.id.clone(),
        sequence: session.sequence,
        at: session.change_date,
        actor: "actor".into(),
        changes,
    }
}

async fn create(store: &Arc<dyn Store>, s: &Session) {
    store.create_session(s, &entry(s, vec![Change::Created])).await.expect("create session");
}

fn filter(queries: Vec<SessionQuery>) -> SessionFilter {
    SessionFilter { queries, visible_to_user: None, live_at: Timestamp(0), offset: 0, limit: 100, ascending: true }
}

async fn listed_ids(store: &Arc<dyn Store>, f: &SessionFilter) -> Vec<String> {
    store.list_sessions(f).await.expect("list sessions").1.into_iter().map(|s| s.id).collect()
}

// ---- users ----

async fn users_round_trip(store: Arc<dyn Store>) {
    let mut alice = user("u1", "alice");
    alice.password_hash = Some("$argon2id$v=19$...".into());
    store.insert_user(&alice).await.unwrap();
    assert_eq!(store.user_by_id("u1").await.unwrap(), Some(alice.clone()));
    assert_eq!(store.user_by_login_name("alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(store.user_by_id("nobody").await.unwrap(), None);
    assert_eq!(store.user_by_login_name("nobody").await.unwrap(), None);

    let mut bob = user("u2", "bob");
    (bob.failed_attempts, bob.locked, bob.otp_failed_attempts, bob.otp_locked) = (2, true, 3, true);
    // Sealed secrets are opaque bytes to the store: every byte value comes back as written.
    let sealed = SealedSecret::from_bytes((0..=255).collect());
    bob.totp = Some(TotpEnrolment { sealed: sealed.clone(), last_used_step: Some(42) });
    store.insert_user(&bob).await.unwrap();
    let read = store.user_by_id("u2").await.unwrap().unwrap();
    assert_eq!(read, bob);
    assert_eq!(read.totp.as_ref().unwrap().sealed, sealed);
    assert_eq!(read.totp.as_ref().unwrap().last_used_step, Some(42));
}

/// Each administrative write changes its own columns and nothing a concurrent check wrote meanwhile
/// (a claimed attempt, a used TOTP step); each tells whether the user exists.
async fn admin_writes_change_only_their_own_columns(store: Arc<dyn Store>) {
    let mut alice = user("u1", "alice");
    alice.password_hash = Some("old".into());
    store.insert_user(&alice).await.unwrap();
    store
        .set_totp("u1", &TotpEnrolment { sealed: SealedSecret::from_bytes(vec![9; 20]), last_used_step: None })
        .await
        .unwrap();
    assert_eq!(store.claim_attempt("u1", LockoutCounter::Password, 5).await.unwrap(), Some(Claim::Admitted(1)));
    assert_eq!(store.claim_attempt("u1", LockoutCounter::OneTimeCode, 5).await.unwrap(), Some(Claim::Admitted(1)));
    assert!(store.consume_totp_step("u1", 77).await.unwrap());

    assert!(store.set_user_state("u1", UserState::Inactive).await.unwrap());
    let read = store.user_by_id("u1").await.unwrap().unwrap();
    assert_eq!(read.state, UserState::Inactive);
    assert_eq!((read.failed_attempts, read.otp_failed_attempts), (1, 1), "the state change kept the counters");
    assert_eq!(read.totp.as_ref().unwrap().last_used_step, Some(77), "and the used step");

    assert!(store.set_password_hash("u1", "new").await.unwrap());
    let read = store.user_by_id("u1").await.unwrap().unwrap();
    assert_eq!(read.password_hash.as_deref(), Some("new"));
    assert_eq!((read.failed_attempts, read.otp_failed_attempts), (0, 1), "a new password clears its own counter");
    assert_eq!(read.state, UserState::Inactive);
    assert_eq!(read.totp.as_ref().unwrap().last_used_step, Some(77));

    let enrolment = TotpEnrolment { sealed: SealedSecret::from_bytes(vec![8; 20]), last_used_step: None };
    assert!(store.set_totp("u1", &enrolment).await.unwrap());
    let read = store.user_by_id("u1").await.unwrap().unwrap();
    assert_eq!(read.totp, Some(enrolment));
    assert_eq!((read.password_hash.as_deref(), read.otp_failed_attempts), (Some("new"), 1));

    assert!(!store.set_user_state("nobody", UserState::Active).await.unwrap());
    assert!(!store.set_password_hash("nobody", "x").await.unwrap());
    assert!(!store.unlock_user("nobody").await.unwrap());
    assert!(
        !store
            .set_totp("nobody", &TotpEnrolment { sealed: SealedSecret::from_bytes(vec![1]), last_used_step: None })
            .await
            .unwrap()
    );
    assert_eq!(store.claim_attempt("nobody", LockoutCounter::Password, 5).await.unwrap(), None);
}

async fn key_checks_keep_the_first_verifier_of_each_key(store: Arc<dyn Store>) {
    let check = |id: &str, byte: u8| KeyCheck {
        key_id: id.into(),
        verifier: SealedSecret::from_bytes(vec![byte; 60]),
        created_at: Timestamp(1_700_000_000_000_000),
    };
    assert_eq!(store.key_checks().await.unwrap(), vec![]);
    store.insert_key_check(&check("k2", 1)).await.unwrap();
    store.insert_key_check(&check("k2", 2)).await.unwrap();
    store.insert_key_check(&check("k1", 3)).await.unwrap();
    assert_eq!(store.key_checks().await.unwrap(), vec![check("k1", 3), check("k2", 1)], "the first verifier stays");
    assert!(store.remove_key_check("k2").await.unwrap());
    assert!(!store.remove_key_check("k2").await.unwrap());
    assert_eq!(store.key_checks().await.unwrap(), vec![check("k1", 3)]);
}

async fn resealing_replaces_only_the_secret_it_read(store: Arc<dyn Store>) {
    let old = SealedSecret::from_bytes(vec![1; 50]);
    let new = SealedSecret::from_bytes(vec![2; 50]);
    let mut alice = user("u1", "alice");
    alice.totp = Some(TotpEnrolment { sealed: old.clone(), last_used_step: Some(7) });
    store.insert_user(&alice).await.unwrap();
    assert!(!store.reseal_totp_secret("u1", &new, &old).await.unwrap(), "the row does not hold `new`");
    assert!(store.reseal_totp_secret("u1", &old, &new).await.unwrap());
    assert!(!store.reseal_totp_secret("u1", &old, &new).await.unwrap(), "a second reseal of `old` misses");
    let read = store.user_by_id("u1").await.unwrap().unwrap().totp.unwrap();
    assert_eq!((read.sealed, read.last_used_step), (new, Some(7)), "the replay guard stays");
    assert!(store.clear_totp_secrets().await.unwrap().is_empty(), "nothing is written in clear");
}

async fn duplicate_login_name_is_already_exists(store: Arc<dyn Store>) {
    store.insert_user(&user("u1", "alice")).await.unwrap();
    let error = store.insert_user(&user("u2", "alice")).await.unwrap_err();
    assert_eq!(error, StoreError::AlreadyExists("login name `alice` is taken".into()));
    assert_eq!(store.user_by_id("u2").await.unwrap(), None);
}

async fn users_list_in_byte_order(store: Arc<dyn Store>) {
    for (i, name) in ["b", "_x", "a", "B", "Ab"].iter().enumerate() {
        store.insert_user(&user(&format!("u{i}"), name)).await.unwrap();
    }
    let names: Vec<String> = store.list_users().await.unwrap().into_iter().map(|u| u.login_name).collect();
    assert_eq!(names, ["Ab", "B", "_x", "a", "b"]);
}

// ---- API tokens ----

async fn tokens_round_trip_and_revoke(store: Arc<dyn Store>) {
    store.insert_user(&user("u1", "alice")).await.unwrap();
    store.insert_user(&user("u2", "bob")).await.unwrap();
    let t1 = token("t1", "u1", 10);
    let t2 = token("t2", "u2", 20);
    let t3 = token("t3", "u1", 30);
    for t in [&t3, &t1, &t2] {
        store.insert_api_token(t).await.unwrap();
    }
    let (read, owner) = store.api_token("t1").await.unwrap().unwrap();
    assert_eq!(read, t1);
    // Of the user, only what authentication needs travels with the token.
    assert_eq!(owner, TokenHolder { id: "u1".into(), org_id: "org".into(), state: UserState::Active });
    assert_eq!(store.api_token("nope").await.unwrap(), None);

    let all: Vec<String> = store.list_api_tokens(None).await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(all, ["t1", "t2", "t3"]);
    let alices: Vec<String> = store.list_api_tokens(Some("u1")).await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(alices, ["t1", "t3"]);

    assert!(store.revoke_api_token("t1", Timestamp(500)).await.unwrap());
    // Revoking again keeps the first revocation time.
    assert!(store.revoke_api_token("t1", Timestamp(600)).await.unwrap());
    assert_eq!(store.api_token("t1").await.unwrap().unwrap().0.revoked_at, Some(Timestamp(500)));
    assert!(!store.revoke_api_token("nope", Timestamp(500)).await.unwrap());

    // The token's user is read with it, so a disabled user shows at once.
    assert!(store.set_user_state("u1", UserState::Inactive).await.unwrap());
    assert_eq!(store.api_token("t3").await.unwrap().unwrap().1.state, UserState::Inactive);
}

// ---- password failures and TOTP ----

async fn claims_lock_at_max_and_successes_clear_them(store: Arc<dyn Store>) {
    use LockoutCounter::Password;
    store.insert_user(&user("u1", "alice")).await.unwrap();
    assert_eq!(store.claim_attempt("u1", Password, 3).await.unwrap(), Some(Claim::Admitted(1)));
    store.clear_attempts("u1", Password).await.unwrap();
    assert_eq!(store.user_by_id("u1").await.unwrap().unwrap().failed_attempts, 0, "a success clears the count");
    for attempt in 1..=3 {
        assert_eq!(store.claim_attempt("u1", Password, 3).await.unwrap(), Some(Claim::Admitted(attempt)));
    }
    let read = store.user_by_id("u1").await.unwrap().unwrap();
    assert_eq!((read.failed_attempts, read.locked), (3, true), "the claim that reached the limit locked");
    assert_eq!(store.claim_attempt("u1", Password, 3).await.unwrap(), Some(Claim::Refused(3)));
    // A higher limit elsewhere (another process's flag) does not lift a lock.
    assert_eq!(store.claim_attempt("u1", Password, 10).await.unwrap(), Some(Claim::Refused(3)));

    // The claim that locked was itself a success (settled after the lock): the lock it set goes.
    store.clear_attempts("u1", Password).await.unwrap();
    let read = store.user_by_id("u1").await.unwrap().unwrap();
    assert_eq!((read.failed_attempts, read.locked), (0, false));
    assert_eq!(store.claim_attempt("u1", Password, 3).await.unwrap(), Some(Claim::Admitted(1)));
}

async fn counters_lock_apart_and_unlock_together(store: Arc<dyn Store>) {
    use LockoutCounter::{OneTimeCode, Password};
    store.insert_user(&user("u1", "alice")).await.unwrap();
    assert_eq!(store.claim_attempt("u1", Password, 5).await.unwrap(), Some(Claim::Admitted(1)));
    for attempt in 1..=2 {
        assert_eq!(store.claim_attempt("u1", OneTimeCode, 2).await.unwrap(), Some(Claim::Admitted(attempt)));
    }
    let read = store.user_by_id("u1").await.unwrap().unwrap();
    assert_eq!((read.failed_attempts, read.locked, read.otp_failed_attempts, read.otp_locked), (1, false, 2, true));
    // A user locked by either counter is locked for every check.
    assert_eq!(store.claim_attempt("u1", Password, 5).await.unwrap(), Some(Claim::Refused(1)));
    assert_eq!(store.claim_attempt("u1", OneTimeCode, 2).await.unwrap(), Some(Claim::Refused(2)));
    // A password success clears only its own counter.
    store.clear_attempts("u1", Password).await.unwrap();
    assert_eq!(store.claim_attempt("u1", OneTimeCode, 2).await.unwrap(), Some(Claim::Refused(2)));

    assert!(store.unlock_user("u1").await.unwrap());
    let read = store.user_by_id("u1").await.unwrap().unwrap();
    assert_eq!((read.failed_attempts, read.locked, read.otp_failed_attempts, read.otp_locked), (0, false, 0, false));
    assert_eq!(store.claim_attempt("u1", OneTimeCode, 2).await.unwrap(), Some(Claim::Admitted(1)));
}

/// Hundreds of concurrent claims: exactly `max` are admitted, with the attempt numbers 1..=max.
async fn concurrent_claims_admit_exactly_max(store: Arc<dyn Store>) {
    store.insert_user(&user("u1", "alice")).await.unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.claim_attempt("u1", LockoutCounter::Password, 10).await.unwrap() })
        })
        .collect();
    let mut admitted = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Some(Claim::Admitted(n)) => admitted.push(n),
            Some(Claim::Refused(n)) => assert!(n <= 10, "a refusal reports the count: {n}"),
            None => panic!("the user exists"),
        }
    }
    admitted.sort();
    assert_eq!(admitted, (1..=10).collect::<Vec<_>>());
    let read = store.user_by_id("u1").await.unwrap().unwrap();
    assert_eq!((read.failed_attempts, read.locked), (10, true));
}

async fn totp_steps_are_used_once(store: Arc<dyn Store>) {
    store.insert_user(&user("u1", "alice")).await.unwrap();
    assert!(store.consume_totp_step("u1", 10).await.unwrap());
    assert!(!store.consume_totp_step("u1", 10).await.unwrap(), "a replay is refused");
    assert!(!store.consume_totp_step("u1", 9).await.unwrap(), "an earlier step is refused");
    assert!(store.consume_totp_step("u1", 11).await.unwrap());
    assert!(!store.consume_totp_step("nobody", 12).await.unwrap());

    // Racing uses of one code: exactly one wins.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.consume_totp_step("u1", 50).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);
}

// ---- sessions ----

fn rich_session() -> Session {
    let mut s = session("s1", 1_000);
    s.factors = Factors {
        user: Some(UserFactor {
            id: "u1".into(),
            login_name: "alice".into(),
            display_name: "Alice".into(),
            org_id: "org".into(),
            verified_at: Timestamp(1_000),
        }),
        password: Some(Timestamp(1_001)),
        totp: None,
        otp_sms: Some(Timestamp(1_002)),
        otp_email: None,
        web_auth_n: Some(WebAuthnFactor { verified_at: Timestamp(1_003), user_verified: true }),
    };
    // An open one-time-code challenge round-trips too (only its hash is stored).
    s.otp_challenges.email = Some(OtpChallenge::issue(Timestamp(1_000), std::time::Duration::from_secs(300)).1);
    s.metadata = BTreeMap::from([("k".into(), vec![0, 159, 146, 150]), ("empty-ish".into(), vec![32])]);
    s.user_agent = UserAgent {
        fingerprint_id: Some("fp".into()),
        ip: Some("10.0.0.1".into()),
        description: Some("browser".into()),
        header: BTreeMap::from([("accept-language".into(), vec!["en".into(), "de".into()])]),
    };
    s.expiration_date = Some(Timestamp(5_000));
    s
}

async fn session_create_read_update_with_history(store: Arc<dyn Store>) {
    let first = rich_session();
    store
        .create_session(&first, &entry(&first, vec![Change::Created, Change::UserChecked { user_id: "u1".into() }]))
        .await
        .unwrap();
    assert_eq!(store.session("s1").await.unwrap(), Some(first.clone()));
    assert_eq!(store.session("nope").await.unwrap(), None);

    let mut second = first.clone();
    second.sequence = 2;
    second.change_date = Timestamp(2_000);
    second.token_hash = SecretHash([2; 32]);
    second.metadata.remove("k");
    second.terminated_at = Some(Timestamp(2_000));
    let changes = vec![Change::MetadataRemoved { key: "k".into() }, Change::TokenRotated, Change::Terminated];
    store.update_session(&first, &second, &entry(&second, changes.clone())).await.unwrap();
    assert_eq!(store.session("s1").await.unwrap(), Some(second.clone()));

    let history = store.session_history("s1").await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        history[0],
        HistoryEntry {
            session_id: "s1".into(),
            sequence: 1,
            at: Timestamp(1_000),
            actor: "actor".into(),
            changes: vec![Change::Created, Change::UserChecked { user_id: "u1".into() }],
        }
    );
    assert_eq!(history[1].sequence, 2);
    assert_eq!(history[1].changes, changes);
    assert!(store.session_history("nope").await.unwrap().is_empty());
}

async fn duplicate_session_id_is_already_exists(store: Arc<dyn Store>) {
    let s = session("s1", 1_000);
    create(&store, &s).await;
    let error = store.create_session(&s, &entry(&s, vec![Change::Created])).await.unwrap_err();
    assert!(matches!(error, StoreError::AlreadyExists(_)), "{error:?}");
    assert_eq!(store.session_history("s1").await.unwrap().len(), 1);
}

async fn update_with_stale_sequence_conflicts(store: Arc<dyn Store>) {
    let s = session("s1", 1_000);
    create(&store, &s).await;
    let mut next = s.clone();
    next.sequence = 2;
    next.metadata.insert("k".into(), vec![1]);
    let e = entry(&next, vec![Change::MetadataSet { key: "k".into() }]);
    let mut stale = s.clone();
    stale.sequence = 5;
    assert_eq!(store.update_session(&stale, &next, &e).await.unwrap_err(), StoreError::Conflict);
    assert_eq!(store.session("s1").await.unwrap(), Some(s.clone()), "a lost write changes nothing");
    assert_eq!(store.session_history("s1").await.unwrap().len(), 1, "nor the history");

    store.update_session(&s, &next, &e).await.unwrap();
    assert_eq!(store.update_session(&s, &next, &e).await.unwrap_err(), StoreError::Conflict, "second use of seq 1");
    assert_eq!(store.session("s1").await.unwrap(), Some(next.clone()), "the winner's write stays");
    let missing = session("missing", 1_000);
    let mut missing_next = missing.clone();
    missing_next.sequence = 2;
    assert_eq!(
        store.update_session(&missing, &missing_next, &entry(&missing_next, vec![])).await.unwrap_err(),
        StoreError::Conflict
    );
}

/// Updates write only what differs from the session as read: a change that leaves the user, the
/// expiration or the token alone must keep them, and one that moves them must move the rows the
/// list queries find.
async fn updates_keep_what_they_do_not_change_and_move_what_they_do(store: Arc<dyn Store>) {
    let anonymous = session("s1", 1_000);
    create(&store, &anonymous).await;
    let user_query = || filter(vec![SessionQuery::UserId("u1".into())]);
    let expiring_query = || filter(vec![SessionQuery::ExpirationDate(TimeComparison::Less, Timestamp(9_000))]);
    assert!(listed_ids(&store, &user_query()).await.is_empty());

    // A user check and a lifetime: the user and expiration queries find the session now.
    let mut checked = rich_session();
    checked.sequence = 2;
    checked.change_date = Timestamp(2_000);
    store.update_session(&anonymous, &checked, &entry(&checked, vec![Change::Created])).await.unwrap();
    assert_eq!(store.session("s1").await.unwrap(), Some(checked.clone()));
    assert_eq!(listed_ids(&store, &user_query()).await, ["s1"]);
    assert_eq!(listed_ids(&store, &expiring_query()).await, ["s1"]);

    // Metadata only: everything else stays, including the token and the indexed columns.
    let mut annotated = checked.clone();
    annotated.sequence = 3;
    annotated.change_date = Timestamp(3_000);
    annotated.metadata.insert("new".into(), vec![7]);
    store.update_session(&checked, &annotated, &entry(&annotated, vec![])).await.unwrap();
    assert_eq!(store.session("s1").await.unwrap(), Some(annotated.clone()));
    assert_eq!(listed_ids(&store, &user_query()).await, ["s1"]);

    // Terminated: gone from every live listing, the stored document unchanged otherwise.
    let mut terminated = annotated.clone();
    terminated.sequence = 4;
    terminated.terminated_at = Some(Timestamp(4_000));
    store.update_session(&annotated, &terminated, &entry(&terminated, vec![Change::Terminated])).await.unwrap();
    assert_eq!(store.session("s1").await.unwrap(), Some(terminated));
    assert!(listed_ids(&store, &user_query()).await.is_empty());
    assert!(listed_ids(&store, &expiring_query()).await.is_empty());
    assert_eq!(store.session_history("s1").await.unwrap().len(), 4);
}

async fn terminate_reads_checks_and_writes_once(store: Arc<dyn Store>) {
    use sessiond::domain::Error;
    let s = rich_session();
    create(&store, &s).await;
    let allow = || Box::new(|_: &Session| Ok(())) as sessiond::store::TerminationCheck;

    let missing = store.terminate_session("nope", Timestamp(2_000), "actor", allow()).await.unwrap();
    assert!(matches!(missing, Termination::NotFound), "{missing:?}");

    // The check sees the session as stored; a refusal writes nothing.
    let refuse = Box::new(|current: &Session| {
        assert_eq!(current.user_id(), Some("u1"));
        Err(Error::permission_denied("TEST-No", "no"))
    });
    let refused = store.terminate_session("s1", Timestamp(2_000), "actor", refuse).await.unwrap();
    assert!(matches!(&refused, Termination::Refused(e) if e.id == "TEST-No"), "{refused:?}");
    assert_eq!(store.session("s1").await.unwrap(), Some(s.clone()));
    assert_eq!(store.session_history("s1").await.unwrap().len(), 1);

    let Termination::Terminated(done) =
        store.terminate_session("s1", Timestamp(2_000), "actor", allow()).await.unwrap()
    else {
        panic!("not terminated")
    };
    let mut expected = s.clone();
    expected.sequence = 2;
    expected.change_date = Timestamp(2_000);
    expected.terminated_at = Some(Timestamp(2_000));
    assert_eq!(done, expected);
    assert_eq!(store.session("s1").await.unwrap(), Some(expected.clone()), "everything else is kept");
    let history = store.session_history("s1").await.unwrap();
    assert_eq!((history.len(), history[1].sequence, history[1].changes.clone()), (2, 2, vec![Change::Terminated]));

    // Again: the stored termination, nothing written.
    let again = store.terminate_session("s1", Timestamp(3_000), "actor", allow()).await.unwrap();
    assert!(matches!(&again, Termination::AlreadyTerminated(t) if *t == expected), "{again:?}");
    assert_eq!(store.session_history("s1").await.unwrap().len(), 2);
}

async fn concurrent_updates_have_one_winner_per_sequence(store: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    const ATTEMPTS: usize = 15;
    create(&store, &session("s1", 1_000)).await;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut won = Vec::new();
                for attempt in 0..ATTEMPTS {
                    let current = store.session("s1").await.unwrap().unwrap();
                    let mut next = current.clone();
                    next.sequence = current.sequence + 1;
                    next.metadata.insert(format!("w{writer}"), attempt.to_le_bytes().to_vec());
                    let e = entry(&next, vec![Change::MetadataSet { key: format!("w{writer}") }]);
                    match store.update_session(&current, &next, &e).await {
                        Ok(()) => won.push(next.sequence),
                        Err(StoreError::Conflict) => {}
                        Err(other) => panic!("unexpected {other:?}"),
                    }
                }
                won
            })
        })
        .collect();
    let mut won = Vec::new();
    for task in tasks {
        won.extend(task.await.unwrap());
    }
    won.sort_unstable();
    let total = won.len();
    won.dedup();
    assert_eq!(won.len(), total, "two writers won the same sequence");
    assert!(total >= 1);
    let last = store.session("s1").await.unwrap().unwrap();
    assert_eq!(last.sequence, 1 + total as u64, "every win is in the row, no lost update");
    let sequences: Vec<u64> = store.session_history("s1").await.unwrap().iter().map(|h| h.sequence).collect();
    assert_eq!(sequences, (1..=last.sequence).collect::<Vec<_>>(), "the history is gapless");
    assert_eq!(&sequences[1..], &won[..]);
}

/// id, creation date, checked user, creator, fingerprint, expiration date.
type FixtureSession = (&'static str, i64, Option<&'static str>, &'static str, Option<&'static str>, Option<i64>);

/// Sessions for the list tests.
async fn list_fixture(store: &Arc<dyn Store>) {
    let specs: [FixtureSession; 5] = [
        ("a", 100, Some("u1"), "c1", Some("fp1"), None),
        ("b", 200, Some("u2"), "c1", Some("fp2"), Some(10_000)),
        ("c", 300, Some("u1"), "c2", None, Some(20_000)),
        ("d", 400, None, "c2", Some("fp1"), Some(30_000)),
        ("e", 500, Some("u2"), "c3", None, None),
    ];
    for (id, creation, user_id, creator, fingerprint, expiration) in specs {
        let mut s = session(id, creation);
        s.creator_id = creator.into();
        s.factors.user = user_id.map(|u| UserFactor {
            id: u.into(),
            login_name: u.into(),
            display_name: u.into(),
            org_id: "org".into(),
            verified_at: Timestamp(creation),
        });
        s.user_agent.fingerprint_id = fingerprint.map(Into::into);
        s.expiration_date = expiration.map(Timestamp);
        create(store, &s).await;
    }
}

async fn list_filters_by_each_query(store: Arc<dyn Store>) {
    list_fixture(&store).await;
    let cases: Vec<(Vec<SessionQuery>, Vec<&str>)> = vec![
        (vec![], vec!["a", "b", "c", "d", "e"]),
        (vec![SessionQuery::Ids(vec!["e".into(), "a".into(), "zz".into()])], vec!["a", "e"]),
        (vec![SessionQuery::Ids(vec![])], vec![]),
        (vec![SessionQuery::UserId("u1".into())], vec!["a", "c"]),
        (vec![SessionQuery::Creator("c2".into())], vec!["c", "d"]),
        (vec![SessionQuery::UserAgentFingerprint("fp1".into())], vec!["a", "d"]),
        (vec![SessionQuery::CreationDate(TimeComparison::Equals, Timestamp(300))], vec!["c"]),
        (vec![SessionQuery::CreationDate(TimeComparison::Greater, Timestamp(300))], vec!["d", "e"]),
        (vec![SessionQuery::CreationDate(TimeComparison::GreaterOrEquals, Timestamp(300))], vec!["c", "d", "e"]),
        (vec![SessionQuery::CreationDate(TimeComparison::Less, Timestamp(300))], vec!["a", "b"]),
        (vec![SessionQuery::CreationDate(TimeComparison::LessOrEquals, Timestamp(300))], vec!["a", "b", "c"]),
        // Queries combine with AND.
        (vec![SessionQuery::Creator("c1".into()), SessionQuery::UserId("u2".into())], vec!["b"]),
        (
            vec![
                SessionQuery::UserAgentFingerprint("fp1".into()),
                SessionQuery::CreationDate(TimeComparison::Greater, Timestamp(100)),
            ],
            vec!["d"],
        ),
    ];
    for (queries, expected) in cases {
        assert_eq!(listed_ids(&store, &filter(queries.clone())).await, expected, "{queries:?}");
    }
}

async fn list_expiration_rules(store: Arc<dyn Store>) {
    list_fixture(&store).await;
    // a and e never expire: they count as later than any time, so only GREATER and
    // GREATER_OR_EQUALS match them.
    let at = Timestamp(20_000);
    let cases = [
        (TimeComparison::Equals, vec!["c"]),
        (TimeComparison::Greater, vec!["a", "d", "e"]),
        (TimeComparison::GreaterOrEquals, vec!["a", "c", "d", "e"]),
        (TimeComparison::Less, vec!["b"]),
        (TimeComparison::LessOrEquals, vec!["b", "c"]),
    ];
    for (cmp, expected) in cases {
        let f = filter(vec![SessionQuery::ExpirationDate(cmp, at)]);
        assert_eq!(listed_ids(&store, &f).await, expected, "{cmp:?}");
    }
}

async fn list_orders_pages_and_counts(store: Arc<dyn Store>) {
    list_fixture(&store).await;
    // Equal creation dates break ties by id in byte order ("A" < "_" < "a0").
    for id in ["a0", "_", "A"] {
        create(&store, &session(id, 300)).await;
    }
    let mut f = filter(vec![]);
    assert_eq!(listed_ids(&store, &f).await, ["a", "b", "A", "_", "a0", "c", "d", "e"]);
    f.ascending = false;
    assert_eq!(listed_ids(&store, &f).await, ["e", "d", "c", "a0", "_", "A", "b", "a"]);

    f.offset = 2;
    f.limit = 3;
    let (total, page) = store.list_sessions(&f).await.unwrap();
    assert_eq!(total, 8, "the total counts every match, not the page");
    assert_eq!(page.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["c", "a0", "_"]);

    f.offset = 8;
    let (total, page) = store.list_sessions(&f).await.unwrap();
    assert_eq!((total, page.len()), (8, 0), "a page past the end is empty, the total stays");

    f.offset = 0;
    f.limit = 1;
    f.queries = vec![SessionQuery::Creator("c1".into())];
    let (total, page) = store.list_sessions(&f).await.unwrap();
    assert_eq!((total, page[0].id.as_str()), (2, "b"));
}

/// A page of 1,000 sessions with full metadata is tens of megabytes and takes a while to read; on
/// SQLite, whose calls share one database thread, a read and a write of other sessions are
/// answered meanwhile, not queued behind such pages. (PostgreSQL runs each call on a pooled
/// connection of its own.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_large_list_pages_do_not_hold_up_other_calls() {
    stores::run(backend::Backend::Sqlite, large_list_pages_do_not_hold_up_other_calls).await;
}

/// The WAL starts over under sustained writes, also while pages are read back to back: a
/// reader's snapshot would otherwise keep it from ever starting over, and it would grow by every
/// write (SQLite only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_wal_starts_over_under_writes_while_pages_are_read() {
    for readers in [0, 2] {
        let peak = wal_peak_under_writes(readers).await;
        assert!(peak < 128 << 20, "with {readers} readers the WAL peaked at {} MiB", peak >> 20);
    }
}

/// The WAL file's largest size while 6,000 sessions of 24 KB are written, with `readers` tasks
/// reading pages of (up to) 1,000 of them back to back meanwhile.
async fn wal_peak_under_writes(readers: usize) -> u64 {
    let db = backend::TestDb::fresh(backend::Backend::Sqlite).await.expect("SQLite is always available");
    let store: Arc<dyn Store> =
        sessiond::store::open(&db.url, sessiond::store::Durability::Normal).await.expect("the store opens");
    let wal = format!("{}-wal", db.url.trim_start_matches("sqlite:"));
    let write = |from: u32, to: u32| {
        let store = Arc::clone(&store);
        async move {
            for chunk in (from..to).collect::<Vec<_>>().chunks(50) {
                let creates = chunk.iter().map(|&i| {
                    let mut s = session(&format!("fat{i:05}"), 1_000 + i64::from(i));
                    s.metadata = ["a", "b", "c"].into_iter().map(|k| (k.to_owned(), vec![b'm'; 8 * 1024])).collect();
                    let store = Arc::clone(&store);
                    async move { create(&store, &s).await }
                });
                futures_util::future::join_all(creates).await;
            }
        }
    };
    write(0, 200).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reading: Vec<_> = (0..readers)
        .map(|_| {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut pages = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut f = filter(vec![]);
                    f.limit = 1000;
                    store.list_sessions(&f).await.unwrap();
                    pages += 1;
                }
                pages
            })
        })
        .collect();
    // About 9 pages (36 KiB) of WAL per session: 6,000 sessions are 6 times the 32 MiB at which
    // the WAL is asked to start over.
    let mut peak = 0;
    for step in 1..=30 {
        write(200 * step, 200 * (step + 1)).await;
        peak = peak.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in reading {
        assert!(reader.await.unwrap() > 0, "pages were read meanwhile");
    }
    store.close().await;
    eprintln!("with {readers} readers the WAL peaked at {} MiB", peak >> 20);
    peak
}

async fn large_list_pages_do_not_hold_up_other_calls(store: Arc<dyn Store>) {
    let value = vec![b'm'; 8 * 1024 - 1];
    for chunk in 0..20 {
        let creates = (chunk * 50..(chunk + 1) * 50).map(|i| {
            let mut big = session(&format!("big{i:04}"), 1_000 + i);
            big.metadata = ["a", "b", "c", "d"].into_iter().map(|k| (k.to_owned(), value.clone())).collect();
            let store = Arc::clone(&store);
            async move { create(&store, &big).await }
        });
        futures_util::future::join_all(creates).await;
    }
    create(&store, &session("other", 5_000)).await;

    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let lists: Vec<_> = (0..3)
        .map(|i| {
            let (store, order) = (Arc::clone(&store), Arc::clone(&order));
            tokio::spawn(async move {
                let mut f = filter(vec![SessionQuery::Creator("creator".into())]);
                f.limit = 1000;
                let (total, page) = store.list_sessions(&f).await.unwrap();
                assert_eq!((total, page.len()), (1001, 1000));
                order.lock().unwrap().push(format!("list {i}"));
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let other = store.session("other").await.unwrap().expect("the other session");
    let mut next = other.clone();
    next.sequence = 2;
    next.metadata.insert("k".into(), b"v".to_vec());
    store.update_session(&other, &next, &entry(&next, vec![])).await.unwrap();
    order.lock().unwrap().push("read and write".into());
    for list in lists {
        list.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(order[0], "read and write", "the small calls were not queued behind the pages: {order:?}");
}

async fn list_shows_only_live_visible_sessions(store: Arc<dyn Store>) {
    list_fixture(&store).await;
    let created = session("t", 600);
    create(&store, &created).await;
    let mut terminated = created.clone();
    terminated.sequence = 2;
    terminated.terminated_at = Some(Timestamp(700));
    store.update_session(&created, &terminated, &entry(&terminated, vec![Change::Terminated])).await.unwrap();

    let mut f = filter(vec![]);
    f.live_at = Timestamp(20_000);
    // b expired before, c expires exactly now (expired), t is terminated.
    assert_eq!(listed_ids(&store, &f).await, ["a", "d", "e"]);
    let (total, _) = store.list_sessions(&f).await.unwrap();
    assert_eq!(total, 3);

    f.visible_to_user = Some("u2".into());
    assert_eq!(listed_ids(&store, &f).await, ["e"]);
    f.live_at = Timestamp(0);
    assert_eq!(listed_ids(&store, &f).await, ["b", "e"]);
    f.visible_to_user = Some("nobody".into());
    assert_eq!(store.list_sessions(&f).await.unwrap().0, 0);
}

async fn sweep_removes_ended_rows_and_keeps_history(store: Arc<dyn Store>) {
    let live = session("live", 100);
    let mut expired_long_ago = session("expired", 100);
    expired_long_ago.expiration_date = Some(Timestamp(500));
    let mut expires_later = session("expires-later", 100);
    expires_later.expiration_date = Some(Timestamp(5_000));
    let mut terminated_long_ago = session("terminated", 100);
    let mut terminated_recently = session("terminated-recently", 100);
    for s in [&live, &expired_long_ago, &expires_later, &terminated_long_ago, &terminated_recently] {
        create(&store, s).await;
    }
    for (s, at) in [(&mut terminated_long_ago, 600), (&mut terminated_recently, 1_500)] {
        let created = s.clone();
        s.sequence = 2;
        s.terminated_at = Some(Timestamp(at));
        store.update_session(&created, s, &entry(s, vec![Change::Terminated])).await.unwrap();
    }

    assert_eq!(store.sweep(Timestamp(1_000), 100).await.unwrap(), 2);
    assert_eq!(store.session("expired").await.unwrap(), None);
    assert_eq!(store.session("terminated").await.unwrap(), None);
    for kept in ["live", "expires-later", "terminated-recently"] {
        assert!(store.session(kept).await.unwrap().is_some(), "{kept} is kept");
    }
    assert_eq!(store.session_history("terminated").await.unwrap().len(), 2, "history outlives the row");
    assert_eq!(store.session_history("expired").await.unwrap().len(), 1);
    assert_eq!(store.sweep(Timestamp(1_000), 100).await.unwrap(), 0);
}

async fn sweep_removes_the_earliest_ended_in_bounded_steps(store: Arc<dyn Store>) {
    // Terminated at 100..500; "both" also expired (at 50), so either query finds it.
    for (i, id) in ["t1", "t2", "t3", "t4", "both"].iter().enumerate() {
        let mut s = session(id, 10);
        if *id == "both" {
            s.expiration_date = Some(Timestamp(50));
        }
        create(&store, &s).await;
        let created = s.clone();
        s.sequence = 2;
        s.terminated_at = Some(Timestamp(100 * (i as i64 + 1)));
        store.update_session(&created, &s, &entry(&s, vec![Change::Terminated])).await.unwrap();
    }
    let mut live = session("live", 10);
    live.expiration_date = Some(Timestamp(5_000));
    create(&store, &live).await;

    // A step takes at most `limit` of each kind: t1 and t2 by termination, "both" by expiry.
    assert_eq!(store.sweep(Timestamp(1_000), 2).await.unwrap(), 3, "one bounded step");
    for id in ["t1", "t2", "both"] {
        assert_eq!(store.session(id).await.unwrap(), None, "{id}: the earliest ended go first");
    }
    assert!(store.session("t3").await.unwrap().is_some(), "t3 waits for the next step");
    assert_eq!(store.sweep(Timestamp(1_000), 2).await.unwrap(), 2);
    assert_eq!(store.sweep(Timestamp(1_000), 2).await.unwrap(), 0);
    assert!(store.session("live").await.unwrap().is_some());
    assert_eq!(store.session_history("t4").await.unwrap().len(), 2, "history outlives the row");
}

async fn history_sweep_removes_old_entries_in_bounded_steps(store: Arc<dyn Store>) {
    for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let mut s = session(id, 100 * (i as i64 + 1));
        create(&store, &s).await;
        let created = s.clone();
        (s.sequence, s.change_date) = (2, Timestamp(10_000 + 100 * i as i64));
        store.update_session(&created, &s, &entry(&s, vec![Change::TokenRotated])).await.unwrap();
    }
    // Entries at 100..=500 (creations) and 10_000..=10_400 (changes); keep those from 10_200 on.
    assert_eq!(store.sweep_history(Timestamp(10_200), 3).await.unwrap(), 3, "one bounded step");
    assert_eq!(store.sweep_history(Timestamp(10_200), 3).await.unwrap(), 3);
    assert_eq!(store.sweep_history(Timestamp(10_200), 3).await.unwrap(), 1);
    assert_eq!(store.sweep_history(Timestamp(10_200), 3).await.unwrap(), 0);
    let mut kept = Vec::new();
    for id in ["a", "b", "c", "d", "e"] {
        kept.extend(store.session_history(id).await.unwrap().into_iter().map(|e| (e.session_id, e.sequence)));
    }
    assert_eq!(kept, [("c".to_owned(), 2), ("d".to_owned(), 2), ("e".to_owned(), 2)]);
    assert!(store.session("a").await.unwrap().is_some(), "the live rows stay");
}

async fn closed_store_is_unavailable(store: Arc<dyn Store>) {
    store.insert_user(&user("u1", "alice")).await.unwrap();
    store.close().await;
    assert!(matches!(store.insert_user(&user("u2", "bob")).await, Err(StoreError::Unavailable(_))));
    assert!(matches!(store.user_by_id("u1").await, Err(StoreError::Unavailable(_))));
    assert!(matches!(store.session("s1").await, Err(StoreError::Unavailable(_))));
    assert!(matches!(store.claim_attempt("u1", LockoutCounter::Password, 5).await, Err(StoreError::Unavailable(_))));
}

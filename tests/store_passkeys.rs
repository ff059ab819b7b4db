//! The stores' passkey part, on every backend: a registration in flight is taken once (also when
//! raced), expired and surplus ones go, and a passkey's signature counter moves only by a
//! conditional write that one of several racing uses wins.

#[path = "common/backend.rs"]
mod backend;
#[macro_use]
#[path = "common/stores.rs"]
mod stores;

use std::sync::Arc;

use sessiond::{
    domain::{
        Timestamp,
        keyring::SealedSecret,
        passkey::{PasskeyRecord, PendingRegistration},
        user::{User, UserState},
    },
    store::{Store, StoreError},
};

on_every_store!(registrations_are_taken_once, passkeys_round_trip_and_their_counters_only_move_forward);

fn user(id: &str) -> User {
    User {
        id: id.into(),
        login_name: id.into(),
        display_name: id.into(),
        org_id: "org".into(),
        state: UserState::Active,
        password_hash: None,
        failed_attempts: 0,
        locked: false,
        otp_failed_attempts: 0,
        otp_locked: false,
        totp: None,
        created_at: Timestamp(1),
        email: None,
        phone: None,
        otp_email: false,
        otp_sms: false,
    }
}

fn pending(passkey_id: &str, user_id: &str, expires_at: i64) -> PendingRegistration {
    PendingRegistration {
        passkey_id: passkey_id.into(),
        user_id: user_id.into(),
        rp_id: "example.test".into(),
        state: SealedSecret::from_bytes(vec![1, 2, 3]),
        expires_at: Timestamp(expires_at),
    }
}

async fn registrations_are_taken_once(store: Arc<dyn Store>) {
    store.insert_passkey_registration(&pending("p1", "u1", 1_000), Timestamp(10), 8).await.unwrap();
    assert_eq!(store.take_passkey_registration("u2", "p1").await.unwrap(), None, "another user's");
    assert_eq!(store.take_passkey_registration("u1", "p1").await.unwrap(), Some(pending("p1", "u1", 1_000)));
    assert_eq!(store.take_passkey_registration("u1", "p1").await.unwrap(), None, "used");

    // Racing takes of one registration: exactly one gets it.
    store.insert_passkey_registration(&pending("p2", "u1", 1_000), Timestamp(10), 8).await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.take_passkey_registration("u1", "p2").await.unwrap().is_some() })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);

    // An insert removes what expired, and the user's oldest beyond the number kept.
    store.insert_passkey_registration(&pending("old", "u1", 100), Timestamp(10), 8).await.unwrap();
    store.insert_passkey_registration(&pending("a", "u2", 2_000), Timestamp(100), 2).await.unwrap();
    assert_eq!(store.take_passkey_registration("u1", "old").await.unwrap(), None, "expired at 100");
    store.insert_passkey_registration(&pending("b", "u2", 2_001), Timestamp(100), 2).await.unwrap();
    store.insert_passkey_registration(&pending("c", "u2", 2_002), Timestamp(100), 2).await.unwrap();
    assert_eq!(store.take_passkey_registration("u2", "a").await.unwrap(), None, "the oldest beyond 2");
    assert!(store.take_passkey_registration("u2", "b").await.unwrap().is_some());
    assert!(store.take_passkey_registration("u2", "c").await.unwrap().is_some());
}

fn passkey(credential_id: &str, id: &str, user_id: &str, created_at: i64) -> PasskeyRecord {
    PasskeyRecord {
        credential_id: credential_id.into(),
        user_id: user_id.into(),
        id: id.into(),
        name: format!("key {id}"),
        rp_id: "example.test".into(),
        credential: "{}".into(),
        counter: 0,
        created_at: Timestamp(created_at),
    }
}

async fn passkeys_round_trip_and_their_counters_only_move_forward(store: Arc<dyn Store>) {
    store.insert_user(&user("u1")).await.unwrap();
    store.insert_user(&user("u2")).await.unwrap();
    store.insert_passkey(&passkey("cred-b", "pb", "u1", 20)).await.unwrap();
    store.insert_passkey(&passkey("cred-a", "pa", "u1", 10)).await.unwrap();
    store.insert_passkey(&passkey("cred-c", "pc", "u2", 10)).await.unwrap();
    assert!(matches!(
        store.insert_passkey(&passkey("cred-a", "px", "u2", 30)).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let ids: Vec<String> = store.passkeys_of_user("u1").await.unwrap().into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["pa", "pb"], "oldest first");
    assert_eq!(store.passkey_by_credential("cred-c").await.unwrap(), Some(passkey("cred-c", "pc", "u2", 10)));
    assert_eq!(store.passkey_by_credential("nope").await.unwrap(), None);

    assert!(store.record_passkey_use("cred-a", 0, 5, "{\"n\":5}").await.unwrap());
    assert!(!store.record_passkey_use("cred-a", 0, 6, "{}").await.unwrap(), "read before the last use");
    let read = store.passkey_by_credential("cred-a").await.unwrap().unwrap();
    assert_eq!((read.counter, read.credential.as_str()), (5, "{\"n\":5}"));
    // Racing uses from the same reading: exactly one records.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.record_passkey_use("cred-a", 5, 6, "{}").await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);

    assert!(!store.remove_passkey("u2", "pa").await.unwrap(), "another user's");
    assert!(store.remove_passkey("u1", "pa").await.unwrap());
    assert!(!store.remove_passkey("u1", "pa").await.unwrap());
    assert_eq!(store.passkey_by_credential("cred-a").await.unwrap(), None);
}

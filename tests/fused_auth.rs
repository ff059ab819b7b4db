//! Get, Delete and Create authenticate in the store step that does their work. A token revoked, or
//! a user disabled, by another process (the admin CLI, on the server's own database) is refused
//! on the very next call of each, on both stores, and a refused Delete or Create writes nothing.

#[path = "common/backend.rs"]
mod backend;
#[path = "common/process.rs"]
mod process;

use backend::{Backend, TestDb};
use process::{Answer, Rest, Sessiond, add_token, add_user, cli, token_id};

const ALL_PERMISSIONS: &[&str] = &["session.read", "session.write", "session.delete"];

fn assert_unauthenticated(answer: &Answer, what: &str) {
    assert_eq!((answer.status, answer.code()), (401, 16), "{what}: {answer:?}");
    assert!(answer.body["message"].as_str().unwrap_or_default().contains("AUTH-InvalidToken"), "{what}: {answer:?}");
}

/// Every fused call with `refused` is UNAUTHENTICATED, and `session` (created earlier) is still
/// live and unchanged, and no session was created: as an untouched caller (`keeper`) sees it.
async fn refused_and_nothing_written(refused: &Rest, keeper: &Rest, session: &str, what: &str) {
    assert_unauthenticated(&refused.get_session(session, None).await, &format!("Get with {what}"));
    assert_unauthenticated(&refused.delete_session(session).await, &format!("Delete with {what}"));
    assert_unauthenticated(&refused.create_session("alice").await, &format!("Create with {what}"));
    let got = keeper.get_session(session, None).await;
    assert_eq!((got.status, got.body["session"]["sequence"].as_str()), (200, Some("1")), "{what}: {got:?}");
    let listed = keeper.list_sessions().await;
    assert_eq!(listed.body["details"]["totalResult"].as_str(), Some("1"), "{what}: {listed:?}");
}

async fn revoked_or_disabled_by_the_cli_is_refused_at_once(backend: Backend) {
    let Some(db) = TestDb::fresh(backend).await else { return };
    let server = Sessiond::start(&db.url).await;
    add_user(&db.url, "alice");
    let operator = add_user(&db.url, "operator");
    let keeper = Rest::new(&server.base, &add_token(&db.url, &operator, ALL_PERMISSIONS));
    let app = add_token(&db.url, &operator, ALL_PERMISSIONS);
    let owner = add_user(&db.url, "owner");
    let owners = add_token(&db.url, &owner, ALL_PERMISSIONS);

    let created = keeper.create_session("alice").await;
    assert_eq!(created.status, 201, "{created:?}");
    let session = created.body["sessionId"].as_str().expect("a session id").to_owned();
    // Both tokens work, through every fused call (each read its token in its own step).
    for bearer in [&app, &owners] {
        let rest = keeper.with_token(bearer);
        assert_eq!(rest.get_session(&session, None).await.status, 200);
    }

    cli(&db.url, &["tokens", "revoke", "--", token_id(&app)]);
    refused_and_nothing_written(&keeper.with_token(&app), &keeper, &session, "a token the CLI revoked").await;

    cli(&db.url, &["users", "disable", "--", &owner]);
    refused_and_nothing_written(&keeper.with_token(&owners), &keeper, &session, "a token of a user the CLI disabled")
        .await;
    cli(&db.url, &["users", "enable", "--", &owner]);
    let deleted = keeper.with_token(&owners).delete_session(&session).await;
    assert_eq!(deleted.status, 200, "re-enabled: {deleted:?}");
    drop(server);
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_revoked_or_disabled_by_the_cli_is_refused_at_once() {
    revoked_or_disabled_by_the_cli_is_refused_at_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_revoked_or_disabled_by_the_cli_is_refused_at_once() {
    revoked_or_disabled_by_the_cli_is_refused_at_once(Backend::Postgres).await;
}

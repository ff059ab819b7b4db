//! The session history on every backend (in SQLite since migration 0007 appended in commit order,
//! each entry naming the one before it of its session): one session's entries come back in
//! sequence order however the writes of several sessions interleave and whatever their times, the
//! retention sweep removes the oldest entries first in bounded steps, a session swept from the
//! live table keeps its history until the retention sweep removes it, and a database made before
//! 0006 keeps its history when a new sessiond opens it.

#[path = "common/backend.rs"]
mod backend;
#[macro_use]
#[path = "common/stores.rs"]
mod stores;

use std::{collections::BTreeMap, sync::Arc};

use backend::{Backend, TestDb};
use sessiond::{
    domain::{
        Timestamp,
        session::{Change, HistoryEntry, Session},
        token::SecretHash,
    },
    store::{self, Durability, SessionFilter, Store, Termination},
};

on_every_store!(
    interleaved_writes_read_back_in_sequence_order,
    the_sweep_removes_the_oldest_entries_first,
    a_swept_session_keeps_its_history,
);

fn session(id: &str, creation: i64) -> Session {
    Session {
        id: id.into(),
        resource_owner: "org".into(),
        creator_id: "creator".into(),
        creation_date: Timestamp(creation),
        change_date: Timestamp(creation),
        sequence: 1,
        token_hash: SecretHash([1; 32]),
        factors: Default::default(),
        metadata: BTreeMap::new(),
        user_agent: Default::default(),
        expiration_date: None,
        terminated_at: None,
        otp_challenges: Default::default(),
        passkey_challenge: None,
    }
}

fn entry(s: &Session, changes: Vec<Change>) -> HistoryEntry {
    HistoryEntry { session_id: s.id.clone(), sequence: s.sequence, at: s.change_date, actor: "actor".into(), changes }
}

/// The session's next version, changed at `at`, and its history entry (a metadata key naming it).
fn next(current: &Session, at: i64) -> (Session, HistoryEntry) {
    let mut s = current.clone();
    s.sequence += 1;
    s.change_date = Timestamp(at);
    let key = format!("{}-{}", s.id, s.sequence);
    s.metadata.insert(key.clone(), vec![1]);
    let e = entry(&s, vec![Change::MetadataSet { key }]);
    (s, e)
}

/// (session id, sequence, at) of each session's history, in the order the store returns it.
async fn histories(store: &Arc<dyn Store>, ids: &[&str]) -> Vec<(String, u64, i64)> {
    let mut all = Vec::new();
    for id in ids {
        let history = store.session_history(id).await.unwrap();
        all.extend(history.into_iter().map(|e| (e.session_id, e.sequence, e.at.0)));
    }
    all
}

async fn interleaved_writes_read_back_in_sequence_order(store: Arc<dyn Store>) {
    const IDS: [&str; 4] = ["a", "b", "c", "d"];
    let mut sessions = Vec::new();
    let mut expected: BTreeMap<String, Vec<HistoryEntry>> = BTreeMap::new();
    for (i, id) in IDS.iter().enumerate() {
        let s = session(id, 1_000 + i as i64);
        let e = entry(&s, vec![Change::Created]);
        store.create_session(&s, &e).await.unwrap();
        expected.entry(s.id.clone()).or_default().push(e);
        sessions.push(s);
    }
    // Eight rounds; in each, every session changes once, all at the same time (so their writes
    // share transactions), in an order that rotates. Session "b"'s clock runs backwards: its
    // later entries carry earlier times, and still come back after the ones before them.
    for round in 0..8i64 {
        let mut writes = tokio::task::JoinSet::new();
        for k in 0..IDS.len() {
            let i = (k + round as usize) % IDS.len();
            let at = if IDS[i] == "b" { 900 - round } else { 10_000 + 100 * round + i as i64 };
            let (current, (updated, e)) = (sessions[i].clone(), next(&sessions[i], at));
            expected.entry(updated.id.clone()).or_default().push(e.clone());
            sessions[i] = updated.clone();
            let store = Arc::clone(&store);
            writes.spawn(async move { store.update_session(&current, &updated, &e).await });
        }
        while let Some(written) = writes.join_next().await {
            written.unwrap().unwrap();
        }
    }
    for id in IDS {
        let history = store.session_history(id).await.unwrap();
        assert_eq!(history, expected[id], "{id}'s history, whole and in sequence order");
        assert_eq!(history.iter().map(|e| e.sequence).collect::<Vec<_>>(), (1..=9).collect::<Vec<_>>());
    }
}

async fn the_sweep_removes_the_oldest_entries_first(store: Arc<dyn Store>) {
    // Written in this order, at these times: the order of writing is not the order of time.
    let (x, y) = (session("x", 500), session("y", 100));
    store.create_session(&x, &entry(&x, vec![Change::Created])).await.unwrap();
    store.create_session(&y, &entry(&y, vec![Change::Created])).await.unwrap();
    let (x2, e) = next(&x, 300);
    store.update_session(&x, &x2, &e).await.unwrap();
    let (y2, e) = next(&y, 700);
    store.update_session(&y, &y2, &e).await.unwrap();
    let (x3, e) = next(&x2, 200);
    store.update_session(&x2, &x3, &e).await.unwrap();
    // By time: y1 at 100, x3 at 200, x2 at 300, x1 at 500, y2 at 700.

    assert_eq!(store.sweep_history(Timestamp(600), 2).await.unwrap(), 2, "a step removes at most its limit");
    assert_eq!(
        histories(&store, &["x", "y"]).await,
        [("x".into(), 1, 500), ("x".into(), 2, 300), ("y".into(), 2, 700)]
    );
    assert_eq!(store.sweep_history(Timestamp(600), 2).await.unwrap(), 2);
    assert_eq!(histories(&store, &["x", "y"]).await, [("y".into(), 2, 700)]);
    assert_eq!(store.sweep_history(Timestamp(600), 2).await.unwrap(), 0, "what is newer stays");
    assert_eq!(store.sweep_history(Timestamp(701), 2).await.unwrap(), 1);
    assert!(histories(&store, &["x", "y"]).await.is_empty());
}

async fn a_swept_session_keeps_its_history(store: Arc<dyn Store>) {
    let (gone, kept) = (session("gone", 100), session("kept", 100));
    for s in [&gone, &kept] {
        store.create_session(s, &entry(s, vec![Change::Created])).await.unwrap();
    }
    let (gone2, e) = next(&gone, 200);
    store.update_session(&gone, &gone2, &e).await.unwrap();
    let mut gone3 = gone2.clone();
    (gone3.sequence, gone3.change_date, gone3.terminated_at) = (3, Timestamp(300), Some(Timestamp(300)));
    store.update_session(&gone2, &gone3, &entry(&gone3, vec![Change::Terminated])).await.unwrap();
    let (kept2, e) = next(&kept, 400);
    store.update_session(&kept, &kept2, &e).await.unwrap();

    assert_eq!(store.sweep(Timestamp(1_000), 10).await.unwrap(), 1, "the terminated session is swept");
    assert!(store.session("gone").await.unwrap().is_none());
    let history = store.session_history("gone").await.unwrap();
    assert_eq!(history.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 2, 3], "its history is still whole");
    assert_eq!(history[2].changes, [Change::Terminated]);

    // The retention sweep takes the swept session's entries by time like any others.
    assert_eq!(store.sweep_history(Timestamp(250), 10).await.unwrap(), 3, "gone 1 and 2, kept 1");
    assert_eq!(histories(&store, &["gone", "kept"]).await, [("gone".into(), 3, 300), ("kept".into(), 2, 400)]);
    assert_eq!(store.sweep_history(Timestamp(1_000), 10).await.unwrap(), 2);
    assert!(histories(&store, &["gone", "kept"]).await.is_empty());

    // Entries written after the history was emptied are found, and only the session's own.
    let (kept3, e) = next(&kept2, 1_100);
    store.update_session(&kept2, &kept3, &e).await.unwrap();
    let again = session("again", 1_200);
    store.create_session(&again, &entry(&again, vec![Change::Created])).await.unwrap();
    assert_eq!(
        histories(&store, &["gone", "kept", "again"]).await,
        [("kept".into(), 3, 1_100), ("again".into(), 1, 1_200)]
    );
}

/// History rows as the schema before 0006 held them: (session, sequence, at), written in this
/// order, which is neither the order of sessions nor of time.
const OLD_ROWS: [(&str, i64, i64); 5] =
    [("old-b", 1, 400), ("old-a", 1, 100), ("old-a", 2, 600), ("old-b", 2, 50), ("old-a", 3, 300)];

/// A database made by the sessiond before migration 0006 (schema version 5) opens with its
/// history: each session's entries in sequence order, the sweep oldest-first over old and new
/// entries alike, and new writes appended beside the old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_database_keeps_its_history() {
    for backend in Backend::ALL {
        let Some(db) = TestDb::fresh(backend).await else { continue };
        match backend {
            Backend::Sqlite => old_sqlite(&db.url),
            Backend::Postgres => old_postgres(&db.url).await,
        }
        let store = store::open(&db.url, Durability::Normal).await.expect("the old database opens");
        let old = [("old-a".to_owned(), 1, 100), ("old-a".into(), 2, 600), ("old-a".into(), 3, 300)];
        assert_eq!(histories(&store, &["old-a"]).await, old, "{backend:?}");
        let history = store.session_history("old-b").await.unwrap();
        assert_eq!(history[1].changes, [Change::Terminated], "{backend:?}: the entries' contents");
        assert_eq!(history[1].actor, "old-actor");

        let s = session("new", 200);
        store.create_session(&s, &entry(&s, vec![Change::Created])).await.unwrap();
        let (s2, e) = next(&s, 700);
        store.update_session(&s, &s2, &e).await.unwrap();
        // By time: old-b 2 at 50, old-a 1 at 100, new 1 at 200, old-a 3 at 300, then 400, 600, 700.
        assert_eq!(store.sweep_history(Timestamp(1_000), 4).await.unwrap(), 4, "{backend:?}");
        let kept = histories(&store, &["old-a", "old-b", "new"]).await;
        assert_eq!(kept, [("old-a".into(), 2, 600), ("old-b".into(), 1, 400), ("new".into(), 2, 700)], "{backend:?}");
        store.close().await;
        db.remove().await;
    }
}

/// A SQLite database made before migration 0007 (schema version 6, the history indexed by
/// session): a live session's old entries stay readable in sequence order (its clock went back
/// between them), its next write chains onto them, a session already swept keeps its history,
/// and the sweep still goes by time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_0007_keeps_every_chain() {
    let Some(db) = TestDb::fresh(Backend::Sqlite).await else { return };
    {
        let conn = sqlite_at(&db.url, &[include_str!("../migrations/sqlite/0006_history_append.sql")]);
        conn.execute(
            "INSERT INTO sessions (id, resource_owner, creator_id, creation_date, change_date, sequence, token_hash, state) \
             VALUES ('live', 'org', 'creator', 100, 50, 2, ?1, '{}')",
            [vec![1u8; 32]],
        )
        .unwrap();
        // Written in this order: live's second entry carries an earlier time than its first.
        for (id, sequence, at) in [("live", 1, 100), ("swept", 1, 80), ("live", 2, 50), ("swept", 2, 90)] {
            conn.execute(
                "INSERT INTO session_history (session_id, sequence, at, actor, changes) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![id, sequence, at, "old-actor", r#"[{"type":"token_rotated"}]"#],
            )
            .unwrap();
        }
    }
    let store = store::open(&db.url, Durability::Normal).await.expect("the version 6 database opens");
    assert_eq!(histories(&store, &["live"]).await, [("live".into(), 1, 100), ("live".into(), 2, 50)]);
    assert_eq!(histories(&store, &["swept"]).await, [("swept".into(), 1, 80), ("swept".into(), 2, 90)]);

    let current = store.session("live").await.unwrap().expect("the live session");
    let (updated, e) = next(&current, 700);
    store.update_session(&current, &updated, &e).await.unwrap();
    let sequences = |h: Vec<(String, u64, i64)>| h.into_iter().map(|(_, s, _)| s).collect::<Vec<_>>();
    assert_eq!(sequences(histories(&store, &["live"]).await), [1, 2, 3], "the new entry chains onto the old");

    // By time: live 2 at 50, swept 1 at 80, swept 2 at 90, live 1 at 100, live 3 at 700.
    assert_eq!(store.sweep_history(Timestamp(95), 10).await.unwrap(), 3);
    assert_eq!(histories(&store, &["live"]).await, [("live".into(), 1, 100), ("live".into(), 3, 700)]);
    assert!(histories(&store, &["swept"]).await.is_empty());
    store.close().await;
    db.remove().await;
}

/// A SQLite database made before migration 0008 (schema version 7, where a live session's
/// `terminated_at` was NULL): its live session stays live (read, listed, then terminated once),
/// its ended one stays ended (read as terminated, never listed), and the sweep takes both ended
/// sessions and leaves a live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_0008_keeps_its_sessions_ends() {
    let Some(db) = TestDb::fresh(Backend::Sqlite).await else { return };
    {
        let conn = sqlite_at(
            &db.url,
            &[
                include_str!("../migrations/sqlite/0006_history_append.sql"),
                include_str!("../migrations/sqlite/0007_history_chain.sql"),
            ],
        );
        for (id, terminated_at) in [("live", None), ("still-live", None), ("ended", Some(150_i64))] {
            conn.execute(
                "INSERT INTO sessions (id, resource_owner, creator_id, creation_date, change_date, sequence, \
                 token_hash, terminated_at, state) VALUES (?1, 'org', 'creator', 100, 100, 1, ?2, ?3, '{}')",
                rusqlite::params![id, vec![1u8; 32], terminated_at],
            )
            .unwrap();
        }
    }
    let store = store::open(&db.url, Durability::Normal).await.expect("the version 7 database opens");
    let live = store.session("live").await.unwrap().expect("the live session");
    assert_eq!(live.terminated_at, None);
    let ended = store.session("ended").await.unwrap().expect("the ended session's row");
    assert_eq!(ended.terminated_at, Some(Timestamp(150)));
    let listed = |store: Arc<dyn Store>| async move {
        let filter = SessionFilter {
            queries: Vec::new(),
            visible_to_user: None,
            live_at: Timestamp(200),
            offset: 0,
            limit: 10,
            ascending: true,
        };
        let (total, sessions) = store.list_sessions(&filter).await.unwrap();
        (total, sessions.into_iter().map(|s| s.id).collect::<Vec<_>>())
    };
    assert_eq!(listed(Arc::clone(&store)).await, (2, vec!["live".to_owned(), "still-live".to_owned()]));

    let allow: fn(&Session) -> Result<(), sessiond::domain::Error> = |_| Ok(());
    let done = store.terminate_session("live", Timestamp(300), "actor", Box::new(allow)).await.unwrap();
    assert!(matches!(done, Termination::Terminated(ref s) if s.terminated_at == Some(Timestamp(300))), "{done:?}");
    let again = store.terminate_session("live", Timestamp(310), "actor", Box::new(allow)).await.unwrap();
    assert!(matches!(again, Termination::AlreadyTerminated(_)), "{again:?}");
    assert_eq!(listed(Arc::clone(&store)).await, (1, vec!["still-live".to_owned()]));

    assert_eq!(store.sweep(Timestamp(1_000), 10).await.unwrap(), 2, "both ended sessions, not the live one");
    assert!(store.session("ended").await.unwrap().is_none());
    assert!(store.session("live").await.unwrap().is_none());
    assert_eq!(store.session("still-live").await.unwrap().map(|s| s.terminated_at), Some(None));
    store.close().await;
    db.remove().await;
}

/// Stores opened on one database at the same moment (a server and the CLI, two servers) take
/// turns to migrate it: each step runs once and every one of them opens the database, whether it
/// is new or an older version's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_opened_at_once_migrate_the_database_once() {
    let starts = [(Backend::Sqlite, false), (Backend::Sqlite, true), (Backend::Postgres, false)];
    for (backend, older) in starts {
        let Some(db) = TestDb::fresh(backend).await else { continue };
        if older {
            drop(sqlite_at(&db.url, &[]));
        }
        let opened = futures_util::future::join_all((0..8).map(|_| store::open(&db.url, Durability::Normal))).await;
        let mut stores = Vec::new();
        for (i, store) in opened.into_iter().enumerate() {
            stores.push(
                store.unwrap_or_else(|e| panic!("{backend:?} (older: {older}): store {i} failed to open: {e:#}")),
            );
        }
        let s = session("after", 100);
        stores[3].create_session(&s, &entry(&s, vec![Change::Created])).await.unwrap();
        for store in &stores {
            assert_eq!(store.session("after").await.unwrap().map(|s| s.id), Some("after".to_owned()), "{backend:?}");
        }
        for store in stores {
            store.close().await;
        }
        db.remove().await;
    }
}

/// A SQLite database at `url` with the migrations up to 0005 and then `later`, its schema
/// version set to match, as an older sessiond left it.
fn sqlite_at(url: &str, later: &[&str]) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(url.trim_start_matches("sqlite:")).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
    for sql in OLD_SQLITE_MIGRATIONS.iter().chain(later) {
        conn.execute_batch(sql).unwrap();
    }
    conn.execute_batch(&format!("PRAGMA user_version = {};", OLD_SQLITE_MIGRATIONS.len() + later.len())).unwrap();
    conn
}

fn old_sqlite(url: &str) {
    let conn = sqlite_at(url, &[]);
    for (id, sequence, at) in OLD_ROWS {
        conn.execute(
            "INSERT INTO session_history (session_id, sequence, at, actor, changes) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![id, sequence, at, "old-actor", old_changes(id, sequence)],
        )
        .unwrap();
    }
}

async fn old_postgres(url: &str) {
    use sqlx::{Connection as _, Executor as _};
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    conn.execute("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .await
        .unwrap();
    for (version, sql) in (1..).zip(OLD_POSTGRES_MIGRATIONS) {
        conn.execute(sql).await.unwrap();
        sqlx::query("INSERT INTO schema_migrations VALUES ($1, 0)").bind(version).execute(&mut conn).await.unwrap();
    }
    for (id, sequence, at) in OLD_ROWS {
        sqlx::query(
            "INSERT INTO session_history (session_id, sequence, at, actor, changes) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(sequence)
        .bind(at)
        .bind("old-actor")
        .bind(old_changes(id, sequence))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();
}

/// The changes of an old entry: a creation first, the end of old-b second.
fn old_changes(id: &str, sequence: i64) -> &'static str {
    match (id, sequence) {
        (_, 1) => r#"[{"type":"created"}]"#,
        ("old-b", _) => r#"[{"type":"terminated"}]"#,
        _ => r#"[{"type":"token_rotated"}]"#,
    }
}

const OLD_SQLITE_MIGRATIONS: [&str; 5] = [
    include_str!("../migrations/sqlite/0001_init.sql"),
    include_str!("../migrations/sqlite/0002_lockouts_history_retention.sql"),
    include_str!("../migrations/sqlite/0003_sealed_secrets.sql"),
    include_str!("../migrations/sqlite/0004_otp_email_sms.sql"),
    include_str!("../migrations/sqlite/0005_passkeys.sql"),
];

const OLD_POSTGRES_MIGRATIONS: [&str; 5] = [
    include_str!("../migrations/postgres/0001_init.sql"),
    include_str!("../migrations/postgres/0002_lockouts_history_retention.sql"),
    include_str!("../migrations/postgres/0003_sealed_secrets.sql"),
    include_str!("../migrations/postgres/0004_otp_email_sms.sql"),
    include_str!("../migrations/postgres/0005_passkeys.sql"),
];

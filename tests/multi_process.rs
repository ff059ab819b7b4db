//! Two real `sessiond serve` processes on one database behave as one service: what one writes the
//! other reads at once, a rotated session token or a revoked API token is refused by both
//! immediately, conflicting writes through both never lose an update, and guesses split over
//! both never outrun the lockout. Every test runs on one SQLite file shared by the processes and,
//! when `SESSIOND_TEST_POSTGRES` is set, on PostgreSQL (each test in a schema of its own).

#[path = "common/backend.rs"]
mod backend;
#[path = "common/process.rs"]
mod process;

use std::collections::BTreeSet;

use backend::{Backend, TestDb};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use futures_util::future::join_all;
use process::{Rest, Sessiond, add_token, add_user, cli, sessiond_cli, token_id};
use sessiond::{
    domain::{password::PasswordHasher, user::Users},
    store::{self, Durability},
};

/// Each test once per backend, as `sqlite::name` and `postgres::name` (the latter passes without
/// running unless `SESSIOND_TEST_POSTGRES` is set).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

on_both_backends!(
    a_session_created_through_one_is_read_and_terminated_through_the_other,
    a_token_rotated_through_one_is_refused_by_the_other_at_once,
    a_token_revoked_or_user_disabled_by_the_cli_is_refused_by_both_at_once,
    conflicting_writes_through_both_never_lose_an_update,
    concurrent_migrations_apply_the_schema_once,
    an_in_process_server_and_a_process_share_the_database,
    guesses_split_over_both_processes_never_outrun_the_lockout,
);

const ALL_PERMISSIONS: &[&str] = &["session.read", "session.write", "session.delete"];

/// Two servers on one fresh schema, started at the same moment (so they also race to migrate
/// it), an end user `alice`, and an operator whose token may do everything.
#[derive(Debug)]
struct Pair {
    db: TestDb,
    a: Sessiond,
    b: Sessiond,
    operator_id: String,
    operator_token: String,
}

impl Pair {
    async fn start(backend: Backend) -> Option<Self> {
        let db = TestDb::fresh(backend).await?;
        let (a, b) = tokio::join!(Sessiond::start(&db.url), Sessiond::start(&db.url));
        add_user(&db.url, "alice");
        let operator_id = add_user(&db.url, "operator");
        let operator_token = add_token(&db.url, &operator_id, ALL_PERMISSIONS);
        Some(Self { db, a, b, operator_id, operator_token })
    }

    fn via_a(&self) -> Rest {
        Rest::new(&self.a.base, &self.operator_token)
    }

    fn via_b(&self) -> Rest {
        Rest::new(&self.b.base, &self.operator_token)
    }

    async fn stop(self) {
        let Self { db, a, b, .. } = self;
        drop((a, b));
        db.remove().await;
    }
}

async fn a_session_created_through_one_is_read_and_terminated_through_the_other(backend: Backend) {
    let Some(pair) = Pair::start(backend).await else { return };
    let created = pair.via_a().create_session("alice").await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.body["sessionId"].as_str().unwrap().to_owned();

    let read = pair.via_b().get_session(&id, None).await;
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.body["session"]["factors"]["user"]["loginName"], "alice");
    assert_eq!(read.body["session"]["sequence"], "1");

    let deleted = pair.via_b().delete_session(&id).await;
    assert_eq!((deleted.status, deleted.sequence()), (200, 2), "{deleted:?}");
    let gone = pair.via_a().get_session(&id, None).await;
    assert_eq!((gone.status, gone.code()), (404, 5), "{gone:?}");
    let listed = pair.via_a().list_sessions().await;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert!(listed.body.get("sessions").is_none(), "a terminated session is not listed: {listed:?}");
    pair.stop().await;
}

async fn a_token_rotated_through_one_is_refused_by_the_other_at_once(backend: Backend) {
    let Some(pair) = Pair::start(backend).await else { return };
    let created = pair.via_a().create_session("alice").await;
    let id = created.body["sessionId"].as_str().unwrap().to_owned();
    let first = created.body["sessionToken"].as_str().unwrap().to_owned();

    let changed = pair.via_a().set_metadata(&id, Some(&first), "k", &STANDARD.encode("v")).await;
    assert_eq!(changed.status, 200, "{changed:?}");
    let second = changed.body["sessionToken"].as_str().unwrap().to_owned();
    assert_ne!(first, second);

    // The very next call through the other process: the old token is refused, the new one works.
    let stale = pair.via_b().get_session(&id, Some(&first)).await;
    assert_eq!((stale.status, stale.code()), (403, 7), "{stale:?}");
    let stale_write = pair.via_b().set_metadata(&id, Some(&first), "k", &STANDARD.encode("w")).await;
    assert_eq!((stale_write.status, stale_write.code()), (403, 7), "{stale_write:?}");
    let fresh = pair.via_b().get_session(&id, Some(&second)).await;
    assert_eq!(fresh.status, 200, "{fresh:?}");
    assert_eq!(fresh.body["session"]["metadata"]["k"], STANDARD.encode("v"));
    pair.stop().await;
}

async fn a_token_revoked_or_user_disabled_by_the_cli_is_refused_by_both_at_once(backend: Backend) {
    let Some(pair) = Pair::start(backend).await else { return };
    let user_id = add_user(&pair.db.url, "carol");
    let carols = add_token(&pair.db.url, &user_id, &["session.read"]);
    let spare = add_token(&pair.db.url, &pair.operator_id, &["session.read"]);
    for server in [&pair.a, &pair.b] {
        for token in [&carols, &spare] {
            let answer = Rest::new(&server.base, token).list_sessions().await;
            assert_eq!(answer.status, 200, "{answer:?}");
        }
    }

    // `--` before ids: they may start with `-`.
    cli(&pair.db.url, &["tokens", "revoke", "--", token_id(&spare)]);
    for server in [&pair.a, &pair.b] {
        let answer = Rest::new(&server.base, &spare).list_sessions().await;
        assert_eq!((answer.status, answer.code()), (401, 16), "revoked token through {}: {answer:?}", server.base);
    }

    cli(&pair.db.url, &["users", "disable", "--", &user_id]);
    for server in [&pair.a, &pair.b] {
        let answer = Rest::new(&server.base, &carols).list_sessions().await;
        assert_eq!((answer.status, answer.code()), (401, 16), "disabled user through {}: {answer:?}", server.base);
    }
    cli(&pair.db.url, &["users", "enable", "--", &user_id]);
    for server in [&pair.a, &pair.b] {
        let answer = Rest::new(&server.base, &carols).list_sessions().await;
        assert_eq!(answer.status, 200, "re-enabled user through {}: {answer:?}", server.base);
    }
    pair.stop().await;
}

async fn conflicting_writes_through_both_never_lose_an_update(backend: Backend) {
    const TASKS_PER_SERVER: usize = 6;
    const WRITES_PER_TASK: usize = 10;
    let Some(pair) = Pair::start(backend).await else { return };
    let created = pair.via_a().create_session("alice").await;
    let id = created.body["sessionId"].as_str().unwrap().to_owned();

    // Every write sets key `k` to a value of its own, through either server, all at once.
    let mut tasks = Vec::new();
    for (name, rest) in [("a", pair.via_a()), ("b", pair.via_b())] {
        for task in 0..TASKS_PER_SERVER {
            let (rest, id) = (rest.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for write in 0..WRITES_PER_TASK {
                    let value = format!("{name}-{task}-{write}");
                    let answer = rest.set_metadata(&id, None, "k", &STANDARD.encode(&value)).await;
                    outcomes.push((value, answer));
                }
                outcomes
            }));
        }
    }
    let mut won = Vec::new();
    let mut aborted = 0;
    for task in tasks {
        for (value, answer) in task.await.unwrap() {
            match (answer.status, answer.code()) {
                (200, _) => won.push((answer.sequence(), value)),
                // The write lost to a concurrent one and changed nothing.
                (409, 10) => aborted += 1,
                _ => panic!("unexpected answer {answer:?}"),
            }
        }
    }
    eprintln!("{} writes won, {aborted} were aborted", won.len());
    assert!(!won.is_empty());
    let sequences: BTreeSet<u64> = won.iter().map(|(s, _)| *s).collect();
    assert_eq!(sequences.len(), won.len(), "two successful writes share a sequence");

    let store = store::open(&pair.db.url, Durability::Normal).await.unwrap();
    let session = store.session(&id).await.unwrap().unwrap();
    assert_eq!(session.sequence, 1 + won.len() as u64, "every acknowledged write is in the row");
    let last = won.iter().max().unwrap();
    assert_eq!(session.metadata["k"], last.1.as_bytes(), "the row holds the last acknowledged write");
    let history: Vec<u64> = store.session_history(&id).await.unwrap().iter().map(|h| h.sequence).collect();
    assert_eq!(history, (1..=session.sequence).collect::<Vec<_>>(), "the history is gapless");
    assert_eq!(history[1..].iter().copied().collect::<BTreeSet<_>>(), sequences);
    store.close().await;
    pair.stop().await;
}

async fn concurrent_migrations_apply_the_schema_once(backend: Backend) {
    let Some(db) = TestDb::fresh(backend).await else { return };
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || sessiond_cli(&url, &["migrate"]))
        })
        .collect();
    for run in runs {
        let out = run.join().unwrap();
        assert!(out.status.success(), "a concurrent migrate failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let applied = match backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open(db.url.trim_start_matches("sqlite:")).unwrap();
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
            (1..=version).collect()
        }
        Backend::Postgres => {
            let schema = db.postgres_schema().unwrap();
            let base = backend::postgres_base_url().unwrap();
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await.unwrap();
            sqlx::query_scalar(&format!("SELECT version FROM {schema}.schema_migrations ORDER BY version"))
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
    };
    let dir = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let known = std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR"))).unwrap().count();
    assert_eq!(applied, (1..=i64::try_from(known).unwrap()).collect::<Vec<_>>(), "each migration once");
    db.remove().await;
}

async fn an_in_process_server_and_a_process_share_the_database(backend: Backend) {
    let Some(db) = TestDb::fresh(backend).await else { return };
    // The in-process server is spawned, as test harnesses do: its future must be `Send`.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let inner = format!("http://{}", listener.local_addr().unwrap());
    let config = sessiond::config::Config {
        database: db.url.clone(),
        secrets_key_file: db.secrets_key_file.clone(),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(sessiond::server::run(listener, config, async move {
        let _ = stopped.await;
    }));
    let outer = Sessiond::start(&db.url).await;
    add_user(&db.url, "alice");
    let operator = add_user(&db.url, "operator");
    let token = add_token(&db.url, &operator, ALL_PERMISSIONS);

    let created = Rest::new(&inner, &token).create_session("alice").await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.body["sessionId"].as_str().unwrap();
    let read = Rest::new(&outer.base, &token).get_session(id, None).await;
    assert_eq!(read.status, 200, "{read:?}");

    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    drop(outer);
    db.remove().await;
}

/// Wrong passwords sent through both processes at once: together they verify no more than the
/// limit (5 by default), the right password is refused afterwards by both, and `users unlock`
/// restores it.
async fn guesses_split_over_both_processes_never_outrun_the_lockout(backend: Backend) {
    let Some(pair) = Pair::start(backend).await else { return };
    let user_id = add_user(&pair.db.url, "dave");
    let store = store::open(&pair.db.url, Durability::Normal).await.unwrap();
    Users::new(store.clone(), PasswordHasher::default()).set_password(&user_id, "right".into()).await.unwrap();
    store.close().await;
    let check = |password: &str| serde_json::json!({"checks": {"user": {"userId": user_id}, "password": {"password": password}}});

    let (a, b) = (pair.via_a(), pair.via_b());
    let guesses = (0..200).map(|i| {
        let (via, body) = (if i % 2 == 0 { a.clone() } else { b.clone() }, check(&format!("guess {i}")));
        async move {
            // Password checks past the server's hashing capacity are refused with "retry
            // shortly" (429, USER-HashingBusy) before anything is verified; a client retries.
            for _ in 0..1_000 {
                let answer = via.create_session_with(body.clone()).await;
                if answer.status != 429 {
                    return answer;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("a guess was refused as busy a thousand times");
        }
    });
    let answers = join_all(guesses).await;
    let verified = answers.iter().filter(|a| (a.status, a.code()) == (400, 3)).count();
    let refused = answers.iter().filter(|a| (a.status, a.code()) == (400, 9)).count();
    assert_eq!(verified + refused, 200, "only wrong or locked: {:?}", answers.iter().find(|a| a.status != 400));
    assert!(verified <= 5, "{verified} wrong passwords verified across two processes, limit 5");

    for via in [&a, &b] {
        let right = via.create_session_with(check("right")).await;
        assert_eq!((right.status, right.code()), (400, 9), "{right:?}");
    }
    cli(&pair.db.url, &["users", "unlock", "--", &user_id]);
    let right = b.create_session_with(check("right")).await;
    assert_eq!(right.status, 201, "{right:?}");
    pair.stop().await;
}

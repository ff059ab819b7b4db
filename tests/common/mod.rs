//! What the integration tests share: a real sessiond serving on 127.0.0.1:0 over a fresh
//! database, users and API tokens made on the same store, and one client for every wire format.
//! The listener is bound before the server task is spawned, so no test waits for startup.

// Each test binary uses a different part of the harness; nothing here is exported.
#![allow(dead_code, unreachable_pub)]

pub mod backend;
pub mod client;
pub mod soft_passkey;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use serde_json::{Value, json};
use sessiond::{
    config::Config,
    domain::{
        Permission, Permissions, Timestamp,
        password::PasswordHasher,
        user::{NewUser, UserState, Users},
    },
    keyfile, server,
    store::{self, Store},
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub use self::backend::Backend;
pub use self::client::{Outcome, Protocol, Rpc, user_check};
use self::{
    backend::TestDb,
    client::{Clients, Headers},
};

/// Runs the behaviour `$name(backend)` once per store backend, as `$name::sqlite` and
/// `$name::postgres` (the latter passes without running when PostgreSQL is not configured).
#[macro_export]
macro_rules! backend_test {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await
            }

            #[tokio::test]
            async fn postgres() {
                super::$name($crate::common::Backend::Postgres).await
            }
        }
    };
}

/// How long a server may take to stop before the test fails instead of hanging.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server over its own database.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when the configuration asked for it (`127.0.0.1:0` works).
    pub metrics: Option<SocketAddr>,
    pub config: Config,
    /// User and token administration on the server's store.
    pub users: Users,
    pub clients: Clients,
    db: TestDb,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer").field("addr", &self.addr).field("database", &self.config.database).finish()
    }
}

/// A user with an API token.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    pub login_name: String,
    pub token: String,
}

/// A session as CreateSession answered it.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: String,
    pub token: String,
    pub details: Value,
}

impl TestServer {
    /// Serves on `db` with the default configuration.
    pub async fn start(db: TestDb) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// Serves on `db` with the default configuration as `configure` changes it.
    pub async fn start_with(db: TestDb, configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            database: db.url.clone(),
            secrets_key_file: db.secrets_key_file.clone(),
            shutdown_grace: Duration::from_secs(5),
            ..Config::default()
        };
        configure(&mut config);
        let (addr, metrics, shutdown, task, users) = launch(&config).await;
        let clients = Clients::new(addr);
        Self { addr, metrics, clients, config, users, db, shutdown: Some(shutdown), task: Some(task) }
    }

    /// A fresh database of `backend` and a server on it; `None` when that backend is not
    /// configured on this machine (PostgreSQL without `SESSIOND_TEST_POSTGRES`).
    pub async fn on(backend: Backend) -> Option<Self> {
        Some(Self::start(TestDb::fresh(backend).await?).await)
    }

    /// As `on`, configured by `configure`.
    pub async fn on_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Option<Self> {
        Some(Self::start_with(TestDb::fresh(backend).await?, configure).await)
    }

    /// A fresh SQLite database and a server on it.
    pub async fn sqlite() -> Self {
        Self::start(TestDb::fresh(backend::Backend::Sqlite).await.expect("SQLite is always available")).await
    }

    /// A fresh SQLite database and a server on it, configured by `configure`.
    pub async fn sqlite_with(configure: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::fresh(backend::Backend::Sqlite).await.expect("SQLite is always available");
        Self::start_with(db, configure).await
    }

    /// Sends shutdown and waits for the server to finish (calls in flight, then the store).
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(STOP_TIMEOUT, task)
                .await
                .expect("the server stops within the timeout")
                .expect("the server task does not panic")
                .expect("the server stops cleanly");
        }
    }

    /// Stops the server, then serves again on the same database (on a new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        let (addr, metrics, shutdown, task, users) = launch(&self.config).await;
        self.addr = addr;
        self.metrics = metrics;
        self.clients = Clients::new(addr);
        self.users = users;
        self.shutdown = Some(shutdown);
        self.task = Some(task);
    }

    /// The database this server runs on.
    pub fn db(&self) -> &TestDb {
        &self.db
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// An active user (login name = display name) without tokens.
    pub async fn user(&self, login_name: &str) -> String {
        let new = NewUser { login_name: login_name.to_owned(), ..NewUser::default() };
        self.users.add_user(new).await.expect("add user").id
    }

    /// An API token for `user_id` with `permissions`, expiring at `expires_at`.
    pub async fn token_expiring(
        &self,
        user_id: &str,
        permissions: &[Permission],
        expires_at: Option<Timestamp>,
    ) -> (String, String) {
        let permissions: Permissions = permissions.iter().copied().collect();
        let (record, token) = self.users.add_token(user_id, permissions, expires_at).await.expect("add token");
        (record.id, token.to_bearer())
    }

    /// An API token for `user_id` with `permissions`.
    pub async fn token(&self, user_id: &str, permissions: &[Permission]) -> String {
        self.token_expiring(user_id, permissions, None).await.1
    }

    /// A new user with a token holding `permissions`.
    pub async fn actor(&self, login_name: &str, permissions: &[Permission]) -> Actor {
        let id = self.user(login_name).await;
        let token = self.token(&id, permissions).await;
        Actor { id, login_name: login_name.to_owned(), token }
    }

    pub async fn disable(&self, user_id: &str) {
        self.users.set_state(user_id, UserState::Inactive).await.expect("disable user");
    }

    pub async fn revoke(&self, token_id: &str) {
        self.users.revoke_token(token_id).await.expect("revoke token");
    }

    /// One RPC over `protocol`, authenticated with `token`.
    pub async fn call(&self, protocol: Protocol, rpc: Rpc, request: Value, token: &str) -> Outcome {
        self.clients.call(protocol, rpc, request, &Headers::bearer(token)).await
    }

    /// One RPC over `protocol` with exactly `headers` (authorization included or not).
    pub async fn call_with(&self, protocol: Protocol, rpc: Rpc, request: Value, headers: &Headers) -> Outcome {
        self.clients.call(protocol, rpc, request, headers).await
    }

    /// Creates a session for `user_id` over `protocol`; panics unless it succeeds.
    pub async fn create(&self, protocol: Protocol, user_id: &str, token: &str) -> Created {
        let outcome = self.call(protocol, Rpc::CreateSession, json!({ "checks": user_check(user_id) }), token).await;
        let body = outcome.ok();
        Created { id: outcome.str("/sessionId"), token: outcome.str("/sessionToken"), details: body["details"].clone() }
    }
}

/// The secret of an `otpauth://` URI, as an authenticator app reads it (base32, RFC 4648).
pub fn otpauth_secret(uri: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let encoded = uri.split(['?', '&']).find_map(|p| p.strip_prefix("secret=")).expect("the URI has a secret");
    let (mut bits, mut count, mut out) = (0u64, 0u32, Vec::new());
    for c in encoded.bytes() {
        let value = ALPHABET.iter().position(|&a| a == c).expect("base32") as u64;
        bits = (bits << 5) | value;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

/// What `launch` started: the API's address, the metrics' (if asked for), the shutdown, the task.
type Launched = (SocketAddr, Option<SocketAddr>, oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>, Users);

/// Opens the store, binds 127.0.0.1:0 (and the metrics address, if configured) and spawns `serve`;
/// the listeners are accepting on return.
async fn launch(config: &Config) -> Launched {
    let store: Arc<dyn Store> = store::open(&config.database, Default::default()).await.expect("open the store");
    let secrets = keyfile::unlock(&config.database, config.secrets_key_file.as_deref(), Arc::clone(&store))
        .await
        .expect("the secrets key fits the database");
    let users = Users::new(Arc::clone(&store), PasswordHasher::default()).with_secrets(secrets);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    let metrics_listener = match config.metrics_listen {
        Some(address) => Some(TcpListener::bind(address).await.expect("bind the metrics address")),
        None => None,
    };
    let metrics = metrics_listener.as_ref().map(|l| l.local_addr().expect("bound metrics address"));
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task =
        tokio::spawn(server::serve_with_metrics(listener, metrics_listener, config.clone(), store, async move {
            let _ = stopped.await;
        }));
    (addr, metrics, shutdown, task, users)
}

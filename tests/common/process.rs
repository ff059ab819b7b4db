//! Real `sessiond` processes for tests that need more than one server, or a server that outlives
//! its database: spawn `serve` on a free port, wait until it accepts connections, run the admin
//! CLI, talk REST. Every process is killed when its guard drops, whatever the test's outcome.

// Each test crate uses a part of this file, and its items are public to whichever crate includes it.
#![allow(dead_code, unreachable_pub)]

use std::{
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// How long a server may take to accept connections after it is spawned.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A running `sessiond serve`; killed on drop.
#[derive(Debug)]
pub struct Sessiond {
    child: Child,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: tempfile::NamedTempFile,
}

impl Sessiond {
    /// Spawns `sessiond serve` on a free port over `database` and waits (bounded) until it accepts
    /// TCP connections. Panics, with the server's log, if it exits or never listens.
    pub async fn start(database: &str) -> Self {
        Self::start_with(database, &[]).await
    }

    /// As `start`, with more arguments for `serve`.
    pub async fn start_with(database: &str, args: &[&str]) -> Self {
        let addr = free_addr();
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let child = sessiond_command(database)
            .args(["serve", "--listen", &addr.to_string()])
            .args(args)
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("the log file reopens"))
            .spawn()
            .expect("sessiond spawns");
        let mut server = Self { child, addr, base: format!("http://{addr}"), log };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be polled") {
                panic!("sessiond exited with {status} before listening; its log:\n{}", self.log());
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            assert!(
                started.elapsed() < READY_WITHIN,
                "sessiond did not listen within {READY_WITHIN:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Is the process still alive (no panic, no exit)?
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("the child can be polled").is_none()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Sessiond {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address nobody listens on right now.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("its address")
}

/// `sessiond --database DB`, with the test key on PostgreSQL (`SESSIOND_SECRETS_KEY_FILE`).
pub fn sessiond_command(database: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sessiond"));
    command.args(["--database", database]).env_remove("SESSIOND_SECRETS_KEY_FILE");
    // Servers run side by side: none takes the fixed default metrics port.
    command.env("SESSIOND_METRICS_LISTEN", "none");
    if let Some(key_file) = super::backend::secrets_key_file_for(database) {
        command.env("SESSIOND_SECRETS_KEY_FILE", key_file);
    }
    command
}

/// Runs the admin CLI (`sessiond --database DB ARGS...`) to completion.
pub fn sessiond_cli(database: &str, args: &[&str]) -> Output {
    sessiond_command(database).args(args).env("RUST_LOG", "warn").stdin(Stdio::null()).output().expect("sessiond runs")
}

/// Runs the admin CLI, which must succeed; returns what it printed, trimmed.
pub fn cli(database: &str, args: &[&str]) -> String {
    let out = sessiond_cli(database, args);
    assert!(
        out.status.success(),
        "sessiond {args:?} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output").trim().to_owned()
}

/// Adds a user; returns its id.
pub fn add_user(database: &str, login_name: &str) -> String {
    cli(database, &["users", "add", "--login-name", login_name])
}

/// Issues an API token; returns the bearer token (`<id>.<secret>`).
pub fn add_token(database: &str, user_id: &str, permissions: &[&str]) -> String {
    // `--user=ID`: ids are base64url and may start with `-`, which clap would take for a flag.
    let user = format!("--user={user_id}");
    let mut args = vec!["tokens", "add", &user];
    for p in permissions {
        args.extend(["--permission", p]);
    }
    cli(database, &args)
}

/// The id part of a bearer token, as `tokens revoke` takes it.
pub fn token_id(bearer: &str) -> &str {
    bearer.split_once('.').expect("a token is id.secret").0
}

/// A REST caller of one server with one API token.
#[derive(Debug, Clone)]
pub struct Rest {
    http: reqwest::Client,
    pub base: String,
    pub bearer: String,
}

/// A REST answer: the HTTP status and the JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The `google.rpc.Status` code of an error body.
    pub fn code(&self) -> i64 {
        self.body["code"].as_i64().unwrap_or_default()
    }

    /// `details.sequence` of a success (a string in proto3 JSON).
    pub fn sequence(&self) -> u64 {
        self.body["details"]["sequence"].as_str().and_then(|s| s.parse().ok()).unwrap_or_default()
    }
}

impl Rest {
    pub fn new(base: &str, bearer: &str) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client");
        Self { http, base: base.to_owned(), bearer: bearer.to_owned() }
    }

    pub fn with_token(&self, bearer: &str) -> Self {
        Self { bearer: bearer.to_owned(), ..self.clone() }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.bearer));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
    }

    /// CreateSession with any request body.
    pub async fn create_session_with(&self, body: Value) -> Answer {
        self.send(reqwest::Method::POST, "/v2/sessions", Some(body)).await
    }

    /// CreateSession for the user with `login_name`.
    pub async fn create_session(&self, login_name: &str) -> Answer {
        let body = serde_json::json!({"checks": {"user": {"loginName": login_name}}});
        self.send(reqwest::Method::POST, "/v2/sessions", Some(body)).await
    }

    pub async fn get_session(&self, id: &str, session_token: Option<&str>) -> Answer {
        let query = session_token.map(|t| format!("?sessionToken={t}")).unwrap_or_default();
        self.send(reqwest::Method::GET, &format!("/v2/sessions/{id}{query}"), None).await
    }

    /// SetSession changing one metadata key (`value` is base64).
    pub async fn set_metadata(&self, id: &str, session_token: Option<&str>, key: &str, value_b64: &str) -> Answer {
        let mut body = serde_json::json!({"metadata": {key: value_b64}});
        if let Some(token) = session_token {
            body["sessionToken"] = Value::String(token.to_owned());
        }
        self.send(reqwest::Method::PATCH, &format!("/v2/sessions/{id}"), Some(body)).await
    }

    pub async fn delete_session(&self, id: &str) -> Answer {
        self.send(reqwest::Method::DELETE, &format!("/v2/sessions/{id}"), None).await
    }

    pub async fn list_sessions(&self) -> Answer {
        self.send(reqwest::Method::POST, "/v2/sessions/search", Some(serde_json::json!({}))).await
    }
}

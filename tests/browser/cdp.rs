//! A small Chrome DevTools Protocol client for the browser test: starts headless Chromium with a
//! fresh profile, attaches to one page over the browser's WebSocket, sends commands and waits
//! for their answers (and for the page's load event), nothing more.

use std::{path::Path, process::Stdio, time::Duration};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    net::TcpStream,
    process::{Child, Command},
};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

/// How long any one DevTools exchange may take before the test fails instead of hanging.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A headless Chromium and one page in it.
pub(crate) struct Browser {
    _child: Child,
    _profile: tempfile::TempDir,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session_id: String,
    next_id: u64,
    /// Events seen while waiting for answers (their method names).
    events: Vec<String>,
}

impl Browser {
    /// Starts `chromium` headless (the flags this machine's Chromium needs, a fresh profile, a
    /// DevTools port of its choosing, read from the line it prints) and opens a blank page.
    pub(crate) async fn launch(chromium: &Path) -> Self {
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let endpoint = tokio::time::timeout(EXCHANGE_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("chromium's stderr") {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("chromium exited without a DevTools endpoint");
        })
        .await
        .expect("chromium announces its DevTools endpoint");
        // Keep draining stderr, so that Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (socket, _) = tokio_tungstenite::connect_async(endpoint.as_str()).await.expect("the DevTools WebSocket");
        let mut browser = Self {
            _child: child,
            _profile: profile,
            socket,
            session_id: String::new(),
            next_id: 0,
            events: Vec::new(),
        };
        let target = browser.send(None, "Target.createTarget", json!({ "url": "about:blank" })).await;
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached =
            browser.send(None, "Target.attachToTarget", json!({ "targetId": target_id, "flatten": true })).await;
        browser.session_id = attached["sessionId"].as_str().expect("a session id").to_owned();
        browser
    }

    /// A command to the page; its result (panics on a protocol error).
    pub(crate) async fn command(&mut self, method: &str, params: Value) -> Value {
        let session = self.session_id.clone();
        self.send(Some(&session), method, params).await
    }

    /// Navigates and waits for the page's load event.
    pub(crate) async fn open(&mut self, url: &str) {
        self.command("Page.enable", json!({})).await;
        self.events.clear();
        self.command("Page.navigate", json!({ "url": url })).await;
        tokio::time::timeout(EXCHANGE_TIMEOUT, async {
            while !self.events.iter().any(|e| e == "Page.loadEventFired") {
                let message = self.receive().await;
                self.note_event(&message);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{url} did not load"));
    }

    /// Evaluates `expression` in the page, awaiting a promise; its value as JSON.
    pub(crate) async fn evaluate(&mut self, expression: &str) -> Value {
        let params = json!({ "expression": expression, "awaitPromise": true, "returnByValue": true });
        let result = self.command("Runtime.evaluate", params).await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    async fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = session.into();
        }
        self.socket.send(Message::text(message.to_string())).await.expect("a DevTools command goes out");
        tokio::time::timeout(EXCHANGE_TIMEOUT, async {
            loop {
                let message = self.receive().await;
                if message["id"].as_u64() == Some(id) {
                    if let Some(error) = message.get("error") {
                        panic!("{method} failed: {error}");
                    }
                    return message["result"].clone();
                }
                self.note_event(&message);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{method} got no answer"))
    }

    fn note_event(&mut self, message: &Value) {
        if let Some(method) = message["method"].as_str() {
            self.events.push(method.to_owned());
        }
    }

    async fn receive(&mut self) -> Value {
        loop {
            match self.socket.next().await.expect("the DevTools socket stays open").expect("a DevTools message") {
                Message::Text(text) => return serde_json::from_str(&text).expect("DevTools JSON"),
                Message::Close(frame) => panic!("the DevTools socket closed: {frame:?}"),
                _ => continue,
            }
        }
    }
}

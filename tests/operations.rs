//! Operating the server: slow clients are cut off, silent and idle connections are closed, the
//! connection cap holds, overload is shed at once, shutdown lets calls in flight finish, and the
//! sweeper removes ended sessions while their history stays.

use std::{sync::Arc, time::Duration};

use sessiond::{
    config::Config,
    domain::{
        Permission,
        password::PasswordHasher,
        user::{NewUser, Users},
    },
    store::{self, Store},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
    time::{Instant, timeout},
};

/// A server on a fresh SQLite file with a user whose token holds every permission.
struct Harness {
    addr: std::net::SocketAddr,
    token: String,
    store: Arc<dyn Store>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start(configure: impl FnOnce(&mut Config)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("sessiond.db").display());
    let store = store::open(&url, Default::default()).await.unwrap();
    let users = Users::new(Arc::clone(&store), PasswordHasher::default());
    let user = users.add_user(NewUser { login_name: "ops".into(), ..NewUser::default() }).await.unwrap();
    let permissions =
        [Permission::SessionRead, Permission::SessionWrite, Permission::SessionDelete].into_iter().collect();
    let (_, token) = users.add_token(&user.id, permissions, None).await.unwrap();
    let mut config = Config { database: url, ..Config::default() };
    configure(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(sessiond::server::serve(listener, config, Arc::clone(&store), async {
        let _ = stopped.await;
    }));
    Harness { addr, token: token.to_bearer(), store, stop: Some(stop), task, _dir: dir }
}

/// Sends a REST CreateSession whose body is `body`, of which only `sent` bytes go out now.
async fn partial_create(h: &Harness, body: &str, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    let head = format!(
        "POST /v2/sessions HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        h.token,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..sent]).await.unwrap();
    stream
}

/// Reads until the peer closes; returns what arrived. Bounded, so a hang fails the test.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

async fn rest_create(h: &Harness) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}/v2/sessions", h.addr))
        .bearer_auth(&h.token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn half_sent_headers_are_cut_off() {
    let h = start(|c| c.header_read_timeout = Duration::from_millis(200)).await;
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    stream.write_all(b"POST /v2/sessions HTTP/1.1\r\nhost: test\r\n").await.unwrap();
    let started = Instant::now();
    read_to_close(&mut stream).await;
    assert!(started.elapsed() < Duration::from_secs(5), "closed after the header timeout, not never");
}

#[tokio::test]
async fn a_trickled_body_times_out_with_deadline_exceeded() {
    let h = start(|c| c.body_read_timeout = Duration::from_millis(200)).await;
    let mut stream = partial_create(&h, r#"{"metadata": {}}"#, 3).await;
    let answer = read_to_close_or_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains("REQUEST-BodyTimeout"), "{answer}");
}

#[tokio::test]
async fn a_trickled_grpc_web_body_times_out_with_deadline_exceeded_and_its_detail() {
    let h = start(|c| c.body_read_timeout = Duration::from_millis(200)).await;
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    let head = format!(
        "POST /zitadel.session.v2.SessionService/CreateSession HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {}\r\ncontent-type: application/grpc-web+proto\r\ncontent-length: 100\r\n\r\n",
        h.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[0, 0, 0]).await.unwrap();
    let answer = read_to_close_or_response(&mut stream).await;
    // The status travels in the trailer frame, with its detail, as every other error's does.
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("grpc-status:4\r\n"), "DEADLINE_EXCEEDED: {answer}");
    assert!(answer.contains("REQUEST-BodyTimeout") && answer.contains("grpc-status-details-bin:"), "{answer}");
    assert!(!answer.contains("tonic-web"), "no framework text reaches the client: {answer}");
}

/// Reads one HTTP/1.1 response (headers and a content-length body).
async fn read_to_close_or_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = timeout(deadline - Instant::now(), stream.read(&mut buf)).await.expect("an answer arrives").unwrap();
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if n == 0 {
            return text;
        }
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn overload_is_shed_at_once_with_resource_exhausted() {
    let h = start(|c| c.max_in_flight = 1).await;
    let body = r#"{"metadata": {"k": "dg=="}}"#;
    // This call holds the only slot while its body has not arrived.
    let mut holder = partial_create(&h, body, 5).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let shed = loop {
        let response = rest_create(&h).await;
        if response.status() == 429 {
            break response.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "a second call was never shed (last status {})", response.status());
    };
    assert!(shed.contains("SERVER-Overloaded"), "{shed}");
    for _ in 0..3 {
        assert_eq!(rest_create(&h).await.status(), 429, "refused while the slot is held");
    }
    holder.write_all(&body.as_bytes()[5..]).await.unwrap();
    let answer = read_to_close_or_response(&mut holder).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "the holder still completes: {answer}");
    // The refused calls kept no claim on the slot: once it is free, the next call is served.
    assert_eq!(rest_create(&h).await.status(), 201, "the freed slot admits the next call");
}

#[tokio::test]
async fn shutdown_lets_calls_in_flight_finish() {
    let mut h = start(|_| {}).await;
    let body = r#"{"metadata": {"k": "dg=="}}"#;
    let mut in_flight = partial_create(&h, body, 5).await;
    // Connections are accepted in order: once a later one is answered, ours is being served.
    assert_eq!(rest_create(&h).await.status(), 201);
    h.stop.take().unwrap().send(()).unwrap();
    in_flight.write_all(&body.as_bytes()[5..]).await.unwrap();
    let answer = read_to_close_or_response(&mut in_flight).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "the call in flight completes: {answer}");
    timeout(Duration::from_secs(10), h.task).await.expect("the server stops").unwrap().unwrap();
    assert!(TcpStream::connect(h.addr).await.is_err(), "no new connections after shutdown");
}

#[tokio::test]
async fn sweeper_removes_ended_sessions_and_keeps_their_history() {
    let h = start(|c| {
        c.retention = Duration::ZERO;
        c.sweep_interval = Duration::from_millis(20);
    })
    .await;
    let created: serde_json::Value = rest_create(&h).await.json().await.unwrap();
    let id = created["sessionId"].as_str().unwrap().to_owned();
    let deleted = reqwest::Client::new()
        .delete(format!("http://{}/v2/sessions/{id}", h.addr))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.store.session(&id).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the sweeper never removed the terminated session");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let history = h.store.session_history(&id).await.unwrap();
    assert_eq!(history.iter().map(|e| e.sequence).collect::<Vec<_>>(), vec![1, 2], "history stays");
}

/// The start of an h2c connection: the client preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_first_request_deadline() {
    let h = start(|c| c.first_request_timeout = Duration::from_millis(200)).await;
    let mut silent = TcpStream::connect(h.addr).await.unwrap();
    assert_eq!(read_to_close(&mut silent).await, "", "closed without an answer");
    // The server goes on serving.
    assert_eq!(rest_create(&h).await.status(), 201);
}

#[tokio::test]
async fn an_unfinished_or_unused_h2_connection_is_closed_at_the_first_request_deadline() {
    let h = start(|c| c.first_request_timeout = Duration::from_millis(200)).await;
    // Half the preface: not even the protocol is known yet.
    let mut half = TcpStream::connect(h.addr).await.unwrap();
    half.write_all(&H2_PREFACE[..12]).await.unwrap();
    // The whole preface, then no request.
    let mut unused = TcpStream::connect(h.addr).await.unwrap();
    unused.write_all(H2_PREFACE).await.unwrap();
    assert_eq!(read_to_close(&mut half).await, "", "closed without an answer");
    let answer = read_to_close(&mut unused).await;
    assert!(!answer.contains("HTTP/1.1"), "answered as HTTP/2: {answer:?}");
}

/// A plain HTTP/1.1 request that keeps the connection alive; returns after reading its answer.
async fn keep_alive_request(h: &Harness) -> TcpStream {
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    let request = format!("GET /v2/sessions/none HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {}\r\n\r\n", h.token);
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = read_to_close_or_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    stream
}

#[tokio::test]
async fn an_idle_http1_connection_is_closed_and_a_busy_one_is_not() {
    let h = start(|c| c.idle_timeout = Duration::from_millis(300)).await;
    let body = r#"{"metadata": {"k": "dg=="}}"#;
    // A call in flight (its body not sent yet) from before the idle connection's last call...
    let mut busy = partial_create(&h, body, 5).await;
    assert_eq!(rest_create(&h).await.status(), 201, "a later connection is served: ours is in flight");
    let mut idle = keep_alive_request(&h).await;
    // ... so once the idle connection is closed, the busy one has been quiet for longer.
    assert_eq!(read_to_close(&mut idle).await, "", "the idle connection is closed without a word");
    busy.write_all(&body.as_bytes()[5..]).await.unwrap();
    let answer = read_to_close_or_response(&mut busy).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "the busy call completes: {answer}");
}

#[tokio::test]
async fn an_idle_h2_connection_is_closed_with_goaway() {
    let h = start(|c| c.idle_timeout = Duration::from_millis(300)).await;
    let tcp = TcpStream::connect(h.addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/v2/sessions/none", h.addr))
        .header("authorization", format!("Bearer {}", h.token))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 404);
    // The client answers the server's pings; only the idle timeout can end the connection.
    let ended = timeout(Duration::from_secs(10), connection).await.expect("the idle connection is closed");
    ended.unwrap().expect("closed cleanly (GOAWAY, no error)");
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_are_closed_until_one_is_released() {
    let h = start(|c| {
        c.max_connections = 2;
        c.first_request_timeout = Duration::from_secs(600);
    })
    .await;
    let first = TcpStream::connect(h.addr).await.unwrap();
    let _second = TcpStream::connect(h.addr).await.unwrap();
    // Accepted in order, so the first two hold the cap when the third is accepted.
    let mut third = TcpStream::connect(h.addr).await.unwrap();
    assert_eq!(read_to_close(&mut third).await, "", "closed at once, without an answer");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // The server may not have seen the release yet: a refused client tries again.
        match reqwest::Client::new()
            .post(format!("http://{}/v2/sessions", h.addr))
            .bearer_auth(&h.token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
        {
            Ok(response) => {
                assert_eq!(response.status(), 201);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "never served after a connection was released: {e}"),
        }
        tokio::task::yield_now().await;
    }
}

//! Two measurements for BENCHMARKS.md (not tests), against sessiond started in-process on a
//! temporary SQLite database, over gRPC:
//!
//! 1. How long a password check takes to answer for a login name that does not exist, against one
//!    that does (wrong and right password): the answers must not tell an attacker which login
//!    names exist. One call at a time, the three kinds interleaved round by round.
//! 2. A login burst: `BURST` password checks at once, while GetSession is called one at a time
//!    beside them. How the burst is answered (verified, shed) and how long its slowest answer
//!    took, and GetSession's latency during the burst against its latency alone.
//!
//! ```sh
//! cargo run --release --example login_timing -- 200 1100
//! ```

#![allow(clippy::print_stdout)] // an example prints what it measured

use std::time::{Duration, Instant};

use sessiond::{
    config::Config,
    domain::{
        Permission, Permissions,
        password::PasswordHasher,
        user::{NewUser, Users},
    },
    proto::session::{
        CheckPassword, CheckUser, Checks, CreateSessionRequest, GetSessionRequest, check_user,
        session_service_client::SessionServiceClient,
    },
    server, store,
};
use tonic::{Request, metadata::MetadataValue};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(200);
    let burst: usize = std::env::args().nth(2).map(|n| n.parse()).transpose()?.unwrap_or(1100);
    let dir = tempfile::tempdir()?;
    let config = Config {
        database: format!("sqlite:{}", dir.path().join("timing.db").display()),
        // Wrong passwords must keep being verified for the whole run.
        max_failed_attempts: i32::MAX,
        ..Config::default()
    };
    let store = store::open(&config.database, config.durability).await?;
    let users = Users::new(store.clone(), PasswordHasher::default());
    let app = users.add_user(NewUser { login_name: "app".into(), ..Default::default() }).await?;
    let (_, token) =
        users.add_token(&app.id, [Permission::SessionWrite].into_iter().collect::<Permissions>(), None).await?;
    users
        .add_user(NewUser { login_name: "alice".into(), password: Some("right".into()), ..Default::default() })
        .await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server::serve(listener, config, store, async {
        let _ = stopped.await;
    }));

    let bearer: MetadataValue<_> = format!("Bearer {}", token.to_bearer()).parse()?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect().await?;
    let mut client: SessionClient = SessionServiceClient::with_interceptor(channel, Bearer(bearer.clone()));
    let kinds = [
        ("unknown login name", "nobody", "guess"),
        ("known, wrong password", "alice", "guess"),
        ("known, right password", "alice", "right"),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
    for round in 0..rounds + 10 {
        for (i, (_, login_name, password)) in kinds.iter().enumerate() {
            let request = CreateSessionRequest {
                checks: Some(Checks {
                    user: Some(CheckUser { search: Some(check_user::Search::LoginName((*login_name).into())) }),
                    password: Some(CheckPassword { password: (*password).into() }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let started = Instant::now();
            let _ = client.create_session(request).await;
            // The first rounds warm up connections and caches.
            if round >= 10 {
                times[i].push(started.elapsed());
            }
        }
    }
    println!("{rounds} calls each, one at a time, interleaved");
    println!("{:<24} {:>10} {:>10} {:>10}", "password check", "p50 ms", "p90 ms", "× known");
    let median = |t: &mut Vec<Duration>| {
        t.sort();
        (t[t.len() / 2], t[t.len() * 9 / 10])
    };
    let (known_p50, _) = median(&mut times[1]);
    for ((name, _, _), t) in kinds.iter().zip(times.iter_mut()) {
        let (p50, p90) = median(t);
        let ratio = p50.as_secs_f64() / known_p50.as_secs_f64();
        println!("{name:<24} {:>10.2} {:>10.2} {ratio:>10.2}", ms(p50), ms(p90));
    }

    // 2. A login burst beside GetSession calls.
    let session = client
        .create_session(CreateSessionRequest {
            checks: Some(Checks {
                user: Some(CheckUser { search: Some(check_user::Search::LoginName("alice".into())) }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let get = |mut client: SessionClient, id: String, token: String| async move {
        let started = Instant::now();
        client.get_session(GetSessionRequest { session_id: id, session_token: Some(token) }).await.map(drop)?;
        Ok::<_, tonic::Status>(started.elapsed())
    };
    let mut alone = Vec::new();
    for _ in 0..200 {
        alone.push(get(client.clone(), session.session_id.clone(), session.session_token.clone()).await?);
    }
    // Enough connections that no check waits for an HTTP/2 stream on the client's side (the
    // server allows 200 per connection): every check of the burst reaches the server at once.
    let mut burst_clients = Vec::new();
    for _ in 0..burst.div_ceil(150) {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect().await?;
        burst_clients.push(SessionServiceClient::with_interceptor(channel, Bearer(bearer.clone())));
    }
    let checks: Vec<_> = (0..burst)
        .map(|i| {
            let mut client = burst_clients[i % burst_clients.len()].clone();
            tokio::spawn(async move {
                let request = CreateSessionRequest {
                    checks: Some(Checks {
                        user: Some(CheckUser { search: Some(check_user::Search::LoginName("alice".into())) }),
                        password: Some(CheckPassword { password: format!("guess {i}") }),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let started = Instant::now();
                let code = client.create_session(request).await.err().map_or(tonic::Code::Ok, |s| s.code());
                (code, started.elapsed())
            })
        })
        .collect();
    let mut during = Vec::new();
    while checks.iter().any(|c| !c.is_finished()) {
        during.push(get(client.clone(), session.session_id.clone(), session.session_token.clone()).await?);
    }
    let mut answers: std::collections::BTreeMap<String, usize> = Default::default();
    let mut slowest = Duration::ZERO;
    for check in checks {
        let (code, took) = check.await?;
        *answers.entry(format!("{code:?}")).or_default() += 1;
        slowest = slowest.max(took);
    }
    println!();
    println!("{burst} password checks at once: {answers:?}, slowest answer {:.0} ms", ms(slowest));
    let pct = |t: &mut Vec<Duration>, p: usize| {
        t.sort();
        t[(t.len() * p / 100).min(t.len() - 1)]
    };
    for (name, t) in [("GetSession alone", &mut alone), ("GetSession during the burst", &mut during)] {
        println!("{name:<28} {:>5} calls  p50 {:>7.2} ms  p99 {:>7.2} ms", t.len(), ms(pct(t, 50)), ms(pct(t, 99)));
    }
    let _ = stop.send(());
    serving.await??;
    Ok(())
}

type SessionClient =
    SessionServiceClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>>;

/// Puts the bearer token on every call.
#[derive(Debug, Clone)]
struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

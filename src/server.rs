//! The composition root: opens the store, builds tonic's routes and the front door around them,
//! and serves HTTP/1.1 and h2c on one listener until `shutdown` resolves; then lets calls in
//! flight finish and closes the store. Connections are capped, and each one is closed when it
//! overstays (see `connections`).

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context as _;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
};
use tonic::{body::Body, codec::CompressionEncoding};
use tower::ServiceExt as _;

use crate::{
    config::Config,
    connections::{self, Lifetimes, Verdict},
    domain::events::LoginEvents,
    domain::{
        Timestamp,
        otp::{CodeSender, NoDelivery},
        passkey::{Passkeys, RelyingParty},
        password::PasswordHasher,
        secrets::Secrets,
        session::{LockoutPolicy, Sessions},
        user::Users,
    },
    keyfile,
    metrics::{Metrics, TimedStore},
    notify::{Webhook, WebhookConfig},
    proto::{
        self, session::session_service_server::SessionServiceServer, user::user_service_server::UserServiceServer,
    },
    service::{
        SessionHandler,
        answers::AnswerBudget,
        auth::{Authenticated, Gate},
        users::UserHandler,
    },
    store::{self, Store},
    transport::{self, SESSION_SERVICE, USER_SERVICE, probes, stack},
};

/// Opens the configured store and serves on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = store::open(&config.database, config.durability)
        .await
        .with_context(|| format!("cannot open the database {}", store::redact_url(&config.database)))?;
    serve(listener, config, store, shutdown).await
}

/// Serves on `listener` over an open store until `shutdown` resolves; closes the store at the end.
/// Fails at once when the secrets key does not fit the database (see `keyfile::unlock`), or when
/// the metrics address (`config.metrics_listen`) cannot be bound.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics_listener = match config.metrics_listen {
        None => None,
        Some(address) => match TcpListener::bind(address).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                store.close().await;
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot listen for metrics on {address} (--metrics-listen; `none` turns it off)"
                )));
            }
        },
    };
    serve_with_metrics(listener, metrics_listener, config, store, shutdown).await
}

/// As `serve`, with `/metrics` on `metrics_listener` (none: no metrics) instead of the configured
/// address.
pub async fn serve_with_metrics(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: Config,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = metrics_listener.as_ref().map(|_| Metrics::new(Arc::clone(&store)));
    // Every store operation timed, the backends untouched.
    let store: Arc<dyn Store> = match &metrics {
        Some(metrics) => Arc::new(TimedStore::new(store, metrics)),
        None => store,
    };
    let secrets = match keyfile::unlock(&config.database, config.secrets_key_file.as_deref(), Arc::clone(&store)).await
    {
        Ok(secrets) => secrets,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    let code_sender = match code_sender(&config) {
        Ok(sender) => sender,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    let front_door = build_front_door(&config, Arc::clone(&store), secrets, code_sender, metrics.as_ref())?;
    let exporter = match (metrics_listener, &metrics) {
        (Some(listener), Some(metrics)) => {
            tracing::info!(address = %listener.local_addr()?, "metrics listening");
            Some(tokio::spawn(crate::metrics::serve_metrics(listener, Arc::clone(metrics))))
        }
        _ => None,
    };
    // hyper's body becomes tonic's at the door; every layer inside speaks `tonic::body::Body`.
    let service = front_door.map_request(|request: http::Request<hyper::body::Incoming>| request.map(Body::new));

    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper restarts this timer whenever it waits for a request head, kept-alive waits included:
    // an idle HTTP/1.1 connection is closed after it, or after the idle timeout if that is shorter.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.max_concurrent_streams)
        .max_local_error_reset_streams(1024)
        .max_pending_accept_reset_streams(200)
        .keep_alive_interval(Duration::from_secs(60))
        .keep_alive_timeout(Duration::from_secs(20));

    let lifetimes = Lifetimes { first_request: config.first_request_timeout, idle: config.idle_timeout };
    // One permit per open connection; shutdown takes them all back to know every one has closed.
    let max_connections = u32::try_from(config.max_connections.max(1)).unwrap_or(u32::MAX);
    let open = Arc::new(Semaphore::new(max_connections as usize));
    let mut at_capacity = false;
    let (stopping, shutdown_seen) = watch::channel(false);

    let sweeper = tokio::spawn(sweep(Arc::clone(&store), Retention::of(&config), config.sweep_interval, metrics));
    tracing::info!(
        address = %listener.local_addr()?,
        database = %store::redact_url(&config.database),
        max_connections,
        "sessiond listening"
    );
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Past the cap the connection is closed at once (dropped), so the descriptors
                // the process has left go to the database and to clients that will be served.
                let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
                    if !at_capacity {
                        tracing::warn!(max_connections, "connection limit reached: closing new connections");
                    }
                    at_capacity = true;
                    continue;
                };
                if std::mem::take(&mut at_capacity) {
                    tracing::info!(max_connections, "below the connection limit again");
                }
                let _ = stream.set_nodelay(true);
                let (tracked, mut watchdog) =
                    connections::track(service.clone(), lifetimes, shutdown_seen.clone());
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(tracked))
                    .into_owned();
                tokio::spawn(async move {
                    let _permit = permit;
                    tokio::pin!(connection);
                    loop {
                        tokio::select! {
                            result = connection.as_mut() => {
                                if let Err(e) = result {
                                    tracing::debug!(error = %e, "connection closed with an error");
                                }
                                break;
                            }
                            verdict = watchdog.next() => match verdict {
                                Verdict::Drain => connection.as_mut().graceful_shutdown(),
                                Verdict::Close => {
                                    tracing::debug!("connection overstayed; closing it");
                                    break;
                                }
                            },
                        }
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: finishing calls in flight");
    stopping.send_replace(true);
    if tokio::time::timeout(config.shutdown_grace, open.acquire_many(max_connections)).await.is_err() {
        tracing::warn!(grace = ?config.shutdown_grace, "calls still running after the grace period were cut off");
    }
    sweeper.abort();
    if let Some(exporter) = exporter {
        exporter.abort();
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Where one-time codes go: the configured webhook, or nowhere (only returned codes).
fn code_sender(config: &Config) -> anyhow::Result<Arc<dyn CodeSender>> {
    let Some(url) = &config.notify_webhook else { return Ok(Arc::new(NoDelivery)) };
    let webhook = WebhookConfig::load(url, config.notify_webhook_secret_file.as_deref(), &config.database)?;
    Ok(Arc::new(Webhook::start(webhook)?))
}

/// The front door around tonic's routes: the generated SessionService and UserService servers
/// (behind the token lookup, with gzip both ways), health and reflection.
pub fn build_front_door(
    config: &Config,
    store: Arc<dyn Store>,
    secrets: Secrets,
    code_sender: Arc<dyn CodeSender>,
    metrics: Option<&Arc<Metrics>>,
) -> anyhow::Result<transport::Inner> {
    let hasher = PasswordHasher::new(config.max_hash_wait);
    let lockout = LockoutPolicy {
        max_password_attempts: config.max_failed_attempts,
        max_otp_attempts: config.max_failed_otp_attempts,
    };
    let relying_party = RelyingParty::new(&config.webauthn_origins)?.with_lifetime(config.webauthn_ceremony_lifetime);
    let passkeys = Passkeys::new(Arc::clone(&store), secrets.clone(), relying_party.clone());
    let sessions = Sessions::new(Arc::clone(&store), hasher.clone(), lockout, secrets)
        .with_limits(config.limits)
        .with_code_delivery(code_sender, config.otp_code_lifetime)
        .with_relying_party(relying_party);
    let sessions = match metrics {
        Some(metrics) => sessions.with_events(Arc::clone(metrics) as Arc<dyn LoginEvents>),
        None => sessions,
    };
    let readiness = probes::Readiness::new(Arc::clone(&store), metrics.cloned());
    let users = Users::new(store, hasher);

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // Serving from the start: the store opened before we got here.
    let reporter = health_reporter.clone();
    tokio::spawn(async move {
        for service in [SESSION_SERVICE, USER_SERVICE] {
            reporter.set_service_status(service, tonic_health::ServingStatus::Serving).await;
        }
    });
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let answers = AnswerBudget::new(config.pending_answer_bytes, config.pending_answer_wait);
    let sessions = SessionServiceServer::new(SessionHandler::new(sessions).with_answer_budget(answers))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        // The body guard holds requests to the configured limit; the message may not pass it.
        .max_decoding_message_size(config.body_limit);
    let oidc = oidc_verifier(config)?;
    let user_service = UserServiceServer::new(UserHandler::new(passkeys))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(config.body_limit);
    let gate = Gate::new(users, oidc);
    let direct = stack::Direct::default()
        .with(Authenticated::new(sessions, gate.clone()))
        .with(Authenticated::new(user_service, gate.clone()));
    let routes = tonic::service::Routes::new(health_service).add_service(reflection_v1).add_service(reflection_v1alpha);
    let settings = stack::Settings {
        body_limit: config.body_limit,
        admission: transport::limits::Admission {
            max: config.max_in_flight,
            floor: ADMISSION_FLOOR,
            target: config.target_latency,
        },
        body_read_timeout: config.body_read_timeout,
        cors_origins: config.cors_origins.clone(),
        gate,
        metrics: metrics.map(|m| m.calls()),
        readiness,
    };
    stack::front_door(direct, routes, &settings)
}

/// With `--oidc-issuer`, the verifier of the issuer's JWTs, its keys being fetched (an issuer
/// that is away is logged, and retried when a token needs a key).
fn oidc_verifier(config: &Config) -> anyhow::Result<Option<Arc<crate::oidc::Verifier>>> {
    let Some(oidc) = &config.oidc else { return Ok(None) };
    let verifier = Arc::new(crate::oidc::Verifier::new(oidc.clone())?);
    verifier.start();
    tracing::info!(issuer = %oidc.issuer, audiences = ?oidc.audiences, "accepting the OIDC issuer's JWT access tokens");
    Ok(Some(verifier))
}

/// How long what the sweeper removes is kept.
#[derive(Debug, Clone, Copy)]
struct Retention {
    /// Rows of terminated and expired sessions.
    sessions: Duration,
    /// History entries.
    history: Duration,
}

impl Retention {
    fn of(config: &Config) -> Self {
        Self { sessions: config.retention, history: config.history_retention }
    }
}

/// History entries removed per store call: a long backlog is removed in steps, each short enough
/// not to hold the database away from the calls. The oldest entries lie together, on few pages.
const HISTORY_SWEEP_BATCH: u32 = 2_000;
/// Ended sessions removed per store call (of each kind, terminated and expired). Each can lie on
/// pages of its own in the table and its indexes, and SQLite keeps a copy of every page a job
/// changes until the job ends (in memory): 256 of each is at most a few MiB.
const SESSION_SWEEP_BATCH: u32 = 256;

/// Calls the in-flight limit always admits, however slow they are: one client's ordinary
/// concurrency (a closed loop of 64 calls is never shed). Above it the limit follows the rate
/// (`transport::admission`); password checks and slow clients do not pull it down.
const ADMISSION_FLOOR: usize = 64;

/// Runs one of the store's bounded sweeps until a step removes less than a whole batch (or fails);
/// returns how many it removed.
async fn in_steps<F>(what: &str, batch: u32, mut step: impl FnMut() -> F) -> u64
where
    F: std::future::Future<Output = crate::store::StoreResult<u64>>,
{
    let mut removed = 0;
    loop {
        match step().await {
            Ok(n) => {
                removed += n;
                if n < u64::from(batch) {
                    return removed;
                }
                tokio::task::yield_now().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "sweeping {what} failed");
                return removed;
            }
        }
    }
}

/// Removes the rows of sessions terminated or expired longer than `retention.sessions` ago, and
/// history entries older than `retention.history`.
async fn sweep(store: Arc<dyn Store>, retention: Retention, every: Duration, metrics: Option<Arc<Metrics>>) {
    let ago = |d: Duration| {
        Timestamp(Timestamp::now().micros().saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)))
    };
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let before = ago(retention.sessions);
        let sessions =
            in_steps("ended sessions", SESSION_SWEEP_BATCH, || store.sweep(before, SESSION_SWEEP_BATCH)).await;
        if sessions > 0 {
            tracing::info!(removed = sessions, "swept ended sessions");
        }
        let before = ago(retention.history);
        let removed =
            in_steps("session history", HISTORY_SWEEP_BATCH, || store.sweep_history(before, HISTORY_SWEEP_BATCH)).await;
        if removed > 0 {
            tracing::info!(removed, "swept session history past its retention");
        }
        if let Some(metrics) = &metrics {
            metrics.swept(sessions, removed);
        }
    }
}

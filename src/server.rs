//! The composition root: opens the store, builds the tonic router, the edge and the CORS layer,
//! and serves HTTP/1.1 and h2c on one listener until `shutdown` resolves; then lets calls in
//! flight finish and closes the store.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context as _;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use prost_reflect::DescriptorPool;
use tokio::net::TcpListener;

use crate::{
    config::Config,
    domain::{Timestamp, password::PasswordHasher, secrets::Secrets, session::Sessions, user::Users},
    keyfile, proto,
    service::SessionHandler,
    store::{self, Store},
    transport::{Edge, EdgeConfig, SESSION_SERVICE, cors::CorsGate},
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
/// Fails at once when the secrets key does not fit the database (see `keyfile::unlock`).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let secrets = match keyfile::unlock(&config.database, config.secrets_key_file.as_deref(), Arc::clone(&store)).await
    {
        Ok(secrets) => secrets,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    let edge = build_edge(&config, Arc::clone(&store), secrets)?;
    let service = CorsGate::new(edge, &config.cors_origins)?;

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.max_concurrent_streams)
        .max_local_error_reset_streams(1024)
        .max_pending_accept_reset_streams(200)
        .keep_alive_interval(Duration::from_secs(60))
        .keep_alive_timeout(Duration::from_secs(20));

    let sweeper = tokio::spawn(sweep(Arc::clone(&store), config.retention, config.sweep_interval));
    let graceful = GracefulShutdown::new();
    tracing::info!(
        address = %listener.local_addr()?,
        database = %store::redact_url(&config.database),
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
                let _ = stream.set_nodelay(true);
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service.clone()));
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: finishing calls in flight");
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(grace = ?config.shutdown_grace, "calls still running after the grace period were cut off");
    }
    sweeper.abort();
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The protocol edge: the SessionService handler, which the edge calls for every session RPC
/// whatever its wire format, and the tonic router for health and reflection.
pub fn build_edge(config: &Config, store: Arc<dyn Store>, secrets: Secrets) -> anyhow::Result<Edge> {
    let hasher = PasswordHasher::default();
    let sessions = Sessions::new(Arc::clone(&store), hasher.clone(), config.max_failed_attempts, secrets);
    let users = Users::new(store, hasher);

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // Serving from the start: the store opened before we got here.
    let reporter = health_reporter.clone();
    tokio::spawn(
        async move { reporter.set_service_status(SESSION_SERVICE, tonic_health::ServingStatus::Serving).await },
    );
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let handler = SessionHandler::new(sessions);
    let grpc = tonic::service::Routes::new(health_service).add_service(reflection_v1).add_service(reflection_v1alpha);

    let pool = DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET)?;
    let edge_config = EdgeConfig {
        body_limit: config.body_limit,
        max_in_flight: config.max_in_flight,
        body_read_timeout: config.body_read_timeout,
    };
    Edge::new(grpc, handler, pool, users, edge_config)
}

/// Removes the rows of sessions terminated or expired longer than `retention` ago; history stays.
async fn sweep(store: Arc<dyn Store>, retention: Duration, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let before = Timestamp(Timestamp::now().micros() - i64::try_from(retention.as_micros()).unwrap_or(i64::MAX));
        match store.sweep(before).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "swept ended sessions"),
            Err(e) => tracing::warn!(error = %e, "sweeping ended sessions failed"),
        }
    }
}

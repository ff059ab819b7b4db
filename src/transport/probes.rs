//! `GET /healthz` (the process serves) and `GET /readyz` (the store answers a trivial query within
//! `READY_WITHIN`; 503 with the reason otherwise) for orchestrators, on the API's port, answered
//! before the limits and the credential check, and outside the access log and the call metrics
//! (a probe is not a call). gRPC health (`grpc.health.v1.Health`) is served as before.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use tonic::body::Body;
use tower::{Layer, Service};

use super::{Next, PassOr, answer, pass};
use crate::{metrics::Metrics, store::Store};

/// How long the store has to answer the readiness query (an orchestrator's probe waits 1 s).
pub const READY_WITHIN: Duration = Duration::from_millis(500);
/// An answer is reused this long: probes, which need no credentials, cannot flood the store.
const REUSE_FOR: Duration = Duration::from_millis(250);

/// The last readiness answer: when it was found, and why the store is not ready (none: it is).
type Answer = Option<(Instant, Option<&'static str>)>;

/// What `/readyz` checks.
#[derive(Debug, Clone)]
pub struct Readiness {
    store: Arc<dyn Store>,
    metrics: Option<Arc<Metrics>>,
    /// The last answer, reused for `REUSE_FOR`.
    last: Arc<tokio::sync::Mutex<Answer>>,
    /// Whether the last answer was ready, to log changes only.
    was_ready: Arc<Mutex<bool>>,
}

impl Readiness {
    pub fn new(store: Arc<dyn Store>, metrics: Option<Arc<Metrics>>) -> Self {
        Self { store, metrics, last: Arc::default(), was_ready: Arc::new(Mutex::new(true)) }
    }

    /// `None` when ready, or why not.
    async fn check(&self) -> Option<&'static str> {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = *last
            && at.elapsed() < REUSE_FOR
        {
            return answer;
        }
        let answer = match tokio::time::timeout(READY_WITHIN, self.store.ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                self.report(Some(&e.to_string()));
                Some("the store is unavailable\n")
            }
            Err(_) => {
                self.report(Some("no answer in time"));
                Some("the store did not answer within 500 ms\n")
            }
        };
        if answer.is_none() {
            self.report(None);
        }
        *last = Some((Instant::now(), answer));
        answer
    }

    /// Logs a change of readiness (the cause only here: the probe's body stays generic).
    fn report(&self, failure: Option<&str>) {
        if failure.is_some()
            && let Some(metrics) = &self.metrics
        {
            metrics.readiness_failed();
        }
        let mut was_ready = self.was_ready.lock().expect("readiness flag poisoned");
        match (failure, *was_ready) {
            (Some(cause), true) => tracing::warn!(cause, "not ready: the store does not answer"),
            (None, false) => tracing::info!("ready: the store answers again"),
            _ => {}
        }
        *was_ready = failure.is_none();
    }
}

/// The probes' layer; every other path passes through untouched.
#[derive(Debug, Clone)]
pub struct ProbesLayer(Readiness);

impl ProbesLayer {
    pub fn new(readiness: Readiness) -> Self {
        Self(readiness)
    }
}

impl<S> Layer<S> for ProbesLayer {
    type Service = Probes<S>;

    fn layer(&self, inner: S) -> Probes<S> {
        Probes { inner, readiness: self.0.clone() }
    }
}

/// Answers `/healthz` and `/readyz`; hands every other request on.
#[derive(Debug, Clone)]
pub struct Probes<S> {
    inner: S,
    readiness: Readiness,
}

impl<S: Next> Service<Request<Body>> for Probes<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = PassOr<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let path = request.uri().path();
        if path != "/healthz" && path != "/readyz" {
            return pass(self.inner.call(request));
        }
        answer(probe(self.readiness.clone(), request))
    }
}

async fn probe(readiness: Readiness, request: Request<Body>) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "probes answer GET and HEAD\n");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let head = request.method() == Method::HEAD;
    let (status, body) = if request.uri().path() == "/healthz" {
        (StatusCode::OK, "ok\n")
    } else {
        match readiness.check().await {
            None => (StatusCode::OK, "ready\n"),
            Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
        }
    };
    text(status, if head { "" } else { body })
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(Bytes::from_static(body.as_bytes()))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

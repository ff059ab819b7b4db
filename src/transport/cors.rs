//! Browsers: CORS preflights answered and responses marked for the origins we allow. Every header
//! a client sends is named (a `*` would not cover `authorization`), the gRPC status headers are
//! exposed. A request from an origin outside a configured list, or with no origin at all, gets no
//! CORS headers: it passes straight to the edge.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use anyhow::Context as _;
use futures_util::future::Either;
use http::{HeaderName, HeaderValue, Method, Request, Response, header::ORIGIN};
use tonic::body::Body;
use tower::{Layer, Service, ServiceExt, util::Oneshot};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::Next;

/// The layer: `origins` empty allows every origin (callers authenticate with bearer tokens,
/// never cookies).
#[derive(Debug, Clone)]
pub struct Cors {
    /// tower-http's CORS rules, put around the inner service for cross-origin requests only.
    rules: Arc<CorsLayer>,
    /// The configured origins (none: every origin).
    allowed: Option<Arc<[HeaderValue]>>,
}

/// The layer's service: cross-origin requests go through tower-http's CORS, others straight on.
#[derive(Debug, Clone)]
pub struct CorsService<S> {
    inner: S,
    cors: Cors,
}

impl<S> Layer<S> for Cors {
    type Service = CorsService<S>;

    fn layer(&self, inner: S) -> CorsService<S> {
        CorsService { inner, cors: self.clone() }
    }
}

impl<S: Next> Service<Request<Body>> for CorsService<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<Oneshot<tower_http::cors::Cors<S>, Request<Body>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let cross_origin = match (request.headers().get(ORIGIN), &self.cors.allowed) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(origin), Some(list)) => list.contains(origin),
        };
        if cross_origin {
            Either::Left(self.cors.rules.layer(self.inner.clone()).oneshot(request))
        } else {
            Either::Right(self.inner.call(request))
        }
    }
}

/// The layer for `origins` (empty: every origin).
pub fn layer(origins: &[String]) -> anyhow::Result<Cors> {
    let allowed: Option<Arc<[HeaderValue]>> = if origins.is_empty() {
        None
    } else {
        let list = origins
            .iter()
            .map(|o| HeaderValue::from_str(o).with_context(|| format!("invalid CORS origin `{o}`")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Some(list.into())
    };
    let allow_origin = match &allowed {
        None => AllowOrigin::mirror_request(),
        Some(list) => AllowOrigin::list(list.iter().cloned()),
    };
    let header = HeaderName::from_static;
    let cors = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header("authorization"),
            header("content-type"),
            header("content-encoding"),
            header("accept-encoding"),
            header("x-grpc-web"),
            header("x-user-agent"),
            header("grpc-timeout"),
            header("grpc-encoding"),
            header("grpc-accept-encoding"),
            header("connect-protocol-version"),
            header("connect-timeout-ms"),
            header("x-request-id"),
        ])
        .expose_headers([
            header("grpc-status"),
            header("grpc-message"),
            header("grpc-status-details-bin"),
            header("grpc-encoding"),
            header("grpc-accept-encoding"),
            header("x-request-id"),
        ])
        .max_age(Duration::from_secs(7200));
    Ok(Cors { rules: Arc::new(cors), allowed })
}

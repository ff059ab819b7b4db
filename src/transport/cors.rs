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
use futures_util::future::{BoxFuture, FutureExt};
use http::{HeaderName, HeaderValue, Method, Request, Response, header::ORIGIN};
use tonic::body::Body;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

use super::Edge;

/// The edge behind a CORS layer that only sees requests from allowed origins.
#[derive(Clone)]
pub struct CorsGate {
    cors: Cors<Edge>,
    plain: Edge,
    /// `None`: every origin is allowed.
    allowed: Option<Arc<[HeaderValue]>>,
}

impl std::fmt::Debug for CorsGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CorsGate").field("allowed", &self.allowed).finish_non_exhaustive()
    }
}

impl CorsGate {
    /// `origins` empty allows every origin (callers authenticate with bearer tokens, never cookies).
    pub fn new(edge: Edge, origins: &[String]) -> anyhow::Result<Self> {
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
        let layer = CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
            .allow_headers([
                header("authorization"),
                header("content-type"),
                header("x-grpc-web"),
                header("x-user-agent"),
                header("grpc-timeout"),
                header("connect-protocol-version"),
                header("connect-timeout-ms"),
            ])
            .expose_headers([header("grpc-status"), header("grpc-message"), header("grpc-status-details-bin")])
            .max_age(Duration::from_secs(7200));
        Ok(Self { cors: layer.layer(edge.clone()), plain: edge, allowed })
    }

    fn is_cross_origin_allowed<B>(&self, request: &Request<B>) -> bool {
        match (request.headers().get(ORIGIN), &self.allowed) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(origin), Some(list)) => list.contains(origin),
        }
    }
}

impl<B> Service<Request<B>> for CorsGate
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both inner services are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if self.is_cross_origin_allowed(&request) {
            self.cors.call(request).map(|r| r.map(|response| response.map(Body::new))).boxed()
        } else {
            Service::call(&mut self.plain, request)
        }
    }
}

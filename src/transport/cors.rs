//! Browsers: CORS preflights answered and responses marked for the origins we allow. Every header
//! a client sends is named (a `*` would not cover `authorization`), the gRPC status headers are
//! exposed. A request from an origin outside a configured list, or with no origin at all, gets no
//! CORS headers: it passes straight to the edge.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use http::{HeaderName, HeaderValue, Method, Request, header::ORIGIN};
use tonic::body::Body;
use tower::Layer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::{Inner, forward, middleware};

/// The layer: `origins` empty allows every origin (callers authenticate with bearer tokens,
/// never cookies).
pub fn layer(origins: &[String]) -> anyhow::Result<impl Layer<Inner, Service = Inner> + Clone> {
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
    Ok(tower::layer::layer_fn(move |inner: Inner| {
        let with_cors = Inner::new(cors.clone().layer(inner.clone()));
        let allowed = allowed.clone();
        middleware(move |request: Request<Body>, plain: Inner| {
            let with_cors = with_cors.clone();
            let cross_origin = match (request.headers().get(ORIGIN), &allowed) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(origin), Some(list)) => list.contains(origin),
            };
            async move { forward(if cross_origin { with_cors } else { plain }, request).await }
        })
        .layer(inner)
    }))
}

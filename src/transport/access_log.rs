//! One log line per call: protocol, method, path, HTTP status, the gRPC status when the answer
//! carries it in its head, and the latency. Tokens never appear (headers are not logged).

use std::time::Instant;

use http::{Request, Response};
use tonic::body::Body;
use tower::Layer;

use super::{Inner, Protocol, forward, middleware};

pub fn layer() -> impl Layer<Inner, Service = Inner> + Clone {
    middleware(|request: Request<Body>, inner: Inner| async move {
        let started = Instant::now();
        let protocol = Protocol::of(request.headers(), request.uri().path());
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let response: Response<Body> = forward(inner, request).await;
        let grpc_status = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("");
        tracing::info!(
            protocol = protocol.name(),
            method = %method,
            path = %path,
            http = response.status().as_u16(),
            grpc_status,
            latency_us = started.elapsed().as_micros() as u64,
            "call"
        );
        response
    })
}

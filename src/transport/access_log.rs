//! One log line per call, written when its response body is done (sent or dropped): protocol,
//! HTTP method, path, HTTP status, the gRPC code (from the rendered refusal, the response head or
//! the trailers) and the latency. Headers are never logged, so tokens cannot leak here.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body::{Frame, SizeHint};
use tonic::{Code, Status, body::Body};
use tower::Layer;

use super::{Inner, Protocol, forward, middleware};

pub fn layer() -> impl Layer<Inner, Service = Inner> + Clone {
    middleware(|request: Request<Body>, inner: Inner| async move {
        let started = Instant::now();
        let protocol = Protocol::of(request.headers(), request.uri().path());
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let response = forward(inner, request).await;
        let code = response.extensions().get::<Code>().copied().or_else(|| code_in(response.headers()));
        let line = Line { started, protocol, method, path, http: response.status().as_u16(), code };
        response.map(|body| Body::new(Logged { inner: body, line }))
    })
}

fn code_in(fields: &HeaderMap) -> Option<Code> {
    let value = fields.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(Code::from_i32(value))
}

struct Line {
    started: Instant,
    protocol: Protocol,
    method: Method,
    path: String,
    http: u16,
    code: Option<Code>,
}

/// The response body, which writes the line when it is dropped.
struct Logged {
    inner: Body,
    line: Line,
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
            && let Some(code) = code_in(trailers)
        {
            self.line.code = Some(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let line = &self.line;
        tracing::info!(
            protocol = line.protocol.name(),
            method = %line.method,
            path = %line.path,
            http = line.http,
            code = line.code.map(|c| c as i32),
            latency_us = line.started.elapsed().as_micros() as u64,
            "call"
        );
    }
}

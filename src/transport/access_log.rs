//! One log line per call, written when its response body is done (sent or dropped): request id,
//! protocol, HTTP method, path, HTTP status, the gRPC code (from the rendered refusal, the response
//! head or the trailers) and the latency; the call's metrics are recorded from the same facts at
//! the same moment. The call runs in a span carrying its request id, so every line logged within
//! it carries the id too. Headers other than the id are never logged, so tokens cannot leak here.
//! Calls shed for overload never reach it (see `limits::shed`).

use std::{
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Instant,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body::{Frame, SizeHint};
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service};
use tracing::{Instrument as _, instrument::Instrumented};

use super::{Next, Protocol, request_id};
use crate::metrics::{CallMetrics, InFlight, Rpc};

/// The layer; `metrics` records each call when given.
#[derive(Debug, Clone)]
pub struct AccessLogLayer {
    metrics: Option<Arc<CallMetrics>>,
}

impl AccessLogLayer {
    pub fn new(metrics: Option<Arc<CallMetrics>>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog { inner, metrics: self.metrics.clone() }
    }
}

/// Runs the call in its span and logs it (and records its metrics) when its response is done.
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
    metrics: Option<Arc<CallMetrics>>,
}

impl<S: Next> Service<Request<Body>> for AccessLog<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Logging<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let started = Instant::now();
        let in_flight = self.metrics.as_ref().map(CallMetrics::start);
        let protocol = Protocol::of(request.headers(), request.uri().path());
        let method = request.method().clone();
        // A clone of the parsed URI shares its bytes: no copy of the path per call.
        let uri = request.uri().clone();
        let request_id = request_id::of(&request);
        let span = tracing::info_span!(
            "call",
            request_id = request_id.as_ref().and_then(|id| id.to_str().ok()).unwrap_or_default()
        );
        let call = Begun { started, request_id, protocol, method, uri, in_flight };
        Logging { inner: self.inner.call(request).instrument(span), call: Some(call) }
    }
}

/// What the line needs from the request.
struct Begun {
    started: Instant,
    request_id: Option<HeaderValue>,
    protocol: Protocol,
    method: Method,
    uri: http::Uri,
    in_flight: Option<InFlight>,
}

pin_project_lite::pin_project! {
    /// The call in its span; its response's body writes the line.
    pub struct Logging<F> {
        #[pin]
        inner: Instrumented<F>,
        call: Option<Begun>,
    }
}

impl<F: Future<Output = Result<Response<Body>, Infallible>>> Future for Logging<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        let call = this.call.take().expect("a call is answered once");
        Poll::Ready(Ok(logged(call, response)))
    }
}

/// The response, its body wrapped to write the line when done (a shed call is only counted).
fn logged(call: Begun, response: Response<Body>) -> Response<Body> {
    let code = response.extensions().get::<Code>().copied().or_else(|| code_in(response.headers()));
    let rpc = response.extensions().get::<Rpc>().copied().unwrap_or(Rpc::UNKNOWN);
    let Begun { started, request_id, protocol, method, uri, in_flight } = call;
    let line =
        Line { started, request_id, protocol, method, uri, http: response.status().as_u16(), code, rpc, in_flight };
    response.map(|body| Body::new(Logged { inner: body, line }))
}

fn code_in(fields: &HeaderMap) -> Option<Code> {
    let value = fields.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(Code::from_i32(value))
}

struct Line {
    started: Instant,
    request_id: Option<HeaderValue>,
    protocol: Protocol,
    method: Method,
    uri: http::Uri,
    http: u16,
    code: Option<Code>,
    rpc: Rpc,
    /// The call's place in the metrics (none when they are off); counted out when dropped.
    in_flight: Option<InFlight>,
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
        let elapsed = line.started.elapsed();
        if let Some(in_flight) = &line.in_flight {
            in_flight.finished(line.rpc, line.protocol, line.code, elapsed.as_secs_f64());
        }
        tracing::info!(
            request_id = line.request_id.as_ref().and_then(|id| id.to_str().ok()),
            protocol = line.protocol.name(),
            method = %line.method,
            path = %line.uri.path(),
            http = line.http,
            code = line.code.map(|c| c as i32),
            latency_us = elapsed.as_micros() as u64,
            "call"
        );
    }
}

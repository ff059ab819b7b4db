//! Native gRPC in front of tonic: a unary request is read (within the body guard) and checked to
//! be exactly one well-formed frame before tonic decodes it, and errors tonic raises itself
//! (unknown method, unsupported encoding, oversized message) get the `ErrorDetail` and the
//! contract's code that every other error carries.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service};

use super::{
    Inner, Next, Protocol,
    classify::{self, Target},
    forward, frame, middleware, refuse,
};
use crate::service::status::internal;

/// The encodings tonic is configured to accept, as `grpc-accept-encoding` names them.
pub const ACCEPTED_ENCODINGS: &str = "gzip,identity";

/// Reads a unary request whole and refuses it unless it is one frame; streams pass untouched.
pub fn unary_framing() -> impl Layer<Inner, Service = Inner> + Clone {
    middleware(|request: Request<Body>, inner: Inner| async move {
        if !request.extensions().get::<Target>().is_some_and(Target::is_unary_request) {
            return forward(inner, request).await;
        }
        let encoded = request.headers().get("grpc-encoding").is_some_and(|v| v != "identity");
        let (mut parts, body) = request.into_parts();
        let mut body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(status) => return refuse::render(Protocol::Grpc, &status, None),
        };
        if let Err(error) = frame::unary_message(&body, encoded) {
            // Answered after authentication, with an empty message in its place.
            match classify::defer(&mut parts.extensions, framing_error(error)) {
                Ok(()) => body = frame::encode_message(&[]),
                Err(status) => return refuse::render(Protocol::Grpc, &status, None),
            }
        }
        forward(inner, Request::from_parts(parts, Body::new(Full::new(body)))).await
    })
}

fn framing_error(error: frame::FrameError) -> Status {
    match error {
        frame::FrameError::Malformed(message) => {
            refuse::status(Code::InvalidArgument, "REQUEST-MalformedFrame", &message)
        }
        frame::FrameError::Unsupported(message) => unsupported_encoding(&message),
    }
}

/// UNIMPLEMENTED naming what the server accepts, in `grpc-accept-encoding`.
fn unsupported_encoding(message: &str) -> Status {
    let mut status = refuse::status(Code::Unimplemented, "REQUEST-UnsupportedEncoding", message);
    status
        .metadata_mut()
        .insert("grpc-accept-encoding", tonic::metadata::MetadataValue::from_static(ACCEPTED_ENCODINGS));
    status
}

/// Gives the statuses tonic answers on its own (in a trailers-only response) their detail.
pub fn details() -> DetailsLayer {
    DetailsLayer
}

/// See [`details`].
#[derive(Debug, Clone, Copy)]
pub struct DetailsLayer;

impl<S> Layer<S> for DetailsLayer {
    type Service = Details<S>;

    fn layer(&self, inner: S) -> Details<S> {
        Details { inner }
    }
}

/// See [`details`].
#[derive(Debug, Clone)]
pub struct Details<S> {
    inner: S,
}

impl<S: Next> Service<Request<Body>> for Details<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Detailed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let uri = request.uri().clone();
        Detailed { inner: self.inner.call(request), uri }
    }
}

pin_project_lite::pin_project! {
    /// tonic's answer, its bare status given the detail.
    pub struct Detailed<F> {
        #[pin]
        inner: F,
        uri: Uri,
    }
}

impl<F: Future<Output = Result<Response<Body>, Infallible>>> Future for Detailed<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Ok(mut response) = ready!(this.inner.poll(cx));
        if let Some(status) = bare_status(response.headers()) {
            let mapped = with_detail(&status, this.uri.path());
            rewrite_status(response.headers_mut(), &mapped);
        }
        Poll::Ready(Ok(response))
    }
}

/// A non-OK status in `headers` that carries no details.
fn bare_status(headers: &HeaderMap) -> Option<Status> {
    if headers.contains_key("grpc-status-details-bin") {
        return None;
    }
    Status::from_header_map(headers).filter(|s| s.code() != Code::Ok)
}

/// The contract's code and id for a status tonic raised; internal causes stay in the log.
fn with_detail(status: &Status, path: &str) -> Status {
    let message = status.message();
    match status.code() {
        Code::Unimplemented if message.starts_with("Content is compressed with") => {
            unsupported_encoding(&format!("{message}; send one of {ACCEPTED_ENCODINGS}"))
        }
        Code::Unimplemented => {
            refuse::status(Code::Unimplemented, "REQUEST-UnknownMethod", &format!("no RPC is served at {path}"))
        }
        Code::OutOfRange | Code::ResourceExhausted
            if message.contains("too large") || message.contains("size limit") =>
        {
            refuse::status(Code::ResourceExhausted, "REQUEST-TooLarge", "the message exceeds the size limit")
        }
        Code::Internal if message.starts_with("Error decompressing: ") => {
            let cause = message.trim_start_matches("Error decompressing: ").trim_end_matches(", while sending request");
            refuse::status(
                Code::InvalidArgument,
                "REQUEST-BadCompression",
                &format!("the message does not decode as its grpc-encoding: {cause}"),
            )
        }
        Code::Internal if message.contains("compressed-flag") => {
            unsupported_encoding("the message is compressed but the call names no grpc-encoding")
        }
        Code::Internal if message.contains("Missing request message") || message.contains("Unexpected EOF") => {
            refuse::status(
                Code::InvalidArgument,
                "REQUEST-MalformedFrame",
                "the request body is not one gRPC message frame",
            )
        }
        Code::Internal | Code::Unknown | Code::DataLoss => {
            internal(format_args!("{path}: the gRPC server failed with {:?}: {message}", status.code()))
        }
        code => refuse::status(code, "REQUEST-Refused", message),
    }
}

/// Replaces the status fields in a header block, keeping the rest (and adding the status's own
/// metadata, such as `grpc-accept-encoding`).
fn rewrite_status(headers: &mut HeaderMap, status: &Status) {
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(name);
    }
    if status.add_header(headers).is_err() {
        headers.insert("grpc-status", HeaderValue::from(status.code() as i32));
    }
    headers.extend(status.metadata().clone().into_headers());
}

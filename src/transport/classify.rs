//! Classify, then act: each request's protocol and target (the RPC, and for REST the matched
//! route) are decided once, before anything else runs, and put into the request's extensions.
//! What names nothing we serve is refused here, before authentication: 404, 405 with `Allow`,
//! 415 with `Accept-Post`, a codec other than protobuf on gRPC and gRPC-Web, a Connect protocol
//! version other than 1, and gRPC over HTTP/1.x (which cannot carry its trailers).

use std::{
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use futures_util::future::Either;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use prost_reflect::MethodDescriptor;
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service};

use crate::{metrics::Rpc, service::auth::PendingRefusal};

use super::{
    Answer, Next, Protocol, answer, media_type, refuse,
    routes::{Matched, RouteError, Routes},
    rpc_path,
};

/// What a request calls, as decided by `classify`.
#[derive(Debug, Clone)]
pub struct Target {
    pub protocol: Protocol,
    /// The RPC, when the descriptors know it (gRPC may also reach services only tonic knows,
    /// such as reflection).
    pub method: Option<MethodDescriptor>,
    /// The REST route and its path variables.
    pub rest: Option<Matched>,
}

impl Target {
    /// Whether the RPC is one whose request is a single message (every RPC the descriptors know
    /// but reflection's stream).
    pub fn is_unary_request(&self) -> bool {
        self.method.as_ref().is_some_and(|m| !m.is_client_streaming())
    }

    /// Whether the RPC is one of `service`'s.
    pub fn is_of(&self, service: &str) -> bool {
        self.method.as_ref().is_some_and(|m| m.parent_service().full_name() == service)
    }

    /// Whether the RPC takes a credential (the Session and User services; health and reflection
    /// take none), so that a refusal of the request's form waits for authentication.
    pub fn authenticates(&self) -> bool {
        self.method.as_ref().is_some_and(|m| m.parent_service().full_name().starts_with("zitadel."))
    }

    /// Holds `status` in `extensions` until the caller is authenticated
    /// (`service::auth::PendingRefusal`) when the RPC takes a credential; `Err(status)` when it
    /// must be answered now. A refusal already held stands.
    pub fn defer(&self, extensions: &mut http::Extensions, status: Status) -> Result<(), Status> {
        hold(self.authenticates(), extensions, status)
    }
}

/// As [`Target::defer`], for the target classified into `extensions`.
pub fn defer(extensions: &mut http::Extensions, status: Status) -> Result<(), Status> {
    hold(extensions.get::<Target>().is_some_and(Target::authenticates), extensions, status)
}

fn hold(authenticates: bool, extensions: &mut http::Extensions, status: Status) -> Result<(), Status> {
    if !authenticates {
        return Err(status);
    }
    extensions.get_or_insert_with(|| PendingRefusal(status));
    Ok(())
}

/// A refusal: the status, the HTTP status override for Connect and REST, extra headers.
type Refusal = (Status, Option<StatusCode>, HeaderMap);

fn refusal(code: Code, id: &str, message: &str) -> Refusal {
    (refuse::status(code, id, message), None, HeaderMap::new())
}

/// gRPC and gRPC-Web messages travel as protobuf: `base` alone or `base+proto`. Another codec
/// (`+json`, say) is refused rather than decoded as protobuf, which would fail or, worse,
/// succeed on bytes that meant something else.
fn proto_codec(headers: &HeaderMap, base: &str) -> Result<(), Refusal> {
    let media = media_type(headers).unwrap_or_default();
    let codec = media.get(base.len()..).unwrap_or_default();
    if codec.is_empty() || codec.eq_ignore_ascii_case("+proto") {
        return Ok(());
    }
    Err(refusal(
        Code::Unimplemented,
        "REQUEST-UnsupportedCodec",
        &format!("content type {media} is not served: messages travel as protobuf, send {base} or {base}+proto"),
    ))
}

/// `method` on an RPC path that is called with POST only.
fn post_only(method: &Method, path: &str) -> Result<(), Refusal> {
    if method == Method::POST {
        return Ok(());
    }
    let mut extra = HeaderMap::new();
    extra.insert(header::ALLOW, HeaderValue::from_static("POST"));
    let (status, ..) = refusal(
        Code::Unimplemented,
        "REQUEST-MethodNotAllowed",
        &format!("{method} is not allowed on {path}; RPCs are called with POST"),
    );
    Err((status, Some(StatusCode::METHOD_NOT_ALLOWED), extra))
}

fn unknown_method(path: &str) -> Refusal {
    let (status, ..) = refusal(Code::Unimplemented, "REQUEST-UnknownMethod", &format!("no RPC is served at {path}"));
    (status, Some(StatusCode::NOT_FOUND), HeaderMap::new())
}

/// Whether either side of the RPC is a stream (health's Watch).
fn streams(method: &MethodDescriptor) -> bool {
    method.is_client_streaming() || method.is_server_streaming()
}

/// A streaming RPC asked for over a protocol that carries one message each way: refused at once
/// rather than left to wait for the end of a stream that may never come.
fn not_over(path: &str, protocol: &str) -> Refusal {
    refusal(
        Code::Unimplemented,
        "REQUEST-StreamingUnsupported",
        &format!("{path} streams: it is served over gRPC (HTTP/2) only, not over {protocol}"),
    )
}

/// The layer that classifies; REST routes come from the descriptors' `google.api.http` rules.
pub fn layer(routes: Arc<Routes>) -> ClassifyLayer {
    ClassifyLayer { routes }
}

/// See [`layer`].
#[derive(Debug, Clone)]
pub struct ClassifyLayer {
    routes: Arc<Routes>,
}

impl<S> Layer<S> for ClassifyLayer {
    type Service = Classify<S>;

    fn layer(&self, inner: S) -> Classify<S> {
        Classify { inner, routes: Arc::clone(&self.routes) }
    }
}

/// Classifies each request, refuses what names nothing served, and labels the response with
/// the RPC for the call metrics.
#[derive(Debug, Clone)]
pub struct Classify<S> {
    inner: S,
    routes: Arc<Routes>,
}

impl<S: Next> Service<Request<Body>> for Classify<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<Labelled<S::Future>, Answer>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let protocol = Protocol::of(request.headers(), request.uri().path());
        match target(&self.routes, protocol, &request) {
            Ok(target) => {
                // The RPC's label for the call metrics, from what was classified (REST included).
                let rpc = match &target.method {
                    Some(m) => Rpc::of(m.parent_service().full_name(), m.name()),
                    None => rpc_path(request.uri().path()).map_or(Rpc::UNKNOWN, |(s, m)| Rpc::of(s, m)),
                };
                request.extensions_mut().insert(target);
                Either::Left(Labelled { inner: self.inner.call(request), rpc })
            }
            Err((status, http, extra)) => {
                let mut response = refuse::render(protocol, &status, http);
                response.headers_mut().extend(extra);
                answer(refuse::early(request, response))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The classified call, whose response gets the RPC's label.
    pub struct Labelled<F> {
        #[pin]
        inner: F,
        rpc: Rpc,
    }
}

impl<F: Future<Output = Result<Response<Body>, Infallible>>> Future for Labelled<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Ok(mut response) = ready!(this.inner.poll(cx));
        response.extensions_mut().insert(*this.rpc);
        Poll::Ready(Ok(response))
    }
}

fn target(routes: &Routes, protocol: Protocol, request: &Request<Body>) -> Result<Target, Refusal> {
    let path = request.uri().path();
    let pool = crate::proto::pool();
    let known = || {
        rpc_path(path)
            .and_then(|(service, method)| pool.get_service_by_name(service)?.methods().find(|m| m.name() == method))
    };
    match protocol {
        Protocol::Grpc => {
            if request.version() < Version::HTTP_2 {
                return Err(refusal(
                    Code::Unimplemented,
                    "REQUEST-Http2Required",
                    "gRPC needs HTTP/2; over HTTP/1.1 use gRPC-Web (application/grpc-web+proto)",
                ));
            }
            proto_codec(request.headers(), "application/grpc")?;
            grpc_target(protocol, path, known())
        }
        Protocol::GrpcWeb { text } => {
            post_only(request.method(), path)?;
            proto_codec(request.headers(), if text { "application/grpc-web-text" } else { "application/grpc-web" })?;
            // gRPC-Web answers are read whole before they are sent (a trailer frame, one base64
            // stream), so only RPCs with one message each way; reflection and health's Watch
            // stream, over gRPC.
            match known() {
                Some(method) if !streams(&method) => Ok(Target { protocol, method: Some(method), rest: None }),
                Some(_) => Err(not_over(path, "gRPC-Web")),
                None => Err(unknown_method(path)),
            }
        }
        Protocol::Connect { .. } => {
            let method = known().ok_or_else(|| unknown_method(path))?;
            if streams(&method) {
                return Err(not_over(path, "Connect's unary protocol"));
            }
            post_only(request.method(), path)?;
            let media = media_type(request.headers());
            let known =
                |m: &str| m.eq_ignore_ascii_case("application/json") || m.eq_ignore_ascii_case("application/proto");
            if !media.is_some_and(known) {
                let mut extra = HeaderMap::new();
                extra.insert(
                    http::HeaderName::from_static("accept-post"),
                    HeaderValue::from_static("application/json, application/proto"),
                );
                let (status, ..) = refusal(
                    Code::InvalidArgument,
                    "REQUEST-UnsupportedMediaType",
                    &format!(
                        "content type {} is not supported: send application/json or application/proto",
                        media.unwrap_or("(none)")
                    ),
                );
                return Err((status, Some(StatusCode::UNSUPPORTED_MEDIA_TYPE), extra));
            }
            // Connect's version header may be absent (ZITADEL's Python SDK sends none); a version
            // this server does not speak is refused as connect-go refuses it.
            if let Some(version) = request.headers().get("connect-protocol-version")
                && version != "1"
            {
                let (status, ..) = refusal(
                    Code::InvalidArgument,
                    "REQUEST-ConnectVersion",
                    &format!("connect-protocol-version must be 1, got {}", String::from_utf8_lossy(version.as_bytes())),
                );
                return Err((status, Some(StatusCode::BAD_REQUEST), HeaderMap::new()));
            }
            Ok(Target { protocol, method: Some(method), rest: None })
        }
        Protocol::Rest => rest_target(routes, request),
    }
}

/// gRPC: a path under a service the descriptors know must name one of its methods; any other
/// path goes on to tonic (reflection), which answers UNIMPLEMENTED for what it lacks.
fn grpc_target(protocol: Protocol, path: &str, method: Option<MethodDescriptor>) -> Result<Target, Refusal> {
    let service_known =
        || rpc_path(path).is_some_and(|(service, _)| crate::proto::pool().get_service_by_name(service).is_some());
    if method.is_none() && service_known() {
        return Err(unknown_method(path));
    }
    Ok(Target { protocol, method, rest: None })
}

fn rest_target(routes: &Routes, request: &Request<Body>) -> Result<Target, Refusal> {
    let path = request.uri().path();
    let matched = match routes.find(request.method(), path) {
        Ok(matched) => matched,
        Err(RouteError::NotFound) => {
            return Err(refusal(Code::NotFound, "REQUEST-NoRoute", &format!("no route matches {path}")));
        }
        Err(RouteError::MethodNotAllowed(allowed)) => {
            let allow = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
            let mut extra = HeaderMap::new();
            extra.insert(header::ALLOW, HeaderValue::from_str(&allow).expect("method names are valid header values"));
            let (status, ..) = refusal(
                Code::Unimplemented,
                "REQUEST-MethodNotAllowed",
                &format!("{} is not allowed on {path}; allowed: {allow}", request.method()),
            );
            return Err((status, Some(StatusCode::METHOD_NOT_ALLOWED), extra));
        }
        Err(RouteError::BadEscape(segment)) => {
            return Err(refusal(
                Code::InvalidArgument,
                "REQUEST-BadEscape",
                &format!("path segment `{segment}` holds a broken percent-escape"),
            ));
        }
    };
    let media = media_type(request.headers());
    if media.is_some_and(|m| !m.eq_ignore_ascii_case("application/json")) {
        let (status, ..) = refusal(
            Code::InvalidArgument,
            "REQUEST-UnsupportedMediaType",
            &format!("content type {} is not supported: send application/json", media.unwrap_or_default()),
        );
        return Err((status, Some(StatusCode::UNSUPPORTED_MEDIA_TYPE), HeaderMap::new()));
    }
    Ok(Target { protocol: Protocol::Rest, method: Some(matched.route.method.clone()), rest: Some(matched) })
}

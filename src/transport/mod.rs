//! The edge: every request on the one port is classified once (gRPC, gRPC-Web, Connect,
//! REST/JSON), authenticated, decoded into one protobuf message, and handed to the one
//! SessionService handler (health and reflection: to the tonic router); the answer is rendered
//! back in the caller's protocol. CORS
//! preflights are answered by the CORS layer in front of this service.

pub mod auth;
pub mod cors;
pub mod frame;
pub mod json;
pub mod routes;
pub mod status_http;

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use prost_reflect::{DescriptorPool, MethodDescriptor};
use tokio::sync::Semaphore;
use tonic::{Code, Status, body::Body};
use tower::{Service, ServiceExt};

use self::routes::{RouteError, Routes};
use crate::{
    domain::{Caller, ErrorClass, user::Users},
    service::{
        SessionHandler,
        status::{self, status_from_parts},
    },
};

/// The service whose RPCs need a bearer token; health and reflection do not.
pub const SESSION_SERVICE: &str = "zitadel.session.v2.SessionService";
/// The path prefix of its RPCs.
const SESSION_SERVICE_PATH: &str = "/zitadel.session.v2.SessionService/";

/// How a request arrived, decided once from its content type, method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `application/grpc`, `application/grpc+proto`.
    Grpc,
    /// `application/grpc-web[+proto]`, or `application/grpc-web-text` (base64) when `text`.
    GrpcWeb { text: bool },
    /// Connect unary: `POST /<service>/<method>`, JSON or binary protobuf.
    Connect { json: bool },
    /// REST/JSON through the `google.api.http` rules.
    Rest,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::GrpcWeb { text: false } => "grpc-web",
            Self::GrpcWeb { text: true } => "grpc-web-text",
            Self::Connect { json: true } => "connect+json",
            Self::Connect { json: false } => "connect+proto",
            Self::Rest => "rest",
        }
    }
}

/// Settings of the edge.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Calls served at once; beyond it calls are shed with RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    /// How long a request body may take to arrive (a trickled body must not hold a slot forever).
    pub body_read_timeout: Duration,
}

struct Shared {
    sessions: SessionHandler,
    pool: DescriptorPool,
    routes: Routes,
    users: Users,
    config: EdgeConfig,
    in_flight: Arc<Semaphore>,
}

/// The one tower service on the port.
#[derive(Clone)]
pub struct Edge {
    grpc: tonic::service::Routes,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

/// Content type without parameters, lowercased.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

/// `/<package.Service>/<Method>`: the shape of gRPC and Connect paths.
fn rpc_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (service.contains('.') && !method.is_empty() && !method.contains('/')).then_some((service, method))
}

pub fn classify(headers: &HeaderMap, path: &str) -> Protocol {
    let media = media_type(headers);
    match media.as_deref() {
        // gRPC-Web first: its content types share the `application/grpc` prefix.
        Some(m) if m.starts_with("application/grpc-web-text") => Protocol::GrpcWeb { text: true },
        Some(m) if m.starts_with("application/grpc-web") => Protocol::GrpcWeb { text: false },
        Some(m) if m == "application/grpc" || m.starts_with("application/grpc+") => Protocol::Grpc,
        // Connect unary is a POST to an RPC path; other methods and content types there are
        // refused in Connect's terms.
        _ if rpc_path(path).is_some() => Protocol::Connect { json: media.as_deref() != Some("application/proto") },
        _ => Protocol::Rest,
    }
}

fn edge_error(class: ErrorClass, id: &str, message: &str) -> Status {
    status_from_parts(class, id, message, None)
}

fn unknown_method(path: &str) -> Status {
    edge_error(ErrorClass::Unimplemented, "REQUEST-UnknownMethod", &format!("no RPC is served at {path}"))
}

/// What was called: the method and, for REST, the matched route and its path variables.
struct Target<'a> {
    method: MethodDescriptor,
    rest: Option<routes::Matched<'a>>,
}

impl Edge {
    /// `sessions` handles every SessionService call, which the edge decodes whatever its wire
    /// format; `grpc` serves the other gRPC services (health, reflection).
    pub fn new(
        grpc: tonic::service::Routes,
        sessions: SessionHandler,
        pool: DescriptorPool,
        users: Users,
        config: EdgeConfig,
    ) -> anyhow::Result<Self> {
        let routes = Routes::from_pool(&pool)?;
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
        Ok(Self { grpc, shared: Arc::new(Shared { sessions, pool, routes, users, config, in_flight }) })
    }

    async fn handle<B>(self, request: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let protocol = classify(request.headers(), request.uri().path());
        let path = request.uri().path().to_owned();
        // Streaming and non-session gRPC (reflection, health) goes straight to tonic.
        if protocol == Protocol::Grpc && !path.starts_with(SESSION_SERVICE_PATH) {
            let response = self.grpc.clone().oneshot(request).await.unwrap_or_else(|never| match never {});
            // tonic answers a path it serves nothing at with a bare UNIMPLEMENTED: give it the
            // detail every error carries.
            let headers = response.headers();
            if headers.get("grpc-status").is_some_and(|s| s == "12") && !headers.contains_key("grpc-status-details-bin")
            {
                return self.render_error(protocol, unknown_method(&path), None);
            }
            return response;
        }
        let (response, rpc, code) = match self.shared.in_flight.clone().try_acquire_owned() {
            Ok(_permit) => self.serve(protocol, request).await,
            Err(_) => {
                let status = edge_error(
                    ErrorClass::ResourceExhausted,
                    "SERVER-Overloaded",
                    "the server is overloaded; retry later",
                );
                let code = status.code();
                (self.render_error(protocol, status, None), String::new(), code)
            }
        };
        tracing::info!(
            protocol = protocol.name(),
            rpc = %rpc,
            path = %path,
            code = ?code,
            latency_us = started.elapsed().as_micros() as u64,
            "call"
        );
        response
    }

    /// Serves one call; returns the response, the RPC's name and the resulting code.
    async fn serve<B>(&self, protocol: Protocol, request: Request<B>) -> (Response<Body>, String, Code)
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = request.into_parts();
        let target = match self.target(protocol, &parts) {
            Ok(target) => target,
            Err((status, http, extra)) => {
                let code = status.code();
                let mut response = self.render_error(protocol, status, http);
                response.headers_mut().extend(extra);
                return (response, String::new(), code);
            }
        };
        let rpc = target.method.name().to_owned();
        let result = self.call(protocol, &target, parts, body).await;
        let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
        let response = match result {
            Ok(message) => self.render_ok(protocol, &target, message),
            Err(status) => self.render_error(protocol, status, None),
        };
        (response, rpc, code)
    }

    /// Which method the request names; refusals carry an HTTP status override and headers.
    #[allow(clippy::result_large_err)]
    fn target(
        &self,
        protocol: Protocol,
        parts: &http::request::Parts,
    ) -> Result<Target<'_>, (Status, Option<StatusCode>, HeaderMap)> {
        let path = parts.uri.path();
        let unimplemented = || (unknown_method(path), Some(StatusCode::NOT_FOUND), HeaderMap::new());
        match protocol {
            Protocol::Grpc | Protocol::GrpcWeb { .. } | Protocol::Connect { .. } => {
                let method = rpc_path(path)
                    .and_then(|(service, method)| {
                        self.shared.pool.get_service_by_name(service)?.methods().find(|m| m.name() == method)
                    })
                    .ok_or_else(unimplemented)?;
                if let Protocol::Connect { .. } = protocol {
                    if parts.method != Method::POST {
                        let mut extra = HeaderMap::new();
                        extra.insert(header::ALLOW, HeaderValue::from_static("POST"));
                        return Err((
                            edge_error(
                                ErrorClass::Unimplemented,
                                "REQUEST-MethodNotAllowed",
                                &format!("{} is not allowed on {path}; RPCs are called with POST", parts.method),
                            ),
                            Some(StatusCode::METHOD_NOT_ALLOWED),
                            extra,
                        ));
                    }
                    let media = media_type(&parts.headers);
                    if !matches!(media.as_deref(), Some("application/json" | "application/proto")) {
                        let mut extra = HeaderMap::new();
                        extra.insert(
                            http::HeaderName::from_static("accept-post"),
                            HeaderValue::from_static("application/json, application/proto"),
                        );
                        return Err((
                            edge_error(
                                ErrorClass::InvalidArgument,
                                "REQUEST-UnsupportedMediaType",
                                &format!(
                                    "content type {} is not supported: send application/json or application/proto",
                                    media.as_deref().unwrap_or("(none)")
                                ),
                            ),
                            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                            extra,
                        ));
                    }
                }
                Ok(Target { method, rest: None })
            }
            Protocol::Rest => {
                let matched = match self.shared.routes.find(&parts.method, path) {
                    Ok(m) => m,
                    Err(RouteError::NotFound) => {
                        return Err((
                            edge_error(ErrorClass::NotFound, "REQUEST-NoRoute", &format!("no route matches {path}")),
                            None,
                            HeaderMap::new(),
                        ));
                    }
                    Err(RouteError::MethodNotAllowed(allowed)) => {
                        let allow = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
                        let mut extra = HeaderMap::new();
                        extra.insert(
                            header::ALLOW,
                            HeaderValue::from_str(&allow).expect("method names are valid header values"),
                        );
                        return Err((
                            edge_error(
                                ErrorClass::Unimplemented,
                                "REQUEST-MethodNotAllowed",
                                &format!("{} is not allowed on {path}; allowed: {allow}", parts.method),
                            ),
                            Some(StatusCode::METHOD_NOT_ALLOWED),
                            extra,
                        ));
                    }
                    Err(RouteError::BadEscape(segment)) => {
                        return Err((
                            edge_error(
                                ErrorClass::InvalidArgument,
                                "REQUEST-BadEscape",
                                &format!("path segment `{segment}` holds a broken percent-escape"),
                            ),
                            None,
                            HeaderMap::new(),
                        ));
                    }
                };
                let media = media_type(&parts.headers);
                if media.as_deref().is_some_and(|m| m != "application/json") {
                    return Err((
                        edge_error(
                            ErrorClass::InvalidArgument,
                            "REQUEST-UnsupportedMediaType",
                            &format!(
                                "content type {} is not supported: send application/json",
                                media.unwrap_or_default()
                            ),
                        ),
                        Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                        HeaderMap::new(),
                    ));
                }
                Ok(Target { method: matched.route.method.clone(), rest: Some(matched) })
            }
        }
    }

    /// Authenticates, reads and decodes the body, and calls the handler: the response message's
    /// protobuf bytes or the status.
    async fn call<B>(
        &self,
        protocol: Protocol,
        target: &Target<'_>,
        parts: http::request::Parts,
        body: B,
    ) -> Result<Bytes, Status>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let deadline = deadline(&parts.headers)?;
        let caller = if target.method.parent_service().full_name() == SESSION_SERVICE {
            let bearer = auth::bearer(&parts.headers)?;
            Some(self.shared.users.authenticate(bearer.expose()).await?)
        } else {
            None
        };
        let body = self.read_body(&parts.headers, body).await?;
        let message = match protocol {
            Protocol::Grpc | Protocol::GrpcWeb { text: false } => frame::unary_message(&body).map_err(framing_error)?,
            Protocol::GrpcWeb { text: true } => {
                let decoded = frame::decode_base64_chunks(&body).map_err(|e| framing_error(e.into()))?;
                frame::unary_message(&decoded).map_err(framing_error)?
            }
            Protocol::Connect { json: false } => body,
            Protocol::Connect { json: true } => json::connect_request(&target.method.input(), &body)?,
            Protocol::Rest => match &target.rest {
                Some(matched) => json::rest_request(matched.route, &matched.variables, parts.uri.query(), &body)?,
                None => return Err(status::internal("a REST call without a route")),
            },
        };
        let invoke = self.invoke(&target.method, message, caller);
        match deadline {
            Some(limit) => tokio::time::timeout(limit, invoke).await.unwrap_or_else(|_| {
                Err(edge_error(ErrorClass::DeadlineExceeded, "REQUEST-DeadlineExceeded", "the call ran out of time"))
            }),
            None => invoke.await,
        }
    }

    async fn read_body<B>(&self, headers: &HeaderMap, body: B) -> Result<Bytes, Status>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = self.shared.config.body_limit;
        let too_large = || {
            edge_error(
                ErrorClass::ResourceExhausted,
                "REQUEST-TooLarge",
                &format!("the request body exceeds the limit of {limit} bytes"),
            )
        };
        let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let read = tokio::time::timeout(self.shared.config.body_read_timeout, Limited::new(body, limit).collect());
        let Ok(read) = read.await else {
            return Err(edge_error(
                ErrorClass::DeadlineExceeded,
                "REQUEST-BodyTimeout",
                "the request body did not arrive in time",
            ));
        };
        match read {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Err(e) if client_went_away(&*e) => Err(edge_error(
                ErrorClass::Cancelled,
                "REQUEST-Cancelled",
                "the client cancelled the call before its body arrived",
            )),
            Err(e) => Err(edge_error(
                ErrorClass::InvalidArgument,
                "REQUEST-BodyUnreadable",
                &format!("the request body could not be read: {e}"),
            )),
        }
    }

    /// The call on its handler: a SessionService call (the only kind with a caller: see `call`)
    /// on the session handler, any other as a plain gRPC call on the tonic router.
    async fn invoke(&self, method: &MethodDescriptor, message: Bytes, caller: Option<Caller>) -> Result<Bytes, Status> {
        if let Some(caller) = caller {
            // The descriptors named the method, so the handler has it.
            let answer = self.shared.sessions.call(method.name(), message, caller).await;
            return answer.unwrap_or_else(|| Err(status::internal(format_args!("no handler for {}", method.name()))));
        }
        let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/grpc")
            .header(header::TE, "trailers")
            .body(Body::new(Full::new(frame::encode_message(&message))))
            .map_err(status::internal)?;
        let response = self.grpc.clone().oneshot(request).await.unwrap_or_else(|never| match never {});
        let (parts, body) = response.into_parts();
        if let Some(status) = Status::from_header_map(&parts.headers).filter(|s| s.code() != Code::Ok) {
            return Err(status);
        }
        let collected = body.collect().await.map_err(|e| status::internal(format_args!("handler body failed: {e}")))?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        if let Some(status) = Status::from_header_map(&trailers).filter(|s| s.code() != Code::Ok) {
            return Err(status);
        }
        frame::unary_message(&collected.to_bytes())
            .map_err(|e| status::internal(format_args!("handler answered badly: {}", e.message())))
    }

    fn render_ok(&self, protocol: Protocol, target: &Target<'_>, message: Bytes) -> Response<Body> {
        let json = |bytes: Result<Bytes, Status>, status: u16| match bytes {
            Ok(bytes) => response(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), "application/json", bytes),
            Err(status) => self.render_error(protocol, status, None),
        };
        match protocol {
            Protocol::Grpc => grpc_response(Some(message), &status_http::status_trailers(&Status::ok(""))),
            Protocol::GrpcWeb { text } => grpc_web_response(text, Some(&message), &Status::ok("")),
            Protocol::Connect { json: false } => response(StatusCode::OK, "application/proto", message),
            Protocol::Connect { json: true } => json(json::response_json(&target.method.output(), &message, ""), 200),
            Protocol::Rest => {
                let (response_body, success_code) =
                    target.rest.as_ref().map_or(("", 200), |m| (m.route.response_body.as_str(), m.route.success_code));
                json(json::response_json(&target.method.output(), &message, response_body), success_code)
            }
        }
    }

    fn render_error(&self, protocol: Protocol, status: Status, http: Option<StatusCode>) -> Response<Body> {
        let mut rendered = match protocol {
            Protocol::Grpc => grpc_response(None, &status_http::status_trailers(&status)),
            Protocol::GrpcWeb { text } => grpc_web_response(text, None, &status),
            Protocol::Connect { .. } => response(
                http.unwrap_or_else(|| status_http::http_status(status.code())),
                "application/json",
                status_http::connect_body(&self.shared.pool, &status),
            ),
            Protocol::Rest => response(
                http.unwrap_or_else(|| status_http::http_status(status.code())),
                "application/json",
                status_http::rest_body(&self.shared.pool, &status),
            ),
        };
        if matches!(protocol, Protocol::Connect { .. } | Protocol::Rest)
            && let Some((name, value)) = status_http::www_authenticate(&status)
        {
            rendered.headers_mut().insert(name, value);
        }
        rendered
    }
}

/// Whether a body read failed because the client hung up (a stream reset with CANCEL, a closed
/// connection, a message cut short) rather than because it sent something malformed: the call
/// is then CANCELLED, not the client's INVALID_ARGUMENT, so error rates count only real errors.
fn client_went_away(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(e) = e.downcast_ref::<h2::Error>()
            && (e.reason() == Some(h2::Reason::CANCEL) || e.is_go_away() || e.is_io())
        {
            return true;
        }
        if let Some(e) = e.downcast_ref::<hyper::Error>()
            && (e.is_canceled() || e.is_incomplete_message() || e.is_closed())
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
            if matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof) {
                return true;
            }
            // An io::Error's `source` skips the error it wraps: look at that one itself.
            if let Some(inner) = io.get_ref() {
                cause = Some(inner);
                continue;
            }
        }
        cause = e.source();
    }
    false
}

fn framing_error(error: frame::FrameError) -> Status {
    match error {
        frame::FrameError::Malformed(message) => {
            edge_error(ErrorClass::InvalidArgument, "REQUEST-MalformedFrame", &message)
        }
        frame::FrameError::Unsupported(message) => {
            edge_error(ErrorClass::Unimplemented, "REQUEST-UnsupportedEncoding", &message)
        }
    }
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A gRPC response: an optional message frame, then trailers.
fn grpc_response(message: Option<Bytes>, trailers: &HeaderMap) -> Response<Body> {
    let frames = message
        .map(|m| Ok::<_, Infallible>(Frame::data(frame::encode_message(&m))))
        .into_iter()
        .chain(std::iter::once(Ok(Frame::trailers(trailers.clone()))));
    let mut response =
        Response::new(Body::new(StreamBody::new(futures_util::stream::iter(frames.collect::<Vec<_>>()))));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

/// A gRPC-Web response: message frame and trailer frame in the body (base64 for `-text`).
fn grpc_web_response(text: bool, message: Option<&[u8]>, status: &Status) -> Response<Body> {
    let mut body = Vec::new();
    if let Some(m) = message {
        body.extend_from_slice(&frame::encode_message(m));
    }
    body.extend_from_slice(&frame::encode_trailers(&status_http::status_trailers(status)));
    let (content_type, body) = if text {
        ("application/grpc-web-text", Bytes::from(frame::encode_base64(&body)))
    } else {
        ("application/grpc-web+proto", Bytes::from(body))
    };
    response(StatusCode::OK, content_type, body)
}

/// The call's deadline from `grpc-timeout` or `connect-timeout-ms` (the shorter wins).
fn deadline(headers: &HeaderMap) -> Result<Option<Duration>, Status> {
    let bad = |name: &str| {
        edge_error(ErrorClass::InvalidArgument, "REQUEST-InvalidTimeout", &format!("the {name} header is malformed"))
    };
    let grpc = match headers.get("grpc-timeout") {
        Some(v) => {
            let v = v.to_str().map_err(|_| bad("grpc-timeout"))?;
            let (digits, unit) = v.split_at(v.len().saturating_sub(1));
            if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("grpc-timeout"));
            }
            let n: u64 = digits.parse().map_err(|_| bad("grpc-timeout"))?;
            Some(match unit {
                "H" => Duration::from_secs(n * 3600),
                "M" => Duration::from_secs(n * 60),
                "S" => Duration::from_secs(n),
                "m" => Duration::from_millis(n),
                "u" => Duration::from_micros(n),
                "n" => Duration::from_nanos(n),
                _ => return Err(bad("grpc-timeout")),
            })
        }
        None => None,
    };
    let connect = match headers.get("connect-timeout-ms") {
        Some(v) => {
            let v = v.to_str().map_err(|_| bad("connect-timeout-ms"))?;
            if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("connect-timeout-ms"));
            }
            Some(Duration::from_millis(v.parse().map_err(|_| bad("connect-timeout-ms"))?))
        }
        None => None,
    };
    Ok(match (grpc, connect) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

impl<B> Service<Request<B>> for Edge
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(request).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::client_went_away;

    #[test]
    fn a_client_hanging_up_is_not_a_malformed_body() {
        let reset = h2::Error::from(h2::Reason::CANCEL);
        assert!(client_went_away(&reset));
        let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        assert!(client_went_away(&cut));
        // Wrapped, as the body stack hands it on.
        let wrapped: Box<dyn std::error::Error + Send + Sync> = Box::new(std::io::Error::other(reset));
        assert!(client_went_away(&*wrapped));

        let protocol = h2::Error::from(h2::Reason::PROTOCOL_ERROR);
        assert!(!client_went_away(&protocol));
        assert!(!client_went_away(&std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")));
    }
}

//! The front door: one tower stack (composed in `stack.rs`) classifies each request, guards it
//! (limits, deadline, credentials) and hands it to tonic's generated server: gRPC directly,
//! gRPC-Web through tonic-web, Connect and REST through the descriptor-driven transcoder. Every
//! refusal is rendered in the caller's protocol by `refuse::render`. `GET /openapi.json`
//! describes the REST routes, generated from the same route table (`openapi`).

pub mod access_log;
pub mod admission;
pub mod answers;
pub mod auth;
pub mod classify;
pub mod cors;
pub mod frame;
pub mod grpc;
pub mod grpc_web;
pub mod json;
pub mod limits;
pub mod openapi;
pub mod probes;
pub mod refuse;
pub mod request_id;
pub mod routes;
pub mod stack;
pub mod status_http;
pub mod transcode;

use std::{
    convert::Infallible,
    future::Future,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::{
    FutureExt,
    future::{BoxFuture, Either},
};
use http::{HeaderMap, Request, Response, header};
use tonic::body::Body;
use tower::{Layer, Service, ServiceExt, layer::layer_fn};

/// The service whose RPCs need a bearer token; health and reflection do not.
pub const SESSION_SERVICE: &str = "zitadel.session.v2.SessionService";
/// The user service (passkey registration), which needs one too.
pub const USER_SERVICE: &str = "zitadel.user.v2.UserService";

/// What every layer of the stack is, and what it wraps: a service of a request with tonic's body
/// that answers with a rendered response, never an error (refusals are responses), and is
/// always ready. The layers are concrete services over the next one: a call that passes a layer
/// hands on the inner service's own future, with nothing boxed or polled on the way.
pub trait Next:
    Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Next for S where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A layer's own answer (a refusal, a probe, the OpenAPI document): boxed, off the hot path.
pub type Answer = BoxFuture<'static, Result<Response<Body>, Infallible>>;

/// What a layer that only looks at the request returns: the inner service's future as it is,
/// or the layer's own answer.
pub type PassOr<F> = Either<F, Answer>;

/// The layer's own answer, in place of the inner service's.
pub fn answer<F>(response: impl Future<Output = Response<Body>> + Send + 'static) -> PassOr<F> {
    Either::Right(Box::pin(response.map(Ok::<_, Infallible>)))
}

/// The inner service's future, handed on.
pub fn pass<F>(future: F) -> PassOr<F> {
    Either::Left(future)
}

/// A service behind one reference count, its future boxed: where the stack branches (dispatch
/// to the protocols' paths, which share tonic's routes) and at the door itself. A clone is one
/// reference count: each caller calls it without copying the stack below.
#[derive(Clone)]
pub struct Inner(Arc<dyn Fn(Request<Body>) -> BoxFuture<'static, Response<Body>> + Send + Sync>);

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inner")
    }
}

impl Inner {
    /// A tower service that is always ready and never fails (tonic's routes, tonic-web, CORS).
    pub fn new<S: Next>(service: S) -> Self {
        Self(Arc::new(move |request| {
            let call = service.clone().oneshot(request);
            Box::pin(async move { call.await.unwrap_or_else(|never| match never {}) })
        }))
    }

    /// A function of the request that answers it (a dispatch between services).
    pub fn from_fn<F>(f: F) -> Self
    where
        F: Fn(Request<Body>) -> BoxFuture<'static, Response<Body>> + Send + Sync + 'static,
    {
        Self(Arc::new(f))
    }

    fn call_now(&self, request: Request<Body>) -> BoxFuture<'static, Response<Body>> {
        (self.0)(request)
    }
}

impl Service<Request<Body>> for Inner {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures_util::future::Map<
        BoxFuture<'static, Response<Body>>,
        fn(Response<Body>) -> Result<Response<Body>, Infallible>,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        self.call_now(request).map(Ok as fn(Response<Body>) -> Result<Response<Body>, Infallible>)
    }
}

/// A layer from an async function of the request and the service inside it.
pub fn middleware<F, Fut>(f: F) -> impl Layer<Inner, Service = Inner> + Clone
where
    F: Fn(Request<Body>, Inner) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    layer_fn(move |inner: Inner| {
        let f = f.clone();
        Inner(Arc::new(move |request| Box::pin(f(request, inner.clone()))))
    })
}

/// Calls `inner` once (it is always ready: every layer answers refusals as responses).
pub async fn forward(inner: Inner, request: Request<Body>) -> Response<Body> {
    inner.call_now(request).await
}

/// How a request arrived, decided once from its content type and path.
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

    /// From the content type and the path alone: cheap enough for the outermost layers.
    pub fn of(headers: &HeaderMap, path: &str) -> Self {
        let media = media_type(headers);
        let is = |prefix: &str| {
            media.is_some_and(|m| m.len() >= prefix.len() && m[..prefix.len()].eq_ignore_ascii_case(prefix))
        };
        // gRPC-Web first: its content types share the `application/grpc` prefix.
        if is("application/grpc-web-text") {
            Self::GrpcWeb { text: true }
        } else if is("application/grpc-web") {
            Self::GrpcWeb { text: false }
        } else if media.is_some_and(|m| m.eq_ignore_ascii_case("application/grpc")) || is("application/grpc+") {
            Self::Grpc
        } else if rpc_path(path).is_some() {
            // Connect unary is a POST to an RPC path; other methods and content types there are
            // refused in Connect's terms.
            Self::Connect { json: !media.is_some_and(|m| m.eq_ignore_ascii_case("application/proto")) }
        } else {
            Self::Rest
        }
    }
}

/// Content type without parameters (compare it ignoring ASCII case).
pub fn media_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim())
}

/// `/<package.Service>/<Method>`: the shape of gRPC and Connect paths.
pub fn rpc_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (service.contains('.') && !method.is_empty() && !method.contains('/')).then_some((service, method))
}

//! The front door: one tower stack (composed in `stack.rs`) classifies each request, guards it
//! (limits, deadline, credentials) and hands it to tonic's generated server: gRPC directly,
//! gRPC-Web through tonic-web, Connect and REST through the descriptor-driven transcoder. Every
//! refusal is rendered in the caller's protocol by `refuse::render`.

pub mod access_log;
pub mod auth;
pub mod classify;
pub mod cors;
pub mod frame;
pub mod grpc;
pub mod grpc_web;
pub mod json;
pub mod limits;
pub mod refuse;
pub mod routes;
pub mod stack;
pub mod status_http;
pub mod transcode;

use std::{convert::Infallible, future::Future};

use http::{HeaderMap, Request, Response, header};
use tonic::body::Body;
use tower::{Layer, ServiceExt, layer::layer_fn, service_fn, util::BoxCloneSyncService};

/// The service whose RPCs need a bearer token; health and reflection do not.
pub const SESSION_SERVICE: &str = "zitadel.session.v2.SessionService";

/// Every layer of the stack takes and gives this: a request with tonic's body, a response that
/// is always rendered (refusals are responses, never errors).
pub type Inner = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// A layer from an async function of the request and the service inside it.
pub fn middleware<F, Fut>(f: F) -> impl Layer<Inner, Service = Inner> + Clone
where
    F: Fn(Request<Body>, Inner) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    layer_fn(move |inner: Inner| {
        let f = f.clone();
        Inner::new(service_fn(move |request| {
            let answer = f(request, inner.clone());
            async move { Ok::<_, Infallible>(answer.await) }
        }))
    })
}

/// Calls `inner` once (it is always ready: every layer answers refusals as responses).
pub async fn forward(inner: Inner, request: Request<Body>) -> Response<Body> {
    inner.oneshot(request).await.unwrap_or_else(|never| match never {})
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
        match media.as_deref() {
            // gRPC-Web first: its content types share the `application/grpc` prefix.
            Some(m) if m.starts_with("application/grpc-web-text") => Self::GrpcWeb { text: true },
            Some(m) if m.starts_with("application/grpc-web") => Self::GrpcWeb { text: false },
            Some(m) if m == "application/grpc" || m.starts_with("application/grpc+") => Self::Grpc,
            // Connect unary is a POST to an RPC path; other methods and content types there are
            // refused in Connect's terms.
            _ if rpc_path(path).is_some() => Self::Connect { json: media.as_deref() != Some("application/proto") },
            _ => Self::Rest,
        }
    }
}

/// Content type without parameters, lowercased.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

/// `/<package.Service>/<Method>`: the shape of gRPC and Connect paths.
pub fn rpc_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (service.contains('.') && !method.is_empty() && !method.contains('/')).then_some((service, method))
}

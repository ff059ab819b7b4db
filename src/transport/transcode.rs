//! Connect (JSON and binary) and REST as gRPC: the request is decoded through the descriptors
//! into the protobuf message, framed as a gRPC call on the same tonic routes every protocol
//! reaches, and the answer (message, or status with its details) rendered in the caller's terms.

use std::io::{Read, Write};

use bytes::Bytes;
use flate2::{Compression, read::GzDecoder, write::GzEncoder};
use http::{
    HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header, request::Parts, uri::PathAndQuery,
};
use http_body_util::{BodyExt, Full};
use tonic::{Code, Status, body::Body};

use super::{Inner, Protocol, classify::Target, forward, frame, json, refuse};
use crate::service::{answers::HeldAnswer, status::internal};

/// The content codings a Connect request body may arrive in.
const ACCEPTED: &str = "gzip, identity";

/// Serves one Connect or REST call through `grpc`; a compressed body may expand to `body_limit`.
pub async fn serve(mut request: Request<Body>, grpc: Inner, body_limit: usize) -> Response<Body> {
    // The gRPC call does not need it; taken, not copied.
    let Some(target) = request.extensions_mut().remove::<Target>() else {
        return refuse::render(Protocol::Rest, &internal("a request reached the transcoder unclassified"), None);
    };
    let protocol = target.protocol;
    let gzip_answer = accepts_gzip(request.headers());
    let mut response = match call(&target, request, grpc, body_limit).await {
        Ok(response) => response,
        Err(status) => refuse::render(protocol, &status, None),
    };
    if gzip_answer && response.status().is_success() {
        response = compress(protocol, response).await;
    }
    response.extensions_mut().get_or_insert(Code::Ok);
    response
}

async fn call(
    target: &Target,
    request: Request<Body>,
    grpc: Inner,
    body_limit: usize,
) -> Result<Response<Body>, Status> {
    let (mut parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let method = target.method.as_ref().ok_or_else(|| internal("a call without a method"))?;
    let decoded =
        decoded_body(&parts.headers, body, body_limit).and_then(|body| match (target.protocol, &target.rest) {
            (Protocol::Connect { json: true }, _) => json::connect_request(&method.input(), &body),
            (Protocol::Connect { json: false }, _) => Ok(body),
            (_, Some(matched)) => json::rest_request(&matched.route, &matched.variables, parts.uri.query(), &body),
            _ => Err(internal("a REST call without a route")),
        });
    // A body that does not decode is answered after authentication, with an empty message.
    let message = match decoded {
        Ok(message) => message,
        Err(status) => {
            target.defer(&mut parts.extensions, status)?;
            Bytes::new()
        }
    };
    // The method's gRPC path: a Connect path is one already; a REST route made its own at start.
    let path = match &target.rest {
        Some(matched) => matched.route.grpc_path.clone(),
        None => parts.uri.path_and_query().cloned().ok_or_else(|| internal("a Connect call without a path"))?,
    };
    let mut answer = forward(grpc, grpc_request(parts, path, &message)?).await;
    // A large answer's share of the budget moves on to the answer rendered here.
    let held = answer.extensions_mut().remove::<HeldAnswer>();
    let message = grpc_answer(answer).await?;
    let mut response = match (target.protocol, &target.rest) {
        (Protocol::Connect { json: false }, _) => refuse::bytes_response(StatusCode::OK, "application/proto", message),
        (_, rest) => {
            let (response_body, success) =
                rest.as_ref().map_or(("", 200), |m| (m.route.response_body.as_str(), m.route.success_code));
            let json = if message.len() < BLOCKING_FROM {
                json::response_json(&method.output(), &message, response_body)?
            } else {
                let (output, response_body) = (method.output(), response_body.to_owned());
                elsewhere(move || json::response_json(&output, &message, &response_body)).await??
            };
            refuse::bytes_response(StatusCode::from_u16(success).unwrap_or(StatusCode::OK), "application/json", json)
        }
    };
    if let Some(held) = held {
        response.extensions_mut().insert(held);
    }
    Ok(response)
}

/// The gRPC call: the caller's extensions (target, credential) travel with it; its headers do
/// not, as a gRPC client would not send them.
fn grpc_request(parts: Parts, path: PathAndQuery, message: &[u8]) -> Result<Request<Body>, Status> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(Uri::from(path))
        .version(http::Version::HTTP_2)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .body(Body::new(Full::new(frame::encode_message(message))))
        .map_err(|_| internal("the gRPC call could not be built"))?;
    *request.extensions_mut() = parts.extensions;
    Ok(request)
}

/// The message of a gRPC answer, or its status.
async fn grpc_answer(response: Response<Body>) -> Result<Bytes, Status> {
    let (parts, body) = response.into_parts();
    if let Some(status) = failed(&parts.headers) {
        return Err(status);
    }
    let collected = body.collect().await?;
    if let Some(status) = collected.trailers().and_then(failed) {
        return Err(status);
    }
    frame::unary_message(&collected.to_bytes(), false)
        .map_err(|e| internal(format_args!("the gRPC server answered a malformed message: {}", e.message())))
}

/// The status in a header block unless it is absent or OK (parsed only then: the OK case, every
/// success, is a comparison).
fn failed(headers: &HeaderMap) -> Option<Status> {
    let status = headers.get("grpc-status")?;
    if status.as_bytes() == b"0" {
        return None;
    }
    Status::from_header_map(headers).filter(|s| s.code() != Code::Ok)
}

/// A Connect or REST body in the content coding `Content-Encoding` names: gzip (inflated to at most
/// `limit` bytes, the body limit) or identity; anything else is UNIMPLEMENTED with
/// `Accept-Encoding` naming what is accepted.
pub fn decoded_body(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, Status> {
    let coding = headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase());
    match coding.as_deref() {
        None | Some("identity") => Ok(body),
        Some("gzip") => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
            // The body guard bounded what arrived; bound what it expands to alike.
            let limit = limit as u64;
            GzDecoder::new(body.as_ref()).take(limit + 1).read_to_end(&mut out).map_err(|e| {
                refuse::status(
                    Code::InvalidArgument,
                    "REQUEST-BadCompression",
                    &format!("the gzip body does not decode: {e}"),
                )
            })?;
            if out.len() as u64 > limit {
                return Err(refuse::status(
                    Code::ResourceExhausted,
                    "REQUEST-TooLarge",
                    "the decompressed body is too large",
                ));
            }
            Ok(out.into())
        }
        Some(other) => {
            let mut status = refuse::status(
                Code::Unimplemented,
                "REQUEST-UnsupportedEncoding",
                &format!("content encoding `{other}` is not supported; send one of {ACCEPTED}"),
            );
            status.metadata_mut().insert("accept-encoding", tonic::metadata::MetadataValue::from_static(ACCEPTED));
            Err(status)
        }
    }
}

pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let refused =
                parts.any(|p| p.trim().strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>() == Ok(0.0)));
            name.eq_ignore_ascii_case("gzip") && !refused
        },
    )
}

/// Answers at least this large are rendered as JSON and compressed on the blocking pool: a
/// ListSessions page may reach tens of megabytes, a tenth of a second of a core or more to
/// render and as much to compress, and every call sharing the runtime's thread would wait
/// behind it.
const BLOCKING_FROM: usize = 256 * 1024;

/// Runs `work` on the blocking pool.
async fn elsewhere<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(work).await.map_err(|_| internal("the answer could not be rendered"))
}

/// A successful answer compressed with gzip.
async fn compress(protocol: Protocol, response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        return refuse::render(protocol, &internal("the answer could not be read"), None);
    };
    let body = collected.to_bytes();
    let large = body.len() >= BLOCKING_FROM;
    let gzip = move || {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(&body).and_then(|()| encoder.finish())
    };
    let compressed = if large { elsewhere(gzip).await } else { Ok(gzip()) };
    let Ok(Ok(compressed)) = compressed else {
        return refuse::render(protocol, &internal("the answer could not be compressed"), None);
    };
    parts.headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts.headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::new(Full::new(Bytes::from(compressed))))
}

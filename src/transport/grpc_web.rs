//! gRPC-Web goes through tonic-web; this thin layer in front of it covers what the contract asks
//! beyond it: the body read whole first, so that its errors (too large, too late, broken) carry
//! the contract's codes and detail, a `-text` body in several padded base64 chunks (tonic-web
//! decodes only one), a `-text` answer as one base64 stream under `application/grpc-web-text`
//! whatever `Accept` says, and a trailer frame in every answer (tonic answers errors
//! trailers-only, in headers).

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tonic::{Code, body::Body};
use tower::Layer;

use super::{
    Inner, Protocol,
    classify::{self, Target},
    forward, frame, middleware, refuse,
};

const BINARY: &str = "application/grpc-web+proto";
const TEXT: &str = "application/grpc-web-text";

/// tonic-web around `grpc`, with the normalizer in front.
pub fn service(grpc: Inner) -> Inner {
    let web = Inner::new(tonic_web::GrpcWebLayer::new().layer(grpc));
    normalizer().layer(web)
}

fn normalizer() -> impl Layer<Inner, Service = Inner> + Clone {
    middleware(|request: Request<Body>, inner: Inner| async move {
        let text =
            matches!(request.extensions().get::<Target>().map(|t| t.protocol), Some(Protocol::GrpcWeb { text: true }));
        let protocol = Protocol::GrpcWeb { text };
        let (mut parts, body) = request.into_parts();
        // Every gRPC-Web call is unary (`classify` refuses streams), so the body is read here,
        // within the body guard, and a body that is too large, late or broken is refused as on
        // every protocol (through tonic-web it would become INTERNAL with tonic-web's text).
        let read = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(status) => return refuse::render(protocol, &status, None),
        };
        let body = if text {
            match frame::decode_base64_chunks(&read) {
                Ok(decoded) => decoded,
                Err(message) => {
                    // Answered after authentication, with an empty message in its place.
                    let status = refuse::status(Code::InvalidArgument, "REQUEST-MalformedFrame", &message);
                    match classify::defer(&mut parts.extensions, status) {
                        Ok(()) => frame::encode_message(&[]),
                        Err(status) => return refuse::render(protocol, &status, None),
                    }
                }
            }
        } else {
            read
        };
        let body = Body::new(Full::new(body));
        // tonic-web matches the content type exactly and answers in the encoding `Accept` names.
        parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(BINARY));
        parts.headers.insert(header::ACCEPT, HeaderValue::from_static(BINARY));
        let response = forward(inner, Request::from_parts(parts, body)).await;
        finish(text, response).await
    })
}

/// One base64 stream for `-text`, and the status in a trailer frame when tonic put it in headers.
async fn finish(text: bool, response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    if parts.status != StatusCode::OK {
        // tonic-web's own refusals (a method other than POST) carry no gRPC body.
        return Response::from_parts(parts, body);
    }
    let mut bytes = match body.collect().await {
        Ok(collected) => BytesMut::from(collected.to_bytes()),
        Err(status) => return refuse::render(Protocol::GrpcWeb { text }, &status, None),
    };
    if !frame::has_trailer_frame(&bytes) {
        let mut fields = HeaderMap::new();
        for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
            if let Some(value) = parts.headers.remove(name) {
                fields.insert(name, value);
            }
        }
        if fields.is_empty() {
            fields.insert("grpc-status", HeaderValue::from(Code::Unknown as i32));
        }
        bytes.extend_from_slice(&frame::encode_trailers(&fields));
    }
    // The code, for the access log and metrics (outside, the trailers are inside the body).
    if let Some(code) = frame::trailer_code(&bytes) {
        parts.extensions.insert(code);
    }
    let (content_type, bytes) =
        if text { (TEXT, Bytes::from(frame::encode_base64(&bytes))) } else { (BINARY, bytes.freeze()) };
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::new(Full::new(bytes)))
}

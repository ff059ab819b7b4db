//! The one function that renders a status in the caller's protocol, and the early refusal that
//! keeps an HTTP/1.1 connection usable when the request body was never read.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version, header};
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use tonic::{Code, Status, body::Body};

use super::{Protocol, frame, status_http};
use crate::service::status::error_status;

/// How much of an unread body an early refusal reads so that the connection stays usable.
const DRAIN_LIMIT: u64 = 64 * 1024;
/// How long it waits for that remainder: a client's small body is there within it, and a caller
/// that trickles one holds its in-flight slot no longer than this.
const DRAIN_TIME: Duration = Duration::from_millis(250);

/// A status with its `ErrorDetail`, as the edge raises them.
pub fn status(code: Code, id: &str, message: &str) -> Status {
    error_status(code, id, message)
}

/// A rendered refusal: kept whole, it is answered again without rendering anything (the
/// overload refusal, which must cost less than serving).
#[derive(Debug, Clone)]
pub struct Rendered {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    code: Code,
}

impl Rendered {
    /// `status` in `protocol`'s terms: gRPC trailers-only, gRPC-Web trailer frame, Connect error
    /// JSON or `google.rpc.Status` JSON. `http` overrides the table's HTTP status for routing
    /// refusals (404, 405, 415) on Connect and REST; the status's metadata
    /// (`grpc-accept-encoding`, say) travels as headers.
    pub fn new(protocol: Protocol, status: &Status, http: Option<StatusCode>) -> Self {
        let json_status = || http.unwrap_or_else(|| status_http::http_status(status.code()));
        let (http_status, content_type, body) = match protocol {
            Protocol::Grpc => (StatusCode::OK, "application/grpc", Bytes::new()),
            Protocol::GrpcWeb { text } => {
                let block = frame::encode_trailers(&status_http::status_trailers(status));
                if text {
                    (StatusCode::OK, "application/grpc-web-text", Bytes::from(frame::encode_base64(&block)))
                } else {
                    (StatusCode::OK, "application/grpc-web+proto", block)
                }
            }
            Protocol::Connect { .. } => {
                (json_status(), "application/json", status_http::connect_body(crate::proto::pool(), status))
            }
            Protocol::Rest => (json_status(), "application/json", status_http::rest_body(crate::proto::pool(), status)),
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if protocol == Protocol::Grpc {
            headers.extend(status_http::status_trailers(status));
        }
        if matches!(protocol, Protocol::Connect { .. } | Protocol::Rest)
            && let Some((name, value)) = status_http::www_authenticate(status)
        {
            headers.insert(name, value);
        }
        // A status read back from a gRPC answer holds that answer's whole head as metadata:
        // its framing headers (`content-type: application/grpc`) describe a body this is not.
        let framing = [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::TE];
        for (name, value) in &status.metadata().clone().into_headers() {
            if !name.as_str().starts_with("grpc-status") && name != "grpc-message" && !framing.contains(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
        Self { status: http_status, headers, body, code: status.code() }
    }

    pub fn response(&self) -> Response<Body> {
        let body = if self.body.is_empty() { Body::empty() } else { Body::new(Full::new(self.body.clone())) };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        // For the access log: the code, whatever the protocol shows of it.
        response.extensions_mut().insert(self.code);
        response
    }
}

/// `status` in `protocol`'s terms (see `Rendered::new`).
pub fn render(protocol: Protocol, status: &Status, http: Option<StatusCode>) -> Response<Body> {
    Rendered::new(protocol, status, http).response()
}

/// A response with a fixed body.
pub fn bytes_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A refusal before the request body was read. Over HTTP/1.x a body left unread would be taken
/// for the next request, so a small remainder is read first; a large or slow one gets
/// `Connection: close`, which tells the client to open a new connection instead of failing on
/// this one.
pub async fn early(request: Request<Body>, response: Response<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    early_parts(parts.version, &parts.headers, body, response).await
}

/// As `early`, from the request's parts.
pub async fn early_parts(
    version: Version,
    headers: &HeaderMap,
    body: Body,
    mut response: Response<Body>,
) -> Response<Body> {
    if version >= Version::HTTP_2 || body.is_end_stream() {
        return response;
    }
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let drained = declared.is_none_or(|n| n <= DRAIN_LIMIT)
        && tokio::time::timeout(DRAIN_TIME, http_body_util::Limited::new(body, DRAIN_LIMIT as usize).collect())
            .await
            .is_ok_and(|read| read.is_ok());
    if !drained {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_from_a_grpc_answer_keeps_the_json_content_type() {
        // As `Status::from_header_map` builds it from tonic's trailers-only answer.
        let mut head = HeaderMap::new();
        head.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        head.insert("grpc-status", HeaderValue::from_static("5"));
        head.insert("grpc-message", HeaderValue::from_static("gone"));
        head.insert("x-kept", HeaderValue::from_static("1"));
        let status = Status::from_header_map(&head).unwrap();
        for protocol in [Protocol::Rest, Protocol::Connect { json: true }] {
            let response = render(protocol, &status, None);
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json", "{protocol:?}");
            assert_eq!(response.headers()["x-kept"], "1");
        }
        let web = render(Protocol::GrpcWeb { text: false }, &status, None);
        assert_eq!(web.headers()[header::CONTENT_TYPE], "application/grpc-web+proto");
    }
}

//! `x-request-id`: taken from the request when it is sane (1 to 128 visible ASCII characters),
//! generated otherwise (a random UUID), put on the request for every layer and log line of the
//! call, and echoed on every response, refusals included.

use http::{HeaderValue, Request, header::HeaderName};
use tonic::body::Body;
use tower::Layer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};

use super::{Inner, forward, middleware};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest request id accepted from a caller (ids are logged with every line of the call).
const MAX_LEN: usize = 128;

/// Whether a caller's id may be kept: 1 to `MAX_LEN` visible ASCII characters (no spaces, no
/// control characters that would break a log line).
pub fn is_sane(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty() && bytes.len() <= MAX_LEN && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// Random v4 UUIDs from the thread-local generator (no system call per id).
#[derive(Debug, Clone, Copy, Default)]
struct RandomIds;

impl MakeRequestId for RandomIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        let text = id.hyphenated().encode_lower(&mut text);
        Some(RequestId::new(HeaderValue::from_str(text).expect("a UUID is a valid header value")))
    }
}

/// The layer: an insane id is dropped before tower-http's layers set one and echo it.
pub fn layer() -> impl Layer<Inner, Service = Inner> + Clone {
    tower::layer::layer_fn(|inner: Inner| {
        // Set (outer) before propagate (inner): the echo sees the id whether given or generated.
        let with_id = Inner::new(
            SetRequestIdLayer::new(X_REQUEST_ID, RandomIds)
                .layer(PropagateRequestIdLayer::new(X_REQUEST_ID).layer(inner)),
        );
        middleware(|mut request: Request<Body>, with_id: Inner| async move {
            let mut given = request.headers().get_all(X_REQUEST_ID).iter();
            let keep = match (given.next(), given.next()) {
                (None, _) => true,
                (Some(id), None) => is_sane(id),
                // Two ids: neither is the request's.
                (Some(_), Some(_)) => false,
            };
            if !keep {
                request.headers_mut().remove(X_REQUEST_ID);
            }
            forward(with_id, request).await
        })
        .layer(with_id)
    })
}

/// The request's id, as the layer set it.
pub fn of(request: &Request<Body>) -> Option<HeaderValue> {
    request.headers().get(X_REQUEST_ID).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_visible_ascii_ids_are_kept() {
        assert!(is_sane(&HeaderValue::from_static("abc-123_XYZ:/=")));
        assert!(is_sane(&HeaderValue::from_str(&"a".repeat(128)).unwrap()));
        assert!(!is_sane(&HeaderValue::from_str(&"a".repeat(129)).unwrap()));
        assert!(!is_sane(&HeaderValue::from_static("")));
        assert!(!is_sane(&HeaderValue::from_static("two words")));
        assert!(!is_sane(&HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()));
    }

    #[test]
    fn generated_ids_are_uuids() {
        let request = Request::new(());
        let id = RandomIds.make_request_id(&request).unwrap();
        let text = id.header_value().to_str().unwrap();
        assert_eq!(text.len(), 36);
        assert!(uuid::Uuid::parse_str(text).is_ok());
        assert_ne!(RandomIds.make_request_id(&request).unwrap().header_value(), id.header_value());
    }
}

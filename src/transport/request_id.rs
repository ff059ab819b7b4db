//! `x-request-id`: taken from the request when it is sane (1 to 128 visible ASCII characters),
//! generated otherwise (a random UUID), put on the request for every layer and log line of the
//! call, and echoed on every response, refusals included.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{HeaderValue, Request, Response, header::HeaderName};
use tonic::body::Body;
use tower::{Layer, Service};

use super::Next;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest request id accepted from a caller (ids are logged with every line of the call).
const MAX_LEN: usize = 128;

/// Whether a caller's id may be kept: 1 to `MAX_LEN` visible ASCII characters (no spaces, no
/// control characters that would break a log line).
pub fn is_sane(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty() && bytes.len() <= MAX_LEN && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// A random v4 UUID from the thread-local generator (no system call per id).
fn generated() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
    let text = id.hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).expect("a UUID is a valid header value")
}

/// The layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> RequestId<S> {
        RequestId { inner }
    }
}

/// Keeps the caller's id when it is sane and alone, puts a generated one in its place
/// otherwise, and echoes it on the response unless the response names one itself.
#[derive(Debug, Clone)]
pub struct RequestId<S> {
    inner: S,
}

impl<S: Next> Service<Request<Body>> for RequestId<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Echo<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let mut given = request.headers().get_all(X_REQUEST_ID).iter();
        let kept = match (given.next(), given.next()) {
            (Some(id), None) if is_sane(id) => Some(id.clone()),
            // None, an insane one, or two (neither is the request's).
            _ => None,
        };
        let id = kept.unwrap_or_else(|| {
            let id = generated();
            // Replaces every id the caller gave.
            request.headers_mut().insert(X_REQUEST_ID, id.clone());
            id
        });
        Echo { inner: self.inner.call(request), id: Some(id) }
    }
}

pin_project_lite::pin_project! {
    /// The inner call, whose response gets the request's id.
    pub struct Echo<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F: Future<Output = Result<Response<Body>, Infallible>>> Future for Echo<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Ok(mut response) = ready!(this.inner.poll(cx));
        if let Some(mut id) = this.id.take() {
            // Never indexed by HPACK: an id is sent once, and indexing it would evict the
            // headers every answer repeats (content type, status) from the connection's table.
            id.set_sensitive(true);
            response.headers_mut().entry(X_REQUEST_ID).or_insert(id);
        }
        Poll::Ready(Ok(response))
    }
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
        let id = generated();
        let text = id.to_str().unwrap();
        assert_eq!(text.len(), 36);
        assert!(uuid::Uuid::parse_str(text).is_ok());
        assert_ne!(generated(), id);
    }
}

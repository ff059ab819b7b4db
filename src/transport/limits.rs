//! What keeps one call from taking the server: the global in-flight limit that sheds at once,
//! the body limit and read deadline, and the call's own deadline (`grpc-timeout`,
//! `connect-timeout-ms`), which covers everything after the request head.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, Version, header};
use http_body::{Frame, SizeHint};
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service, ServiceExt, util::Oneshot};

use super::{
    Next, PassOr, Protocol, answer,
    classify::{self, Target},
    pass, refuse,
};
use crate::call_clock::{self, Clock};
use crate::metrics::CallMetrics;
use tokio::task::futures::TaskLocalFuture;

pub use super::admission::Admission;
use super::admission::{Little, Queued};

/// The in-flight limit: an adaptive number of calls across all connections (see `Admission`),
/// so that what is admitted does not queue behind the store; the next one is refused at once
/// with RESOURCE_EXHAUSTED in its own protocol, before anything of it is read. It sits in front
/// of the access log (whose span and bookkeeping cost a shed call more than its refusal): a
/// refusal costs a canned response, a count in `metrics` and no log line of its own (one line a
/// second tells how many calls were shed).
pub fn shed(admission: Admission, metrics: Option<Arc<CallMetrics>>) -> ShedLayer {
    let queued = Queued { target: admission.target };
    ShedLayer {
        limit: tower_acc::ConcurrencyLimitLayer::with_classifier(
            Little::new(admission, metrics.as_ref().map(|m| m.admission_limit())),
            queued,
        ),
        counted: Arc::new(Counted { metrics, tally: ShedTally::new() }),
    }
}

/// See [`shed`].
#[derive(Debug, Clone)]
pub struct ShedLayer {
    limit: tower_acc::ConcurrencyLimitLayer<Little, Queued>,
    counted: Arc<Counted>,
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed { limited: self.limit.layer(inner), counted: Arc::clone(&self.counted) }
    }
}

/// Where shed calls are counted.
#[derive(Debug)]
struct Counted {
    metrics: Option<Arc<CallMetrics>>,
    tally: ShedTally,
}

impl Counted {
    fn shed(&self, protocol: Protocol) {
        if let Some(metrics) = &self.metrics {
            metrics.shed(protocol);
        }
        self.tally.count();
    }
}

/// Calls shed since the last line about them, written at most once a second.
#[derive(Debug)]
struct ShedTally {
    epoch: Instant,
    unlogged: AtomicU64,
    /// The second (since `epoch`) of the last line.
    logged_at: AtomicU64,
}

impl ShedTally {
    fn new() -> Self {
        Self { epoch: Instant::now(), unlogged: AtomicU64::new(0), logged_at: AtomicU64::new(0) }
    }

    fn count(&self) {
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        let now = self.epoch.elapsed().as_secs() + 1;
        let last = self.logged_at.load(Ordering::Relaxed);
        if now > last && self.logged_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            let shed = self.unlogged.swap(0, Ordering::Relaxed);
            tracing::warn!(shed, "calls shed for overload (RESOURCE_EXHAUSTED) since the last such line");
        }
    }
}

type Limited<S> = tower_acc::ConcurrencyLimit<S, Little, Queued>;

/// The limit's service: admits the call or answers the canned refusal.
#[derive(Debug, Clone)]
pub struct Shed<S> {
    limited: Limited<S>,
    counted: Arc<Counted>,
}

impl<S: Next> Service<Request<Body>> for Shed<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Shedding<S>;

    /// Always ready: whether a call is admitted is decided when it comes, so that a refusal is
    /// a response.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    /// Takes a slot now or refuses now: a slot that is not free at once is not waited for (the
    /// clone's claim on the next free one is dropped with it). An admitted call's future is
    /// boxed, so that a refusal, and every layer in front of this one, carries a pointer rather
    /// than the whole call's state (moving that state through the outer layers was ~9% of the
    /// CPU under overload, in `memmove`).
    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let mut limited = self.limited.clone();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if let Poll::Ready(Ok(())) = limited.poll_ready(&mut cx) {
            // The call's clock starts as it is admitted; the call runs inside it.
            return Shedding::Admitted(Box::pin(call_clock::start(limited.oneshot(request))));
        }
        let protocol = Protocol::of(request.headers(), request.uri().path());
        let unread_body = request.version() < Version::HTTP_2 && has_body(request.headers());
        self.counted.shed(protocol);
        Shedding::Refused(Some(overloaded(protocol, unread_body)))
    }
}

/// An admitted call: the stack inside the limit, run within the call's clock.
type Admitted<S> = TaskLocalFuture<Clock, Oneshot<Limited<S>, Request<Body>>>;

/// An admitted call, or the refusal of one.
pub enum Shedding<S: Next> {
    Admitted(Pin<Box<Admitted<S>>>),
    Refused(Option<Response<Body>>),
}

impl<S: Next> std::fmt::Debug for Shedding<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Admitted(_) => "Shedding::Admitted",
            Self::Refused(_) => "Shedding::Refused",
        })
    }
}

impl<S: Next> Future for Shedding<S> {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Admitted(call) => call.as_mut().poll(cx),
            Self::Refused(response) => Poll::Ready(Ok(response.take().expect("a refusal is answered once"))),
        }
    }
}

/// The canned refusal, rendered once per protocol: refusing must cost a small fraction of serving.
fn overloaded(protocol: Protocol, unread_body: bool) -> Response<Body> {
    static CANNED: LazyLock<Vec<(Protocol, refuse::Rendered)>> = LazyLock::new(|| {
        let overloaded =
            refuse::status(Code::ResourceExhausted, "SERVER-Overloaded", "the server is overloaded; retry later");
        PROTOCOLS.iter().map(|protocol| (*protocol, refuse::Rendered::new(*protocol, &overloaded, None))).collect()
    });
    let rendered = CANNED.iter().find(|(p, _)| *p == protocol).map(|(_, r)| r);
    let mut response = rendered.expect("every protocol is rendered").response();
    if unread_body {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

const PROTOCOLS: [Protocol; 6] = [
    Protocol::Grpc,
    Protocol::GrpcWeb { text: false },
    Protocol::GrpcWeb { text: true },
    Protocol::Connect { json: true },
    Protocol::Connect { json: false },
    Protocol::Rest,
];

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers.get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0")
}

/// The body limit and read deadline: a body declared larger than `limit` is refused at once; one
/// that grows past it, or does not arrive within `read_timeout`, fails as it is read, with the
/// status the reader hands on to the client.
pub fn body_guard(limit: usize, read_timeout: Duration) -> BodyGuardLayer {
    BodyGuardLayer { limit, read_timeout }
}

/// See [`body_guard`].
#[derive(Debug, Clone, Copy)]
pub struct BodyGuardLayer {
    limit: usize,
    read_timeout: Duration,
}

impl<S> Layer<S> for BodyGuardLayer {
    type Service = BodyGuard<S>;

    fn layer(&self, inner: S) -> BodyGuard<S> {
        BodyGuard { inner, guard: *self }
    }
}

/// The body guard's service.
#[derive(Debug, Clone)]
pub struct BodyGuard<S> {
    inner: S,
    guard: BodyGuardLayer,
}

impl<S: Next> Service<Request<Body>> for BodyGuard<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = PassOr<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let BodyGuardLayer { limit, read_timeout } = self.guard;
        let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            let protocol = protocol_of(&request);
            let mut response = refuse::render(protocol, &too_large(limit), None);
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return answer(std::future::ready(response));
        }
        let until = tokio::time::Instant::now() + read_timeout;
        let request =
            request.map(|body| Body::new(Guarded { inner: body, limit, read: 0, until, timer: None, waiting: None }));
        pass(self.inner.call(request))
    }
}

fn too_large(limit: usize) -> Status {
    refuse::status(
        Code::ResourceExhausted,
        "REQUEST-TooLarge",
        &format!("the request body exceeds the limit of {limit} bytes"),
    )
}

/// The protocol `classify` decided, or the one the headers say.
pub fn protocol_of(request: &Request<Body>) -> Protocol {
    request
        .extensions()
        .get::<Target>()
        .map_or_else(|| Protocol::of(request.headers(), request.uri().path()), |t| t.protocol)
}

/// A request body held to a size and a time.
struct Guarded {
    inner: Body,
    limit: usize,
    read: usize,
    /// When the body must have arrived.
    until: tokio::time::Instant,
    /// Armed the first time the body is waited for (a body already there needs no timer).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Since when the body has been waited for: the client's time, not the call's own.
    waiting: Option<std::time::Instant>,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let Some(since) = this.waiting.take() {
                call_clock::excuse(since.elapsed());
            }
            return Poll::Ready(match frame {
                Some(Ok(frame)) => {
                    this.read += frame.data_ref().map_or(0, Bytes::len);
                    if this.read > this.limit { Some(Err(too_large(this.limit))) } else { Some(Ok(frame)) }
                }
                Some(Err(error)) => Some(Err(unreadable(error))),
                None => None,
            });
        }
        let until = this.until;
        match this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until))).as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(refuse::status(
                Code::DeadlineExceeded,
                "REQUEST-BodyTimeout",
                "the request body did not arrive in time",
            )))),
            Poll::Pending => {
                this.waiting.get_or_insert_with(std::time::Instant::now);
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body read that failed: the client hanging up is CANCELLED (error rates count only real
/// errors); anything else is a malformed body. A status raised further out passes unchanged.
fn unreadable(error: Status) -> Status {
    if error.details().is_empty() {
        if client_went_away(&error) {
            return refuse::status(
                Code::Cancelled,
                "REQUEST-Cancelled",
                "the client cancelled the call before its body arrived",
            );
        }
        return refuse::status(Code::InvalidArgument, "REQUEST-BodyUnreadable", "the request body could not be read");
    }
    error
}

/// Whether a body read failed because the client hung up (a stream reset with CANCEL, a closed
/// connection, a message cut short) rather than because it sent something malformed.
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

/// The call deadline from `grpc-timeout` or `connect-timeout-ms` (the shorter wins): it covers
/// authentication, the body read and the handler. A zero deadline has expired already, and
/// nothing runs.
pub fn deadline() -> DeadlineLayer {
    DeadlineLayer
}

/// See [`deadline`].
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

/// The deadline's service: a call without a deadline passes untimed.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
}

impl<S: Next> Service<Request<Body>> for Deadline<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = PassOr<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let Some(limit) = parse_deadline(request.headers()).transpose() else {
            return pass(self.inner.call(request));
        };
        let protocol = protocol_of(&request);
        let limit = match limit {
            Ok(limit) => limit,
            // A malformed deadline is the request's own fault: answered after authentication
            // (the call runs nothing), or now for an RPC that takes no credential.
            Err(status) => {
                return match classify::defer(request.extensions_mut(), status) {
                    Ok(()) => pass(self.inner.call(request)),
                    Err(status) => answer(refuse::early(request, refuse::render(protocol, &status, None))),
                };
            }
        };
        let expired = || refuse::status(Code::DeadlineExceeded, "REQUEST-DeadlineExceeded", "the call ran out of time");
        if limit.is_zero() {
            return answer(refuse::early(request, refuse::render(protocol, &expired(), None)));
        }
        let http1 = request.version() < Version::HTTP_2;
        let call = tokio::time::timeout(limit, self.inner.call(request));
        answer(async move {
            match call.await {
                Ok(Ok(response)) => response,
                Err(_) => {
                    let mut response = refuse::render(protocol, &expired(), None);
                    // The body may not have been read to its end.
                    if http1 {
                        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    response
                }
            }
        })
    }
}

/// `grpc-timeout` (`<1-8 digits><H|M|S|m|u|n>`) and `connect-timeout-ms` (`<1-10 digits>`).
pub fn parse_deadline(headers: &HeaderMap) -> Result<Option<Duration>, Status> {
    let bad = |name: &str| {
        refuse::status(Code::InvalidArgument, "REQUEST-InvalidTimeout", &format!("the {name} header is malformed"))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::transport::{Inner, forward};

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

    /// Fires `n` calls at once through `service` and counts those it admitted; each call's body
    /// arrives after `body_delay`.
    async fn admitted_of(service: &Inner, n: usize, body_delay: Duration) -> usize {
        let calls = (0..n).map(|_| {
            let body = futures_util::stream::once(async move {
                tokio::time::sleep(body_delay).await;
                Ok::<_, Status>(Frame::data(Bytes::from_static(b"x")))
            });
            let request = Request::builder()
                .uri("/zitadel.session.v2.SessionService/GetSession")
                .header(header::CONTENT_TYPE, "application/grpc")
                .body(Body::new(http_body_util::StreamBody::new(body)))
                .unwrap();
            forward(service.clone(), request)
        });
        let responses = futures_util::future::join_all(calls).await;
        responses.iter().filter(|r| r.headers().get("grpc-status").is_none_or(|s| s != "8")).count()
    }

    #[tokio::test]
    async fn the_in_flight_limit_backs_off_when_calls_queue_not_when_they_wait_on_others() {
        use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
        const OWN_WORK: u8 = 0;
        const FAST: u8 = 1;
        const HASHING: u8 = 2;
        let mode = Arc::new(AtomicU8::new(HASHING));
        let inner = {
            let mode = Arc::clone(&mode);
            Inner::new(tower::service_fn(move |request: Request<Body>| {
                let mode = mode.load(Relaxed);
                async move {
                    let _ = http_body_util::BodyExt::collect(request.into_body()).await;
                    match mode {
                        OWN_WORK => tokio::time::sleep(Duration::from_millis(150)).await,
                        FAST => tokio::time::sleep(Duration::from_millis(1)).await,
                        _ => crate::call_clock::excused(tokio::time::sleep(Duration::from_millis(250))).await,
                    }
                    Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
                }
            }))
        };
        let admission = Admission { max: 64, floor: 4, target: Duration::from_millis(100) };
        let guarded = body_guard(1 << 20, Duration::from_secs(10)).layer(inner);
        let service = Inner::new(shed(admission, None).layer(Inner::new(guarded)));
        let none = Duration::ZERO;

        // Calls that wait 250 ms for a password hash, or for their own body from the client, are
        // not queueing: burst after burst is served whole.
        for _ in 0..3 {
            assert_eq!(admitted_of(&service, 64, none).await, 64, "a hash wait is not the server's queue");
        }
        mode.store(FAST, Relaxed);
        for _ in 0..3 {
            assert_eq!(admitted_of(&service, 64, Duration::from_millis(250)).await, 64, "a slow client neither");
        }
        // Calls whose own work takes longer than the target: the limit backs off, to its floor.
        mode.store(OWN_WORK, Relaxed);
        let mut admitted = Vec::new();
        for _ in 0..20 {
            admitted.push(admitted_of(&service, 64, none).await);
        }
        assert!(admitted[2] < 64, "the limit backed off once calls queued: {admitted:?}");
        assert!(admitted[19] <= 8, "towards the floor of 4: {admitted:?}");
        // Calls answered within the target raise it again, up to the maximum.
        mode.store(FAST, Relaxed);
        let until = std::time::Instant::now() + Duration::from_secs(10);
        let mut admitted = 0;
        while admitted < 64 && std::time::Instant::now() < until {
            admitted = admitted_of(&service, 64, none).await;
        }
        assert_eq!(admitted, 64, "the limit grew back while calls were fast");
    }

    #[test]
    fn deadlines_parse_and_the_shorter_wins() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            pairs
                .iter()
                .map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_static(v)))
                .collect::<HeaderMap>()
        };
        assert_eq!(parse_deadline(&headers(&[("grpc-timeout", "2S")])).unwrap(), Some(Duration::from_secs(2)));
        let both = headers(&[("grpc-timeout", "2S"), ("connect-timeout-ms", "500")]);
        assert_eq!(parse_deadline(&both).unwrap(), Some(Duration::from_millis(500)));
        assert!(parse_deadline(&headers(&[("grpc-timeout", "1.5S")])).is_err());
    }
}

//! How long a connection may stay open: until its first request head within a deadline, and no
//! longer than an idle timeout with nothing in flight, so silent or forgotten sockets cannot hold
//! the process's file descriptors.
//!
//! hyper-util's auto builder waits without limit for the bytes that tell HTTP/1 from h2, and h2
//! keeps an unused connection open for as long as the client answers pings. Each connection
//! therefore gets a [`Watchdog`], which watches what its [`Tracked`] service sees (requests and
//! responses, not bytes: keep-alive pings are traffic, not use) and says when to drain the
//! connection or drop it.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures_util::future::{BoxFuture, FutureExt as _};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};
use tower::Service;

/// How long a drained connection with nothing in flight may wait for its client (an h2 client
/// acknowledging the GOAWAY's ping) before it is dropped.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// The deadlines every connection keeps.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// From accept to the first request head (HTTP/1 or h2, the h2 preface included).
    pub first_request: Duration,
    /// With no request in flight, from the last response to the close.
    pub idle: Duration,
}

/// What one connection's service has seen, shared with its watchdog.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Request heads received.
    requests: AtomicU64,
    /// Requests whose response has not been sent (or dropped) yet.
    in_flight: AtomicUsize,
    /// When the last call ended, in milliseconds after `opened`.
    last_end_ms: AtomicU64,
    /// Told when the last call in flight ends (a permit is kept if the watchdog is not waiting).
    idle: Notify,
}

impl Activity {
    fn last_end(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_end_ms.load(Ordering::Acquire))
    }
}

/// Starts tracking a new connection: the service to serve it with, and its watchdog.
pub fn track<S>(service: S, lifetimes: Lifetimes, shutdown: watch::Receiver<bool>) -> (Tracked<S>, Watchdog) {
    let activity = Arc::new(Activity {
        opened: Instant::now(),
        requests: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
        last_end_ms: AtomicU64::new(0),
        idle: Notify::new(),
    });
    let watchdog = Watchdog { activity: Arc::clone(&activity), lifetimes, shutdown, draining_since: None };
    (Tracked { inner: service, activity }, watchdog)
}

/// What the connection's owner must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Stop taking requests and close once the ones in flight are answered (hyper's graceful
    /// shutdown: GOAWAY on h2, close after the current response on HTTP/1).
    Drain,
    /// Close now: nothing is in flight, or nothing ever was.
    Close,
}

/// Decides when one connection has overstayed.
#[derive(Debug)]
pub struct Watchdog {
    activity: Arc<Activity>,
    lifetimes: Lifetimes,
    /// Turns `true` when the server shuts down.
    shutdown: watch::Receiver<bool>,
    draining_since: Option<Instant>,
}

impl Watchdog {
    /// Resolves when the connection must be drained or closed. Call it again after a `Drain`.
    pub async fn next(&mut self) -> Verdict {
        loop {
            let wake_at = match self.check(Instant::now()) {
                Ok(verdict) => return verdict,
                Err(wake_at) => wake_at,
            };
            let deadline = async {
                match wake_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let draining = self.draining_since.is_some();
            tokio::select! {
                () = deadline => {}
                () = self.activity.idle.notified() => {}
                // A dropped sender is the server gone: drain as on shutdown.
                _ = self.shutdown.changed(), if !draining => {}
            }
        }
    }

    /// The verdict due at `now`, or when to look again (`None`: when the calls in flight have
    /// ended; they are never cut).
    fn check(&mut self, now: Instant) -> Result<Verdict, Option<Instant>> {
        let activity = &self.activity;
        let busy = activity.in_flight.load(Ordering::Acquire) > 0;
        if let Some(since) = self.draining_since {
            if busy {
                return Err(None);
            }
            let close_at = since.max(activity.last_end()) + DRAIN_GRACE;
            return if now >= close_at { Ok(Verdict::Close) } else { Err(Some(close_at)) };
        }
        if *self.shutdown.borrow() || self.shutdown.has_changed().is_err() {
            self.draining_since = Some(now);
            return Ok(Verdict::Drain);
        }
        if activity.requests.load(Ordering::Acquire) == 0 {
            // Silent, half a preface, or an h2 connection never used: nothing to be polite about.
            // A first request wakes nobody: it only makes the next deadline the idle one, later.
            let deadline = activity.opened + self.lifetimes.first_request;
            return if now >= deadline { Ok(Verdict::Close) } else { Err(Some(deadline)) };
        }
        if busy {
            return Err(None);
        }
        let deadline = activity.last_end() + self.lifetimes.idle;
        if now >= deadline {
            self.draining_since = Some(now);
            Ok(Verdict::Drain)
        } else {
            Err(Some(deadline))
        }
    }
}

/// A connection's service, counting its calls for the watchdog.
#[derive(Debug, Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, B, R> Service<Request<B>> for Tracked<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = Response<TrackedBody<R>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let call = InFlight::start(Arc::clone(&self.activity));
        self.inner
            .call(request)
            .map(move |result| result.map(|response| response.map(|body| TrackedBody { body, _call: call })))
            .boxed()
    }
}

/// One call from its request head until its response body is sent or dropped.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.requests.fetch_add(1, Ordering::AcqRel);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let since_open = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Stored before the count drops, so a watchdog that sees the connection idle sees this end.
        self.0.last_end_ms.fetch_max(since_open, Ordering::AcqRel);
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The idle deadline may now come before the one the watchdog sleeps towards.
            self.0.idle.notify_one();
        }
    }
}

/// A response body that keeps its call in flight until it is sent or dropped.
#[derive(Debug)]
pub struct TrackedBody<B> {
    body: B,
    /// Released when the body is dropped: sent, or abandoned by a client that went away.
    _call: InFlight,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watchdog() -> (Watchdog, Arc<Activity>, watch::Sender<bool>) {
        watchdog_with(Lifetimes { first_request: Duration::from_secs(10), idle: Duration::from_secs(60) })
    }

    fn watchdog_with(lifetimes: Lifetimes) -> (Watchdog, Arc<Activity>, watch::Sender<bool>) {
        let (stop, shutdown) = watch::channel(false);
        let (tracked, watchdog) = track((), lifetimes, shutdown);
        (watchdog, tracked.activity, stop)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_is_closed_at_the_first_request_deadline() {
        let (mut watchdog, activity, _stop) = watchdog();
        let opened = activity.opened;
        assert_eq!(watchdog.check(opened), Err(Some(opened + Duration::from_secs(10))));
        assert_eq!(watchdog.next().await, Verdict::Close);
        assert_eq!(Instant::now(), opened + Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_drained_and_a_busy_one_is_not() {
        let (mut watchdog, activity, _stop) = watchdog();
        let call = InFlight::start(Arc::clone(&activity));
        tokio::time::advance(Duration::from_secs(600)).await;
        let now = Instant::now();
        assert_eq!(watchdog.check(now), Err(None), "a call in flight is never cut");
        drop(call);
        assert_eq!(watchdog.check(now), Err(Some(now + Duration::from_secs(60))), "idle counts from the call's end");
        assert_eq!(watchdog.next().await, Verdict::Drain);
        assert_eq!(Instant::now(), now + Duration::from_secs(60));
        assert_eq!(watchdog.next().await, Verdict::Close);
        assert_eq!(Instant::now(), now + Duration::from_secs(60) + DRAIN_GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn the_end_of_a_call_brings_a_shorter_idle_deadline_forward() {
        let lifetimes = Lifetimes { first_request: Duration::from_secs(10), idle: Duration::from_secs(1) };
        let (mut watchdog, activity, _stop) = watchdog_with(lifetimes);
        let opened = activity.opened;
        let verdict = tokio::spawn(async move { (watchdog.next().await, Instant::now()) });
        // The watchdog now sleeps towards the first-request deadline, 10 s away.
        tokio::task::yield_now().await;
        drop(InFlight::start(Arc::clone(&activity)));
        assert_eq!(verdict.await.unwrap(), (Verdict::Drain, opened + Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_drains_at_once_and_waits_for_calls_in_flight() {
        let (mut watchdog, activity, stop) = watchdog();
        let call = InFlight::start(Arc::clone(&activity));
        stop.send_replace(true);
        assert_eq!(watchdog.next().await, Verdict::Drain);
        let drained = Instant::now();
        let check = tokio::spawn(async move {
            let verdict = watchdog.next().await;
            (verdict, Instant::now())
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(call);
        let (verdict, at) = check.await.unwrap();
        assert_eq!(verdict, Verdict::Close);
        assert!(at >= drained + Duration::from_secs(30) + DRAIN_GRACE, "closed only after the call ended");
    }
}

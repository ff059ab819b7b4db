//! Authentication, the service's half: the bearer credential the transport put into the
//! request's extensions is looked up (the token, its expiry, its user) before tonic decodes the
//! request, and the caller it names takes its place. A call without one is UNAUTHENTICATED.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tonic::{Status, body::Body, server::NamedService};
use tower::{Service, ServiceExt};

use crate::domain::user::Users;

/// A bearer token as presented, which the transport parses out of `authorization`. It never
/// appears in `Debug` output or logs.
#[derive(Clone)]
pub struct Bearer(String);

impl Bearer {
    pub fn new(token: String) -> Self {
        Self(token)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(<redacted>)")
    }
}

/// `inner` (the generated server) behind the token lookup.
#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    inner: S,
    users: Users,
}

impl<S> Authenticated<S> {
    pub fn new(inner: S, users: Users) -> Self {
        Self { inner, users }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<Body>> for Authenticated<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The generated server is always ready; the clone below is what gets called.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let (inner, users) = (self.inner.clone(), self.users.clone());
        Box::pin(async move {
            let Some(bearer) = request.extensions_mut().remove::<Bearer>() else {
                let status: Status = crate::domain::Error::unauthenticated(
                    "AUTH-MissingCredentials",
                    "the request carries no bearer token",
                )
                .into();
                return Ok(status.into_http());
            };
            match users.authenticate(bearer.expose()).await {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.oneshot(request).await
                }
                Err(error) => Ok(Status::from(error).into_http()),
            }
        })
    }
}

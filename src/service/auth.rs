//! Authentication, the service's half: the bearer credential the transport put into the
//! request's extensions is looked up (the token, its expiry, its user), or verified as a JWT of
//! the configured OIDC issuer, before tonic decodes the request, and the caller it names takes its
//! place. A call without one is UNAUTHENTICATED.
//!
//! The hot calls (Get, Delete and Create of a session) with an API token are not looked up here:
//! the token goes to the call, whose own store step re-reads it with the call's rows (one job,
//! one round trip less). An invalid token must still be answered UNAUTHENTICATED before any other
//! error the call could have, so when such a call fails otherwise, the token is looked up here
//! after all and its refusal answered instead (error paths may cost that lookup).
//!
//! The [`Gate`] runs earlier, in the transport, before any body is read: a credential not proven
//! lately is looked up there, so that a caller without a valid token is refused at once instead
//! of holding an in-flight slot while its body trickles in.

use std::{
    collections::HashSet,
    convert::Infallible,
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tonic::{Status, body::Body, server::NamedService};
use tower::{Service, ServiceExt};

use crate::{
    domain::{
        Caller, ErrorClass, Presented, Principal, Result,
        token::ApiToken,
        user::{Users, invalid_token},
    },
    oidc::{self, Verifier},
};

/// The calls that authenticate in their own store step (`Sessions::*_as`).
const FUSED: [&str; 3] = [
    "/zitadel.session.v2.SessionService/GetSession",
    "/zitadel.session.v2.SessionService/DeleteSession",
    "/zitadel.session.v2.SessionService/CreateSession",
];

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

/// A refusal the transport decided on the request's own form (a body that does not decode, a
/// malformed frame or deadline), held until the caller is authenticated: UNAUTHENTICATED comes
/// first on every protocol. The call carrying it runs nothing; the first one decided stands.
#[derive(Debug, Clone)]
pub struct PendingRefusal(pub Status);

/// How many proven credentials the gate remembers; past it, it starts over (each forgotten one
/// costs one lookup on its next call).
const PROVEN_MAX: usize = 4096;

/// Whether a call may wait for its body: its credential was proven valid lately, or is now.
/// Proven credentials are remembered only by a 64-bit hash under this process's random keys
/// (SipHash): without the keys no value can be made to collide with a proven one, and a
/// collision would only admit a call to its body read. Being remembered admits a call that far
/// and no further: the call's own lookup still decides, and a credential it refuses (revoked,
/// expired, its user disabled) is forgotten here.
#[derive(Debug, Clone)]
pub struct Gate {
    users: Users,
    /// With `--oidc-issuer`: bearer values of JWT shape are verified as the issuer's tokens.
    oidc: Option<Arc<Verifier>>,
    proven: Arc<Mutex<HashSet<u64>>>,
    keys: RandomState,
}

impl Gate {
    pub fn new(users: Users, oidc: Option<Arc<Verifier>>) -> Self {
        Self { users, oidc, proven: Arc::default(), keys: RandomState::new() }
    }

    /// Whether `bearer` was proven lately (no lookup).
    pub fn admits_now(&self, bearer: &Bearer) -> bool {
        let digest = self.digest(bearer);
        self.proven.lock().unwrap_or_else(|e| e.into_inner()).contains(&digest)
    }

    /// Looks `bearer` up: remembered when valid, else the refusal (UNAUTHENTICATED, or the store's
    /// failure).
    pub async fn admit(&self, bearer: &Bearer) -> std::result::Result<(), Status> {
        caller(&self.users, self.oidc.as_deref(), bearer).await.map_err(Status::from)?;
        let digest = self.digest(bearer);
        let mut proven = self.proven.lock().unwrap_or_else(|e| e.into_inner());
        if proven.len() >= PROVEN_MAX {
            proven.clear();
        }
        proven.insert(digest);
        Ok(())
    }

    fn forget(&self, bearer: &Bearer) {
        let digest = self.digest(bearer);
        self.proven.lock().unwrap_or_else(|e| e.into_inner()).remove(&digest);
    }

    fn digest(&self, bearer: &Bearer) -> u64 {
        self.keys.hash_one(bearer.expose())
    }
}

/// `inner` (the generated server) behind the token lookup.
#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    inner: S,
    gate: Gate,
}

impl<S> Authenticated<S> {
    /// `gate` is the transport's: a credential this lookup refuses is forgotten there.
    pub fn new(inner: S, gate: Gate) -> Self {
        Self { inner, gate }
    }
}

/// The caller a bearer value names: a JWT of the configured issuer, or one of sessiond's tokens.
async fn caller(users: &Users, oidc: Option<&Verifier>, bearer: &Bearer) -> Result<Caller> {
    match oidc {
        Some(verifier) if oidc::looks_like_jwt(bearer.expose()) => {
            let verified = verifier.verify(bearer.expose()).await?;
            users.authenticate_vouched(&verified.user_id, verified.permissions, format!("jwt:{}", verified.kid)).await
        }
        _ => users.authenticate(bearer.expose()).await,
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
        let (inner, gate) = (self.inner.clone(), self.gate.clone());
        Box::pin(async move {
            let (users, oidc) = (&gate.users, gate.oidc.as_deref());
            let Some(bearer) = request.extensions_mut().remove::<Bearer>() else {
                let status: Status = crate::domain::Error::unauthenticated(
                    "AUTH-MissingCredentials",
                    "the request carries no bearer token",
                )
                .into();
                return Ok(status.into_http());
            };
            if let Some(PendingRefusal(refusal)) = request.extensions_mut().remove::<PendingRefusal>() {
                return Ok(match caller(users, oidc, &bearer).await {
                    Ok(_) => refusal.into_http(),
                    Err(error) => {
                        if error.class == ErrorClass::Unauthenticated {
                            gate.forget(&bearer);
                        }
                        Status::from(error).into_http()
                    }
                });
            }
            let jwt = oidc.is_some() && oidc::looks_like_jwt(bearer.expose());
            if !jwt && FUSED.contains(&request.uri().path()) {
                let Some(token) = ApiToken::parse(bearer.expose()) else {
                    return Ok(Status::from(invalid_token()).into_http());
                };
                let presented = Presented::new(token);
                request.extensions_mut().insert(Principal::Token(presented.clone()));
                let response = inner.oneshot(request).await?;
                if presented.is_proven() {
                    return Ok(response);
                }
                let response = unless_unauthenticated(response, users, &bearer).await;
                if response.headers().get("grpc-status").is_some_and(|code| code == "16") {
                    gate.forget(&bearer);
                }
                return Ok(response);
            }
            match caller(users, oidc, &bearer).await {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.oneshot(request).await
                }
                Err(error) => {
                    if error.class == ErrorClass::Unauthenticated {
                        gate.forget(&bearer);
                    }
                    Ok(Status::from(error).into_http())
                }
            }
        })
    }
}

/// The answer of a call that never found its token valid, unless it failed with another error
/// than UNAUTHENTICATED and its token does not authenticate: then that refusal. (A call fails
/// before its store step decided on a malformed request or id, or a body that does not decode.)
async fn unless_unauthenticated(response: Response<Body>, users: &Users, bearer: &Bearer) -> Response<Body> {
    // Errors are answered trailers-only: their code is in the head. 16 is UNAUTHENTICATED.
    let failed = response.headers().get("grpc-status").is_some_and(|code| code != "0" && code != "16");
    if !failed {
        return response;
    }
    match users.authenticate(bearer.expose()).await {
        Err(refusal) if refusal.class == ErrorClass::Unauthenticated => Status::from(refusal).into_http(),
        _ => response,
    }
}

//! The `authorization` header, parsed into a typed bearer credential in the request's
//! extensions. A SessionService or UserService call without a usable credential is refused
//! before its body is read, and so is one whose credential the service's [`Gate`] does not admit
//! (one not proven lately is looked up first): a caller without a valid token never holds an
//! in-flight slot while its body trickles in. The token never appears in `Debug` output.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use http::{HeaderMap, Request, Response, header::AUTHORIZATION};
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service, ServiceExt};

use super::{Next, PassOr, SESSION_SERVICE, USER_SERVICE, answer, classify::Target, pass, refuse};
use crate::service::auth::{Bearer, Gate};

/// The layer: SessionService and UserService calls get their `Bearer` in the extensions or are
/// refused.
#[derive(Debug, Clone)]
pub struct CredentialLayer {
    gate: Gate,
}

impl<S> Layer<S> for CredentialLayer {
    type Service = Credential<S>;

    fn layer(&self, inner: S) -> Credential<S> {
        Credential { inner, gate: self.gate.clone() }
    }
}

/// See [`CredentialLayer`].
#[derive(Debug, Clone)]
pub struct Credential<S> {
    inner: S,
    gate: Gate,
}

impl<S: Next> Service<Request<Body>> for Credential<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = PassOr<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let protocol = request
            .extensions()
            .get::<Target>()
            .filter(|t| t.is_of(SESSION_SERVICE) || t.is_of(USER_SERVICE))
            .map(|t| t.protocol);
        let Some(protocol) = protocol else {
            return pass(self.inner.call(request));
        };
        match bearer(request.headers()) {
            Ok(bearer) if self.gate.admits_now(&bearer) => {
                request.extensions_mut().insert(bearer);
                pass(self.inner.call(request))
            }
            Ok(bearer) => {
                let (gate, inner) = (self.gate.clone(), self.inner.clone());
                answer(async move {
                    match gate.admit(&bearer).await {
                        Ok(()) => {
                            request.extensions_mut().insert(bearer);
                            let Ok(response) = inner.oneshot(request).await;
                            response
                        }
                        Err(status) => refuse::early(request, refuse::render(protocol, &status, None)).await,
                    }
                })
            }
            Err(status) => answer(refuse::early(request, refuse::render(protocol, &status, None))),
        }
    }
}

/// The layer, admitting calls to their body read through `gate`.
pub fn layer(gate: Gate) -> CredentialLayer {
    CredentialLayer { gate }
}

fn unauthenticated(id: &str, message: &str) -> Status {
    refuse::status(Code::Unauthenticated, id, message)
}

/// Exactly one `authorization: Bearer <token>` header (scheme case-insensitive), else
/// UNAUTHENTICATED saying what was wrong.
pub fn bearer(headers: &HeaderMap) -> Result<Bearer, Status> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values
        .next()
        .ok_or_else(|| unauthenticated("AUTH-MissingCredentials", "the request carries no authorization header"))?;
    if values.next().is_some() {
        return Err(unauthenticated(
            "AUTH-AmbiguousCredentials",
            "the request carries more than one authorization header",
        ));
    }
    let malformed =
        || unauthenticated("AUTH-MalformedCredentials", "the authorization header must be `Bearer <token>`");
    let value = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(malformed());
    }
    Ok(Bearer::new(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn accepts_bearer_in_any_case() {
        assert_eq!(bearer(&headers(&["Bearer abc"])).unwrap().expose(), "abc");
        assert_eq!(bearer(&headers(&["bEaReR abc"])).unwrap().expose(), "abc");
    }

    #[test]
    fn refuses_everything_else() {
        for (h, id) in [
            (headers(&[]), "AUTH-MissingCredentials"),
            (headers(&["Bearer "]), "AUTH-MalformedCredentials"),
            (headers(&["Basic dXNlcjpwYXNz"]), "AUTH-MalformedCredentials"),
            (headers(&["Bearer a", "Bearer b"]), "AUTH-AmbiguousCredentials"),
        ] {
            assert!(bearer(&h).unwrap_err().message().ends_with(&format!("({id})")));
        }
    }

    #[test]
    fn debug_hides_the_token() {
        assert!(!format!("{:?}", bearer(&headers(&["Bearer s3cret"])).unwrap()).contains("s3cret"));
    }
}

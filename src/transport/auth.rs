//! The `authorization` header, parsed into a typed bearer credential (no lookups here: the
//! domain resolves it). The token never appears in `Debug` output or logs.

use std::fmt;

use http::{HeaderMap, header::AUTHORIZATION};

use crate::domain::Error;

/// A bearer token as presented.
pub struct Bearer(String);

impl Bearer {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer(<redacted>)")
    }
}

/// Exactly one `authorization: Bearer <token>` header (scheme case-insensitive), else
/// UNAUTHENTICATED saying what was wrong.
pub fn bearer(headers: &HeaderMap) -> Result<Bearer, Error> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or_else(|| {
        Error::unauthenticated("AUTH-MissingCredentials", "the request carries no authorization header")
    })?;
    if values.next().is_some() {
        return Err(Error::unauthenticated(
            "AUTH-AmbiguousCredentials",
            "the request carries more than one authorization header",
        ));
    }
    let malformed =
        || Error::unauthenticated("AUTH-MalformedCredentials", "the authorization header must be `Bearer <token>`");
    let value = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(malformed());
    }
    Ok(Bearer(token.to_owned()))
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
            assert_eq!(bearer(&h).unwrap_err().id, id);
        }
    }

    #[test]
    fn debug_hides_the_token() {
        assert!(!format!("{:?}", bearer(&headers(&["Bearer s3cret"])).unwrap()).contains("s3cret"));
    }
}

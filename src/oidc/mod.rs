//! JWT access tokens from an OpenID Connect provider (`--oidc-issuer`), beside sessiond's own API
//! tokens: verified with the issuer's published keys (RS256, ES256, EdDSA only), checked for
//! `exp`, `nbf`, `iss` and `aud` with a small leeway, and turned into a user id and permissions.

mod keys;

use std::{sync::Arc, time::Duration};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::domain::{Error, Permission, Permissions, Result};

use self::keys::{FetchPolicy, KeySet, MAX_KID_BYTES};

/// Longest JWT accepted, in bytes (access tokens are typically 1-2 KB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest user id a token may name (the longest user id a user check may name).
const MAX_USER_ID_CHARS: usize = 200;

/// How sessiond trusts an OIDC provider. `new` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// The issuer URL; tokens' `iss` must equal it exactly, and so must the discovery document's.
    pub issuer: String,
    /// A token's `aud` must name at least one of these (required: at least one).
    pub audiences: Vec<String>,
    /// The claim that names the sessiond user id.
    pub user_claim: String,
    /// The claim that carries permissions: a space-separated string or an array of strings.
    pub permissions_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Discovery and JWKS together must answer within this.
    pub fetch_timeout: Duration,
    /// At most one key-set fetch per this window for tokens naming an unknown `kid`.
    pub min_refresh_interval: Duration,
    /// Cached keys older than this are refetched in the background on their next use.
    pub max_key_age: Duration,
}

impl OidcConfig {
    pub const DEFAULT_USER_CLAIM: &str = "sub";
    pub const DEFAULT_PERMISSIONS_CLAIM: &str = "scope";
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            user_claim: Self::DEFAULT_USER_CLAIM.into(),
            permissions_claim: Self::DEFAULT_PERMISSIONS_CLAIM.into(),
            leeway: Self::DEFAULT_LEEWAY,
            fetch_timeout: Duration::from_secs(2),
            min_refresh_interval: Duration::from_secs(30),
            max_key_age: Duration::from_secs(600),
        }
    }

    /// A usable configuration: an http(s) issuer URL, at least one audience, claim names.
    pub fn check(&self) -> anyhow::Result<()> {
        let url = url::Url::parse(&self.issuer)
            .map_err(|e| anyhow::anyhow!("--oidc-issuer `{}` is not a URL: {e}", self.issuer))?;
        anyhow::ensure!(
            matches!(url.scheme(), "https" | "http") && url.host().is_some(),
            "--oidc-issuer `{}` must be an https:// URL",
            self.issuer
        );
        anyhow::ensure!(
            !self.audiences.is_empty() && self.audiences.iter().all(|a| !a.is_empty()),
            "--oidc-issuer needs --oidc-audience: the value a token's `aud` must name for sessiond"
        );
        anyhow::ensure!(
            !self.user_claim.is_empty() && !self.permissions_claim.is_empty(),
            "--oidc-user-claim and --oidc-permissions-claim must name a claim"
        );
        Ok(())
    }
}

/// What a verified token says: whose it is and what it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user_id: String,
    pub permissions: Permissions,
    /// The signing key's id, to tell callers apart in logs.
    pub kid: String,
}

/// Verifies JWTs against one issuer's keys.
#[derive(Debug)]
pub struct Verifier {
    config: OidcConfig,
    keys: Arc<KeySet>,
}

impl Verifier {
    /// Checks the configuration; fetches nothing yet (see `start`).
    pub fn new(config: OidcConfig) -> anyhow::Result<Self> {
        config.check()?;
        if config.issuer.starts_with("http://") {
            tracing::warn!(issuer = %config.issuer, "the OIDC issuer is reached over plain http: anyone on the path can substitute its keys");
        }
        let policy = FetchPolicy {
            timeout: config.fetch_timeout,
            min_interval: config.min_refresh_interval,
            max_age: config.max_key_age,
        };
        let keys = Arc::new(KeySet::new(&config.issuer, policy)?);
        Ok(Self { config, keys })
    }

    /// Starts fetching the issuer's keys in the background; an issuer that is away does not stop
    /// the start (the failure is logged and the first token that needs a key tries again).
    pub fn start(&self) {
        self.keys.prefetch();
    }

    /// The user and permissions a bearer JWT vouches for, or UNAUTHENTICATED saying why not.
    pub async fn verify(&self, token: &str) -> Result<Verified> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid(format!("the JWT is longer than {MAX_TOKEN_BYTES} bytes")));
        }
        let header = RawHeader::parse(token)?;
        let alg = match header.alg.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            "EdDSA" => Algorithm::EdDSA,
            other => {
                let named = if other.len() <= 16 && other.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    format!("`{other}`")
                } else {
                    "it names".into()
                };
                return Err(invalid(format!("the JWT's algorithm {named} is not accepted (RS256, ES256, EdDSA)")));
            }
        };
        let kid = header
            .kid
            .filter(|k| !k.is_empty() && k.len() <= MAX_KID_BYTES)
            .ok_or_else(|| invalid("the JWT header names no signing key (kid)"))?;
        let Some(key) = self.keys.key(&kid).await else {
            tracing::debug!(kid, issuer = %self.config.issuer, "jwt refused: unknown signing key");
            return Err(invalid("the JWT's signing key (kid) is not one of the issuer's keys"));
        };
        if key.kind.algorithm() != alg || key.alg.as_deref().is_some_and(|a| a != header.alg) {
            return Err(invalid("the JWT's algorithm does not match its signing key"));
        }
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &self.validation(alg))
            .map_err(|e| {
                let reason = reason(e.kind());
                tracing::debug!(kid, reason, "jwt refused");
                invalid(reason)
            })?
            .claims;
        let user_id = claims
            .get(&self.config.user_claim)
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty() && id.chars().count() <= MAX_USER_ID_CHARS && !id.chars().any(char::is_control))
            .ok_or_else(|| {
                invalid(format!("the JWT's `{}` claim must name a sessiond user id", self.config.user_claim))
            })?
            .to_owned();
        let permissions = permissions(claims.get(&self.config.permissions_claim)).ok_or_else(|| {
            invalid(format!(
                "the JWT's `{}` claim must be a space-separated string or an array of strings",
                self.config.permissions_claim
            ))
        })?;
        Ok(Verified { user_id, permissions, kid })
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation
    }
}

/// A bearer value of JWT shape: three base64url segments, the first two non-empty. sessiond's
/// own API tokens (`<id>.<secret>`) never have this shape.
pub fn looks_like_jwt(token: &str) -> bool {
    let segments: Vec<&str> = token.split('.').collect();
    segments.len() == 3
        && !segments[0].is_empty()
        && !segments[1].is_empty()
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The header fields read before any key is chosen.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

impl RawHeader {
    fn parse(token: &str) -> Result<Self> {
        let encoded = token.split('.').next().unwrap_or_default();
        URL_SAFE_NO_PAD
            .decode(encoded)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| invalid("the JWT header is not base64url-encoded JSON with an `alg`"))
    }
}

/// The known permissions a claim grants: a space-separated string (OAuth's `scope`) or an array
/// of strings; names sessiond does not know (`openid`, `profile`) are ignored. `None`: neither.
fn permissions(claim: Option<&Value>) -> Option<Permissions> {
    let known = |name: &str| name.parse::<Permission>().ok();
    match claim {
        None | Some(Value::Null) => Some(Permissions::default()),
        Some(Value::String(s)) => Some(s.split_whitespace().filter_map(known).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(known))
            .collect::<Option<Vec<_>>>()
            .map(|v| v.into_iter().flatten().collect()),
        Some(_) => None,
    }
}

/// Why jsonwebtoken refused a token, for the caller.
fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the JWT has expired (exp)".into(),
        ErrorKind::ImmatureSignature => "the JWT is not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "the JWT's issuer (iss) is not the configured issuer".into(),
        ErrorKind::InvalidAudience => "the JWT's audience (aud) names none of the configured audiences".into(),
        ErrorKind::InvalidSignature => "the JWT's signature does not verify".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the JWT has no `{claim}` claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("the JWT's `{claim}` claim is malformed"),
        _ => "the JWT is malformed".into(),
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::unauthenticated("AUTH-InvalidJwt", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape_is_three_base64url_segments() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(looks_like_jwt("eyJh.eyJz."), "alg none has an empty signature and is refused as a JWT");
        assert!(!looks_like_jwt("0123abcd.c2VjcmV0"), "an API token");
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt(".eyJz.c2ln"));
        assert!(!looks_like_jwt("ey+h.eyJz.c2ln"));
    }

    #[test]
    fn permissions_come_from_a_string_or_an_array_and_unknown_names_are_ignored() {
        let p = |v: Value| permissions(Some(&v)).map(|p| p.iter().map(Permission::as_str).collect::<Vec<_>>());
        assert_eq!(p(Value::from("openid session.read  session.write")).unwrap(), ["session.read", "session.write"]);
        assert_eq!(p(serde_json::json!(["session.delete", "admin"])).unwrap(), ["session.delete"]);
        assert_eq!(permissions(None), Some(Permissions::default()));
        assert_eq!(p(serde_json::json!(42)), None);
        assert_eq!(p(serde_json::json!(["session.read", 1])), None);
    }

    #[test]
    fn an_issuer_needs_an_audience_and_a_url() {
        let no_audience = Verifier::new(OidcConfig::new("https://idp.example", vec![])).unwrap_err();
        assert!(no_audience.to_string().contains("--oidc-audience"), "{no_audience}");
        let not_url = Verifier::new(OidcConfig::new("idp.example", vec!["a".into()])).unwrap_err();
        assert!(not_url.to_string().contains("not a URL"), "{not_url}");
    }
}

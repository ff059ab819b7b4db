//! The issuer's signing keys: the discovery document names `jwks_uri`, the JWKS there is fetched
//! with bounded time and size and cached by `kid`. An unknown `kid` refreshes the set at most once
//! per window (single flight), and while the issuer is away the cached keys keep working.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk},
};
use serde::Deserialize;
use tokio::sync::Mutex;

/// Largest discovery document read, in bytes.
const MAX_DISCOVERY_BYTES: usize = 64 * 1024;
/// Largest JWKS read, in bytes.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys a JWKS may hold; a larger set is refused whole (the cached keys stay).
const MAX_KEYS: usize = 64;
/// Longest `kid` kept (and looked up).
pub(super) const MAX_KID_BYTES: usize = 256;
/// RSA moduli accepted, in bytes: 2048 to 8192 bits.
const RSA_MODULUS_BYTES: std::ops::RangeInclusive<usize> = 256..=1024;

/// How often, and for how long, the key set may be fetched.
#[derive(Debug, Clone, Copy)]
pub(super) struct FetchPolicy {
    /// Discovery and JWKS together must answer within this.
    pub timeout: Duration,
    /// At most one fetch per window for tokens naming an unknown `kid`.
    pub min_interval: Duration,
    /// Keys older than this are refetched in the background on their next use.
    pub max_age: Duration,
}

/// What a key verifies: the one algorithm of its kind this server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    Rsa,
    P256,
    Ed25519,
}

impl KeyKind {
    /// The algorithm a key of this kind verifies here.
    pub(super) fn algorithm(self) -> Algorithm {
        match self {
            Self::Rsa => Algorithm::RS256,
            Self::P256 => Algorithm::ES256,
            Self::Ed25519 => Algorithm::EdDSA,
        }
    }
}

/// One verification key from the JWKS.
#[derive(Debug)]
pub(super) struct Key {
    pub kind: KeyKind,
    /// The JWK's own `alg`, when it names one: tokens must then use exactly that.
    pub alg: Option<String>,
    pub decoding: DecodingKey,
}

#[derive(Debug, Default)]
struct Cache {
    keys: HashMap<String, Arc<Key>>,
    /// When the cached set is due a background refetch (its age, or a retry after a failure).
    refresh_due: Option<Instant>,
}

/// The single flight's own state: only the holder of the lock fetches.
#[derive(Debug, Default)]
struct Flight {
    /// From the discovery document; forgotten when fetching the JWKS fails, so that a moved set
    /// is found again.
    jwks_uri: Option<String>,
    /// The last fetch an unknown `kid` caused (the rate limit's clock).
    last_on_demand: Option<Instant>,
}

/// The issuer's keys, cached. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub(super) struct KeySet {
    issuer: String,
    discovery_url: String,
    http: reqwest::Client,
    policy: FetchPolicy,
    cache: RwLock<Cache>,
    flight: Arc<Mutex<Flight>>,
    /// Fetches finished, successful or not: a call that waited for one does not start another.
    fetches: AtomicU64,
}

impl KeySet {
    pub(super) fn new(issuer: &str, policy: FetchPolicy) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("sessiond/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            issuer: issuer.to_owned(),
            discovery_url: format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/')),
            http,
            policy,
            cache: RwLock::new(Cache::default()),
            flight: Arc::new(Mutex::new(Flight::default())),
            fetches: AtomicU64::new(0),
        })
    }

    /// Fetches the keys once in the background. Calls that miss the cache meanwhile wait for this
    /// fetch (the flight is taken before this returns) instead of starting their own; a failure is
    /// logged and the next unknown `kid` tries again.
    pub(super) fn prefetch(self: &Arc<Self>) {
        let Ok(mut flight) = Arc::clone(&self.flight).try_lock_owned() else { return };
        let this = Arc::clone(self);
        tokio::spawn(async move { this.fetch(&mut flight).await });
    }

    /// The key named `kid`: from the cache, or after one refresh when it is unknown and the rate
    /// limit allows one; `None` when the issuer does not publish it (or cannot be reached).
    pub(super) async fn key(self: &Arc<Self>, kid: &str) -> Option<Arc<Key>> {
        if let Some(key) = self.cached(kid) {
            self.refresh_if_due();
            return Some(key);
        }
        // Waits for a fetch in flight: a burst of unknown kids makes one fetch, not one each, and
        // a call that waited for one (the start's, say) takes its result rather than trying again.
        let fetches = self.fetches.load(Ordering::SeqCst);
        let mut flight = self.flight.lock().await;
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        if self.fetches.load(Ordering::SeqCst) != fetches {
            tracing::debug!(kid, "unknown signing key; the key set was fetched moments ago");
            return None;
        }
        if flight.last_on_demand.is_some_and(|at| at.elapsed() < self.policy.min_interval) {
            tracing::debug!(kid, "unknown signing key; the key set was refreshed moments ago");
            return None;
        }
        flight.last_on_demand = Some(Instant::now());
        tracing::debug!(kid, "unknown signing key; refreshing the issuer's key set");
        self.fetch(&mut flight).await;
        self.cached(kid)
    }

    fn cached(&self, kid: &str) -> Option<Arc<Key>> {
        self.cache.read().unwrap_or_else(|e| e.into_inner()).keys.get(kid).cloned()
    }

    /// Starts a background refetch when the cached set is due one (so that a key the issuer
    /// withdrew stops working); one caller starts it, the others see the pushed-back due time.
    fn refresh_if_due(self: &Arc<Self>) {
        let now = Instant::now();
        let due = |cache: &Cache| cache.refresh_due.is_some_and(|due| due <= now);
        // The common case (not due) takes the read lock only.
        if !due(&self.cache.read().unwrap_or_else(|e| e.into_inner())) {
            return;
        }
        {
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            if !due(&cache) {
                return;
            }
            cache.refresh_due = Some(now + self.policy.min_interval);
        }
        let Ok(mut flight) = Arc::clone(&self.flight).try_lock_owned() else { return };
        let this = Arc::clone(self);
        tokio::spawn(async move { this.fetch(&mut flight).await });
    }

    /// One fetch of discovery (when needed) and JWKS within the timeout. Success replaces the
    /// cached set; failure keeps it and is logged.
    async fn fetch(&self, flight: &mut Flight) {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(self.policy.timeout, self.fetch_keys(flight)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {:?}", self.policy.timeout)),
        };
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        self.fetches.fetch_add(1, Ordering::SeqCst);
        match outcome {
            Ok(keys) => {
                tracing::info!(issuer = %self.issuer, keys = keys.len(), took = ?started.elapsed(), "fetched the issuer's signing keys");
                cache.keys = keys;
                cache.refresh_due = Some(Instant::now() + self.policy.max_age);
            }
            Err(error) => {
                flight.jwks_uri = None;
                tracing::warn!(
                    issuer = %self.issuer,
                    %error,
                    cached_keys = cache.keys.len(),
                    "cannot fetch the issuer's signing keys; the cached ones stay in use"
                );
                cache.refresh_due = Some(Instant::now() + self.policy.min_interval);
            }
        }
    }

    async fn fetch_keys(&self, flight: &mut Flight) -> Result<HashMap<String, Arc<Key>>, String> {
        let jwks_uri = match &flight.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let uri = self.discover().await?;
                flight.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let body = self.get(&jwks_uri, MAX_JWKS_BYTES).await?;
        parse_jwks(&body)
    }

    /// The discovery document's `jwks_uri`, once its `issuer` proved to be the configured one.
    async fn discover(&self) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let body = self.get(&self.discovery_url, MAX_DISCOVERY_BYTES).await?;
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|e| format!("the discovery document {} is not usable: {e}", self.discovery_url))?;
        if doc.issuer != self.issuer {
            return Err(format!(
                "the discovery document names the issuer `{}`, not the configured `{}`",
                doc.issuer, self.issuer
            ));
        }
        match url::Url::parse(&doc.jwks_uri) {
            Ok(url) if matches!(url.scheme(), "https" | "http") => Ok(doc.jwks_uri),
            _ => Err(format!("the discovery document's jwks_uri `{}` is not an http(s) URL", doc.jwks_uri)),
        }
    }

    /// A GET answered 2xx, its body read up to `limit` bytes.
    async fn get(&self, url: &str, limit: usize) -> Result<Vec<u8>, String> {
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        let too_large = || format!("GET {url}: the answer is larger than {limit} bytes");
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The keys of a JWKS this server can use, by `kid`. Keys it cannot use (no `kid`, `use` other
/// than `sig`, HMAC, other curves, short RSA moduli) are skipped; a set with more than `MAX_KEYS`
/// keys, or that is not a JWKS at all, is refused.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<Key>>, String> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| format!("the JWKS is not usable: {e}"))?;
    if set.keys.len() > MAX_KEYS {
        return Err(format!("the JWKS holds {} keys, more than {MAX_KEYS}", set.keys.len()));
    }
    let mut keys = HashMap::new();
    for value in set.keys {
        let alg = value.get("alg").and_then(|a| a.as_str()).map(str::to_owned);
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(e) => {
                tracing::debug!(error = %e, "skipping a JWK that does not parse");
                continue;
            }
        };
        let Some(kid) = jwk.common.key_id.clone().filter(|k| !k.is_empty() && k.len() <= MAX_KID_BYTES) else {
            tracing::debug!("skipping a JWK without a usable kid");
            continue;
        };
        match usable(&jwk) {
            Ok(kind) => {
                let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
                    tracing::debug!(kid, "skipping a JWK whose key does not decode");
                    continue;
                };
                keys.entry(kid).or_insert_with(|| Arc::new(Key { kind, alg, decoding }));
            }
            Err(why) => tracing::debug!(kid, why, "skipping a JWK"),
        }
    }
    Ok(keys)
}

/// The kind of a signing key this server verifies with, or why it is not one.
fn usable(jwk: &Jwk) -> Result<KeyKind, &'static str> {
    use jsonwebtoken::jwk::PublicKeyUse;
    if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
        return Err("not a signing key (use)");
    }
    let b64_len = |s: &str| s.trim_end_matches('=').len() * 3 / 4;
    match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) if RSA_MODULUS_BYTES.contains(&b64_len(&rsa.n)) => Ok(KeyKind::Rsa),
        AlgorithmParameters::RSA(_) => Err("RSA modulus outside 2048 to 8192 bits"),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Ok(KeyKind::P256),
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => Ok(KeyKind::Ed25519),
        _ => Err("not an RSA, P-256 or Ed25519 public key"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_keys_are_skipped_and_huge_sets_refused() {
        let set = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB"},
            {"kty": "weird", "kid": "other"},
        ]});
        let keys = parse_jwks(set.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["ed"]);
        assert_eq!(keys["ed"].kind, KeyKind::Ed25519);

        let many: Vec<_> = (0..=MAX_KEYS).map(|i| serde_json::json!({"kty": "oct", "kid": i.to_string()})).collect();
        let refused = parse_jwks(serde_json::json!({ "keys": many }).to_string().as_bytes()).unwrap_err();
        assert!(refused.contains("more than 64"), "{refused}");
        assert!(parse_jwks(b"[]").is_err());
    }
}

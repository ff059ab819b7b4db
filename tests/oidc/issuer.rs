//! A tiny OpenID Connect issuer for the tests: discovery and JWKS over HTTP on 127.0.0.1:0,
//! signing keys generated here (RSA, P-256, Ed25519), a count of JWKS fetches, and switches that
//! take its endpoints away (503, or no answer at all).

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use http_body_util::Full;
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

/// How the issuer answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Up,
    /// Every request answers 503.
    Unavailable,
    /// Requests are read and never answered.
    Hang,
}

#[derive(Debug)]
struct State {
    url: String,
    /// The `issuer` the discovery document names (normally `url`).
    claimed_issuer: Mutex<String>,
    /// The JWKs published (public halves).
    published: Mutex<Vec<Value>>,
    mode: Mutex<Mode>,
    jwks_hits: AtomicUsize,
    discovery_hits: AtomicUsize,
}

/// The issuer, serving until dropped.
#[derive(Debug)]
pub(crate) struct Issuer {
    pub(crate) url: String,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Issuer {
    /// Serves on 127.0.0.1:0, publishing `keys`; the listener is accepting on return.
    pub(crate) async fn start(keys: &[&SigningKey]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the issuer");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            url: url.clone(),
            claimed_issuer: Mutex::new(url.clone()),
            published: Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect()),
            mode: Mutex::new(Mode::Up),
            jwks_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
        });
        let serving = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = Arc::clone(&serving);
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(Arc::clone(&state), request));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { url, state, task }
    }

    /// Publishes exactly `keys` from now on (a rotation).
    pub(crate) fn publish(&self, keys: &[&SigningKey]) {
        *self.state.published.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    /// Makes the discovery document name another issuer (a document that is not this issuer's).
    pub(crate) fn claim_issuer(&self, issuer: &str) {
        *self.state.claimed_issuer.lock().unwrap() = issuer.to_owned();
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// How many times the discovery document was asked for.
    pub(crate) fn discovery_hits(&self) -> usize {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }

    /// How many times the JWKS was asked for.
    pub(crate) fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    state: Arc<State>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    match path.as_str() {
        "/jwks" => state.jwks_hits.fetch_add(1, Ordering::SeqCst),
        "/.well-known/openid-configuration" => state.discovery_hits.fetch_add(1, Ordering::SeqCst),
        _ => 0,
    };
    let mode = *state.mode.lock().unwrap();
    match mode {
        Mode::Up => {}
        Mode::Unavailable => return Ok(json_response(503, json!({"error": "down"}))),
        Mode::Hang => std::future::pending::<()>().await,
    }
    Ok(match path.as_str() {
        "/.well-known/openid-configuration" => json_response(
            200,
            json!({
                "issuer": *state.claimed_issuer.lock().unwrap(),
                "jwks_uri": format!("{}/jwks", state.url),
                "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
            }),
        ),
        "/jwks" => json_response(200, json!({ "keys": *state.published.lock().unwrap() })),
        _ => json_response(404, json!({"error": "not found"})),
    })
}

fn json_response(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// A private key of the issuer, with its public JWK.
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    pub(crate) alg: Algorithm,
    encoding: EncodingKey,
    pub(crate) jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish()
    }
}

impl SigningKey {
    /// A fresh 2048-bit RSA key (RS256).
    pub(crate) fn rsa(kid: &str) -> Self {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).expect("generate an RSA key");
        let der = key.to_pkcs1_der().expect("RSA key as PKCS#1 DER");
        Self::new(kid, Algorithm::RS256, EncodingKey::from_rsa_der(der.as_bytes()))
    }

    /// A fresh P-256 key (ES256).
    pub(crate) fn p256(kid: &str) -> Self {
        use p256::pkcs8::EncodePrivateKey as _;
        let key = loop {
            // Nearly every 32 random bytes are a valid scalar.
            if let Ok(key) = p256::SecretKey::from_slice(&random_bytes()) {
                break key;
            }
        };
        let der = key.to_pkcs8_der().expect("P-256 key as PKCS#8 DER");
        Self::new(kid, Algorithm::ES256, EncodingKey::from_ec_der(der.as_bytes()))
    }

    /// A fresh Ed25519 key (EdDSA).
    pub(crate) fn ed25519(kid: &str) -> Self {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let key = ed25519_dalek::SigningKey::from_bytes(&random_bytes());
        let der = key.to_pkcs8_der().expect("Ed25519 key as PKCS#8 DER");
        // jsonwebtoken derives public JWKs from PKCS#8 v1 only; ed25519-dalek writes v2.
        let x =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, key.verifying_key().as_bytes());
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA"});
        Self::with_jwk(kid, Algorithm::EdDSA, EncodingKey::from_ed_der(der.as_bytes()), jwk)
    }

    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey) -> Self {
        let jwk = Jwk::from_encoding_key(&encoding, alg).expect("the public JWK");
        Self::with_jwk(kid, alg, encoding, serde_json::to_value(jwk).unwrap())
    }

    fn with_jwk(kid: &str, alg: Algorithm, encoding: EncodingKey, mut jwk: Value) -> Self {
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        Self { kid: kid.to_owned(), alg, encoding, jwk }
    }

    /// The claims signed with this key, its kid in the header.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        self.sign_with(&header, claims)
    }

    /// The claims signed with this key under `header` as given.
    pub(crate) fn sign_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("sign a JWT")
    }

    /// The RSA modulus of the public key (what an attacker would use as an HMAC secret).
    pub(crate) fn public_n(&self) -> Vec<u8> {
        use base64::Engine as _;
        let n = self.jwk["n"].as_str().expect("an RSA key");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(n).unwrap()
    }
}

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    bytes
}

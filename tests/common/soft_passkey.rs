//! A software passkey for the tests: webauthn-authenticator-rs's `SoftPasskey` with the browser's
//! part of WebAuthn (clientDataJSON with the page's origin, the RP ID check), fed the JSON the
//! server sends and answering the JSON a browser page would send back.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::Value;
use webauthn_authenticator_rs::{WebauthnAuthenticator, softpasskey::SoftPasskey};
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

/// One software authenticator used from one origin.
pub struct SoftAuthenticator {
    inner: WebauthnAuthenticator<SoftPasskey>,
    origin: Url,
    /// Credential id and user handle of each credential it made, newest last.
    credentials: Vec<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for SoftAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftAuthenticator").field("origin", &self.origin.as_str()).finish_non_exhaustive()
    }
}

impl SoftAuthenticator {
    /// An authenticator that verifies the user, used from `origin`.
    pub fn new(origin: &str) -> Self {
        Self {
            inner: WebauthnAuthenticator::new(SoftPasskey::new(true)),
            origin: Url::parse(origin).expect("a test origin"),
            credentials: Vec::new(),
        }
    }

    /// The same authenticator used from another origin.
    pub fn used_from(&mut self, origin: &str) -> &mut Self {
        self.origin = Url::parse(origin).expect("a test origin");
        self
    }

    /// `navigator.credentials.create()` on RegisterPasskey's options: the RegisterPublicKeyCredential
    /// as JSON. The soft token keeps no resident keys, so it is asked for a non-resident one; it
    /// stands in for a resident key below by remembering the user handle.
    pub fn register(&mut self, options: &Value) -> Value {
        let mut options = integral(options.clone());
        let selection = options.pointer_mut("/publicKey/authenticatorSelection").expect("authenticatorSelection");
        selection["requireResidentKey"] = false.into();
        selection.as_object_mut().unwrap().remove("residentKey");
        let options: CreationChallengeResponse = serde_json::from_value(options).expect("creation options parse");
        let user_handle = options.public_key.user.id.as_ref().to_vec();
        let credential = self.inner.do_registration(self.origin.clone(), options).expect("the soft token registers");
        self.credentials.push((credential.raw_id.as_ref().to_vec(), user_handle));
        serde_json::to_value(credential).expect("credential JSON")
    }

    /// `navigator.credentials.get()` on a challenge's options, with the newest credential: the
    /// PublicKeyCredential as JSON, with its user handle (as a resident key answers).
    pub fn assert(&mut self, options: &Value) -> Value {
        self.sign(options, None)
    }

    /// The same, signing for `rp_id` instead of the options' RP ID.
    pub fn assert_for_rp(&mut self, options: &Value, rp_id: &str) -> Value {
        self.sign(options, Some(rp_id))
    }

    fn sign(&mut self, options: &Value, rp_id: Option<&str>) -> Value {
        let mut options = integral(options.clone());
        let (id, user_handle) = self.credentials.last().cloned().expect("a registered credential");
        let public_key = &mut options["publicKey"];
        if public_key["allowCredentials"].as_array().is_none_or(Vec::is_empty) {
            // A discoverable challenge: the browser finds the resident key itself.
            public_key["allowCredentials"] =
                serde_json::json!([{ "type": "public-key", "id": URL_SAFE_NO_PAD.encode(id) }]);
        }
        if let Some(rp_id) = rp_id {
            public_key["rpId"] = rp_id.into();
        }
        let options: RequestChallengeResponse = serde_json::from_value(options).expect("request options parse");
        let mut credential = self.inner.do_authentication(self.origin.clone(), options).expect("the soft token signs");
        credential.response.user_handle = Some(user_handle.into());
        serde_json::to_value(credential).expect("assertion JSON")
    }
}

/// JSON as a page's JavaScript sees it: `google.protobuf.Struct` carries numbers as doubles, which
/// serde writes as `300000.0`; whole ones become integers again.
pub fn integral(value: Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(integral).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, integral(v))).collect()),
        other => other,
    }
}

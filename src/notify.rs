//! Delivery of one-time codes through the operator's webhook (`--notify-webhook URL`): each code
//! is a JSON POST signed with HMAC-SHA256, so the receiver (an SMS or email gateway of the
//! operator's) can trust it, retried with backoff until it is taken or its code would expire.
//! Codes wait in a bounded queue; a call finds its place reserved before its session is written.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{Semaphore, mpsc};

use crate::{
    domain::{
        Timestamp,
        otp::{CodeMessage, CodeSender, CodeSlot, OtpMethod, SendError},
        token::random_b64,
    },
    keyfile, store,
};

/// Codes waiting for delivery; beyond it a call that would send one answers UNAVAILABLE.
const QUEUE: usize = 1024;
/// Deliveries in flight at once.
const CONCURRENT: usize = 16;
/// Tries per code, and the pause before the first retry (doubling after each).
const ATTEMPTS: u32 = 6;
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// How long one POST may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The header with the signature, and the one with the time it covers.
pub const SIGNATURE_HEADER: &str = "x-sessiond-signature";
pub const TIMESTAMP_HEADER: &str = "x-sessiond-timestamp";
/// A delivery's id: the same on every retry, so a receiver can drop duplicates.
pub const DELIVERY_HEADER: &str = "x-sessiond-delivery";
/// What the default key file's name adds to the SQLite database's.
pub const DEFAULT_KEY_SUFFIX: &str = ".webhook-secret";

/// Where to deliver, and the key that signs.
#[derive(Clone)]
pub struct WebhookConfig {
    pub url: url::Url,
    pub key: Arc<[u8]>,
    /// Pause before the first retry (tests shorten it).
    pub first_retry: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig").field("url", &self.url.as_str()).finish_non_exhaustive()
    }
}

impl WebhookConfig {
    /// The webhook at `url`, signing with the key in `key_file`, or, without one on SQLite, a key
    /// file created beside the database at first start (0600). PostgreSQL needs the file: every
    /// process must sign with the key the receiver knows.
    pub fn load(url: &str, key_file: Option<&Path>, database_url: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(url).with_context(|| format!("--notify-webhook {url} is not a URL"))?;
        anyhow::ensure!(matches!(url.scheme(), "http" | "https"), "--notify-webhook needs an http(s) URL");
        let path = match key_file {
            Some(path) => path.to_owned(),
            None => beside_database(database_url).ok_or_else(|| {
                anyhow::anyhow!(
                    "on PostgreSQL, --notify-webhook needs --notify-webhook-secret-file: every process signs with \
                     the key the receiver knows"
                )
            })?,
        };
        if key_file.is_none() && !path.exists() {
            let key = format!("{}\n", hex::encode(rand::random::<[u8; 32]>()));
            if keyfile::create_private(&path, key.as_bytes())
                .with_context(|| format!("cannot create the webhook key file {}", path.display()))?
            {
                tracing::info!(file = %path.display(), "created a webhook signing key; give it to the receiver");
            }
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the webhook key file {}", path.display()))?;
        let key = text.trim();
        anyhow::ensure!(key.len() >= 32, "the webhook key file {} holds fewer than 32 characters", path.display());
        Ok(Self { url, key: Arc::from(key.as_bytes()), first_retry: FIRST_RETRY })
    }
}

fn beside_database(database_url: &str) -> Option<PathBuf> {
    let mut file = PathBuf::from(store::sqlite_path(database_url)?).into_os_string();
    file.push(DEFAULT_KEY_SUFFIX);
    Some(file.into())
}

/// The body of a delivery.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    /// `otp_sms` or `otp_email`.
    r#type: &'static str,
    user_id: &'a str,
    recipient: &'a str,
    code: &'a str,
    /// RFC 3339, UTC.
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url_template: Option<&'a str>,
}

/// `v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`: what the receiver recomputes with its key.
pub fn signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The sender that queues codes for the webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    queue: mpsc::Sender<CodeMessage>,
}

impl Webhook {
    /// Starts the delivery task; it ends once every sender is gone and the queue is empty.
    pub fn start(config: WebhookConfig) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().context("an HTTP client")?;
        let (queue, mut waiting) = mpsc::channel::<CodeMessage>(QUEUE);
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(CONCURRENT));
            while let Some(message) = waiting.recv().await {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
                let (client, config) = (client.clone(), config.clone());
                tokio::spawn(async move {
                    deliver(&client, &config, &message).await;
                    drop(slot);
                });
            }
        });
        Ok(Self { queue })
    }
}

impl CodeSender for Webhook {
    fn reserve(&self) -> Result<CodeSlot, SendError> {
        let permit = self.queue.clone().try_reserve_owned().map_err(|_| SendError::QueueFull)?;
        Ok(Box::new(move |message| {
            permit.send(message);
        }))
    }
}

/// Posts one code until the receiver takes it (2xx), refuses it for good (4xx but 408 and 429),
/// the tries run out, or the code has expired. Failures are logged, never the code.
async fn deliver(client: &reqwest::Client, config: &WebhookConfig, message: &CodeMessage) {
    let r#type = match message.method {
        OtpMethod::Sms => "otp_sms",
        OtpMethod::Email => "otp_email",
    };
    let payload = Payload {
        r#type,
        user_id: &message.user_id,
        recipient: &message.recipient,
        code: message.code.expose(),
        expires_at: rfc3339(message.expires_at),
        url_template: message.url_template.as_deref(),
    };
    let body = serde_json::to_vec(&payload).expect("payloads serialize");
    let delivery = random_b64(12);
    let mut pause = config.first_retry;
    for attempt in 1..=ATTEMPTS {
        let now = Timestamp::now();
        if message.expires_at <= now {
            tracing::warn!(kind = r#type, user_id = %message.user_id, attempt, "one-time code expired before delivery");
            return;
        }
        let timestamp = now.micros() / 1_000_000;
        let sent = client
            .post(config.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature(&config.key, timestamp, &body))
            .header(DELIVERY_HEADER, &delivery)
            .body(body.clone())
            .send()
            .await;
        let retry = match sent {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(kind = r#type, user_id = %message.user_id, attempt, "one-time code delivered");
                return;
            }
            Ok(response) => {
                let status = response.status();
                let transient = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
                tracing::warn!(kind = r#type, user_id = %message.user_id, attempt, status = status.as_u16(), "the webhook refused a one-time code");
                transient
            }
            Err(e) => {
                tracing::warn!(kind = r#type, user_id = %message.user_id, attempt, error = %e, "the webhook could not be reached");
                true
            }
        };
        if !retry || attempt == ATTEMPTS {
            break;
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
    tracing::error!(kind = r#type, user_id = %message.user_id, "a one-time code was not delivered");
}

fn rfc3339(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp_micros(t.micros())
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_time_and_the_body() {
        let sig = signature(b"k", 1_700_000_000, b"{}");
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64, "{sig}");
        assert_ne!(sig, signature(b"k", 1_700_000_001, b"{}"));
        assert_ne!(sig, signature(b"k", 1_700_000_000, b"{ }"));
        assert_ne!(sig, signature(b"j", 1_700_000_000, b"{}"));
    }
}

//! Everything `serve` can be told, with the defaults a production deployment starts from.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::{domain::limits::Limits, oidc::OidcConfig, store::Durability};

/// Server settings. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// `sqlite:PATH` (or a bare path) or `postgres://...`.
    pub database: String,
    pub durability: Durability,
    /// The secrets key file; `None`: `<database file>.secrets-key` beside a SQLite database
    /// (created on its first start), an error on PostgreSQL.
    pub secrets_key_file: Option<PathBuf>,
    /// Where one-time codes by SMS and email are delivered (a JSON POST, HMAC-signed); without
    /// it, only codes returned to the caller (`return_code`) can be issued.
    pub notify_webhook: Option<String>,
    /// The webhook's signing key; without it on SQLite one is created beside the database.
    pub notify_webhook_secret_file: Option<PathBuf>,
    /// How long a one-time code sent by SMS or email stays valid.
    pub otp_code_lifetime: Duration,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Calls served at once across all connections; more are shed with RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    /// Latency past which the in-flight limit takes calls for queueing and lowers itself.
    pub target_latency: Duration,
    /// Allowed CORS origins; empty allows every origin.
    pub cors_origins: Vec<String>,
    /// Browser origins passkeys may be used from (`https://login.example.com`); empty: passkeys
    /// are refused with FAILED_PRECONDITION.
    pub webauthn_origins: Vec<String>,
    /// How long a passkey registration or login challenge stays valid.
    pub webauthn_ceremony_lifetime: Duration,
    /// Failed password checks (since the last success) that lock a user.
    pub max_failed_attempts: i32,
    /// Failed one-time-code checks (TOTP) that lock a user, on a counter of their own.
    pub max_failed_otp_attempts: i32,
    /// How long a password check waits for a hashing slot before it is shed (RESOURCE_EXHAUSTED).
    pub max_hash_wait: Duration,
    /// How long terminated and expired sessions' rows stay before the sweeper removes them.
    pub retention: Duration,
    /// How long history entries stay before the sweeper removes them.
    pub history_retention: Duration,
    /// How often the sweeper runs.
    pub sweep_interval: Duration,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// How long a client may take to send a request's headers (slowloris guard).
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body.
    pub body_read_timeout: Duration,
    /// How long shutdown waits for calls in flight.
    pub shutdown_grace: Duration,
    /// How long a new connection may take to deliver its first request head (the HTTP/2 preface
    /// included); a silent socket is closed after it.
    pub first_request_timeout: Duration,
    /// How long a kept-alive connection with no call in flight stays open.
    pub idle_timeout: Duration,
    /// Connections open at once; past it a new connection is closed at once.
    pub max_connections: usize,
    /// Bytes of large answers (ListSessions pages of 1 MiB or more) held until their clients
    /// have read them; past it a large answer waits, then is refused (RESOURCE_EXHAUSTED).
    pub pending_answer_bytes: usize,
    /// How long a large answer waits for room in `pending_answer_bytes`.
    pub pending_answer_wait: Duration,
    /// The bounds on requests an operator may change (the longest lifetime, metadata per session).
    pub limits: Limits,
    /// JWT access tokens of this OIDC provider are accepted beside API tokens (`--oidc-issuer`).
    pub oidc: Option<OidcConfig>,
    /// Where `/metrics` is served. The command line's default is `DEFAULT_METRICS_LISTEN`; this
    /// type's default is off, so that servers embedded in tests or tools never race for a port.
    pub metrics_listen: Option<SocketAddr>,
}

/// `--metrics-listen`'s default: loopback, the port registered for exporters like this one.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

impl Default for Config {
    fn default() -> Self {
        Self {
            database: "sqlite:sessiond.db".into(),
            durability: Durability::Normal,
            secrets_key_file: None,
            notify_webhook: None,
            notify_webhook_secret_file: None,
            otp_code_lifetime: crate::domain::otp::DEFAULT_CODE_LIFETIME,
            body_limit: 4 * 1024 * 1024,
            max_in_flight: 1024,
            target_latency: Duration::from_millis(10),
            cors_origins: Vec::new(),
            webauthn_origins: Vec::new(),
            webauthn_ceremony_lifetime: crate::domain::passkey::DEFAULT_CEREMONY_LIFETIME,
            max_failed_attempts: 5,
            max_failed_otp_attempts: 5,
            max_hash_wait: crate::domain::password::DEFAULT_MAX_WAIT,
            retention: Duration::from_secs(24 * 3600),
            history_retention: Duration::from_secs(90 * 24 * 3600),
            sweep_interval: Duration::from_secs(60),
            max_concurrent_streams: 200,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 10_000,
            pending_answer_bytes: crate::service::answers::DEFAULT_BUDGET,
            pending_answer_wait: crate::service::answers::DEFAULT_WAIT,
            limits: Limits::default(),
            oidc: None,
            metrics_listen: None,
        }
    }
}

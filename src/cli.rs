//! The command line: `serve`, `migrate`, and user and token administration.

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr};

use clap::{Args, Parser, Subcommand};

use crate::{domain::limits, store::Durability, telemetry::LogFormat};

/// `--sync`: the command line's names for the store's durability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// Survives a crash of the process (SQLite WAL with synchronous=NORMAL).
    Normal,
    /// Survives power loss: fsync before the answer (synchronous=FULL).
    Full,
}

impl From<SyncMode> for Durability {
    fn from(sync: SyncMode) -> Self {
        match sync {
            SyncMode::Normal => Self::Normal,
            SyncMode::Full => Self::Full,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "sessiond",
    version,
    about = "Login sessions over ZITADEL's Session API v2 (gRPC, gRPC-Web, Connect, REST)"
)]
pub struct Cli {
    /// A TOML file whose keys are these flags and `serve`'s (see README, "Configuration file"):
    /// flags win over the environment, which wins over the file.
    #[arg(long, global = true, env = "SESSIOND_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL: `sqlite:PATH` (embedded, the default) or `postgres://...`.
    #[arg(long, global = true, env = "SESSIOND_DATABASE", default_value = "sqlite:sessiond.db")]
    pub database: String,
    /// Secrets key file (`<key-id> <base64 key>` per line; the first seals, all open). Default on
    /// SQLite: `<database file>.secrets-key`, created on first start; PostgreSQL requires one.
    #[arg(long, global = true, env = "SESSIOND_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Session API on one port (HTTP/1.1 and h2c).
    Serve(ServeArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Print the configuration `serve` would run with (flags, environment, `--config` file and
    /// defaults), secrets redacted, as TOML that `--config` reads back; takes `serve`'s flags.
    Config(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Manage the keys that seal secrets at rest (TOTP seeds).
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Print a key file line with a fresh random key: `<key-id> <base64 of 32 bytes>`.
    GenerateKey {
        /// Key id (1 to 64 characters of A-Z a-z 0-9 . _ -); random when not given.
        #[arg(long)]
        id: Option<String>,
    },
    /// Re-seal every stored secret with the current key (the key file's first line), then forget
    /// the keys nothing needs any more: afterwards their lines may leave the key file.
    Rotate,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SESSIOND_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Durability of acknowledged writes: `normal` survives a process crash, `full` also power loss.
    #[arg(long, value_enum, default_value_t = SyncMode::Normal)]
    pub sync: SyncMode,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub body_limit: usize,
    /// Allowed CORS origin (repeatable); without any, every origin is allowed.
    #[arg(long = "cors-origin")]
    pub cors_origins: Vec<String>,
    /// Browser origin passkeys may be used from (repeatable), `https://DOMAIN[:PORT]` or
    /// `http://localhost[:PORT]`; the RP ID of a ceremony is the domain it names.
    #[arg(long = "webauthn-origin")]
    pub webauthn_origins: Vec<String>,
    /// Calls served at once at most; more are refused with RESOURCE_EXHAUSTED. Below it the limit
    /// adapts to the latency of calls (see --target-latency-ms).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_in_flight: u64,
    /// Milliseconds of a call's own time (less its waits for the client's body and for password
    /// hashing) past which the in-flight limit takes it for queueing. When more than a tenth of
    /// the calls of 100 ms pass it, the limit falls by a fifth, but not below the calls the
    /// server completes in this time (its rate times the target), nor below 64.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub target_latency_ms: u64,
    /// Connections open at once; past it a new connection is closed at once. Default: 10,000, or
    /// fewer when the open-files limit cannot hold them (it is raised to the hard limit first).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Seconds a new connection may take to send its first request head (the HTTP/2 preface
    /// included) before it is closed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub first_request_timeout_secs: u64,
    /// Seconds a kept-alive connection with no call in flight stays open.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,
    /// Deliver one-time codes by SMS and email as a signed JSON POST to this URL (see README).
    #[arg(long, env = "SESSIOND_NOTIFY_WEBHOOK")]
    pub notify_webhook: Option<String>,
    /// The webhook's HMAC key (default on SQLite: `<database>.webhook-secret`, created 0600).
    #[arg(long, env = "SESSIOND_NOTIFY_WEBHOOK_SECRET_FILE")]
    pub notify_webhook_secret_file: Option<PathBuf>,
    /// Failed password checks (since the last success) that lock a user until `users unlock`.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..))]
    pub max_failed_attempts: i32,
    /// Failed one-time-code (TOTP) checks that lock a user until `users unlock`.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..))]
    pub max_failed_otp_attempts: i32,
    /// Milliseconds a password check waits for a hashing slot before it is refused with
    /// RESOURCE_EXHAUSTED (nothing counted against the user).
    #[arg(long, default_value_t = 1000)]
    pub max_hash_wait_ms: u64,
    /// Longest `lifetime` a CreateSession or SetSession may ask for, in seconds (default: 400
    /// days, the cap browsers put on cookie lifetimes).
    #[arg(
        long,
        default_value_t = limits::DEFAULT_MAX_LIFETIME.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_lifetime_secs: u64,
    /// Most bytes of metadata (keys and values) one session may hold.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_METADATA_BYTES)]
    pub max_metadata_bytes: usize,
    /// Seconds a terminated or expired session's row is kept before the sweeper removes it.
    #[arg(long, default_value_t = 86_400)]
    pub retention_secs: u64,
    /// Seconds session history entries are kept before the sweeper removes them (default 90 days).
    #[arg(long, default_value_t = 90 * 86_400)]
    pub history_retention_secs: u64,
    /// Accept JWT access tokens of this OpenID Connect issuer beside API tokens (its discovery
    /// document and keys are fetched from it; see README, "Tokens from an OIDC provider").
    #[arg(long, env = "SESSIOND_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// An audience a token's `aud` must name (repeatable, or comma-separated in the environment):
    /// required with `--oidc-issuer`.
    #[arg(long = "oidc-audience", env = "SESSIOND_OIDC_AUDIENCE", value_delimiter = ',')]
    pub oidc_audiences: Vec<String>,
    /// The claim naming the sessiond user id.
    #[arg(long, env = "SESSIOND_OIDC_USER_CLAIM", default_value = crate::oidc::OidcConfig::DEFAULT_USER_CLAIM)]
    pub oidc_user_claim: String,
    /// The claim carrying permissions (`session.read` ...): a space-separated string or an array.
    #[arg(long, env = "SESSIOND_OIDC_PERMISSIONS_CLAIM", default_value = crate::oidc::OidcConfig::DEFAULT_PERMISSIONS_CLAIM)]
    pub oidc_permissions_claim: String,
    /// Seconds of clock skew allowed on a token's `exp` and `nbf`.
    #[arg(
        long,
        env = "SESSIOND_OIDC_LEEWAY_SECS",
        default_value_t = crate::oidc::OidcConfig::DEFAULT_LEEWAY.as_secs(),
        value_parser = clap::value_parser!(u64).range(0..=600)
    )]
    pub oidc_leeway_secs: u64,
    /// Async runtime: `multi-thread` (work-stealing workers), `current-thread` (every connection
    /// on one thread), or `auto`: `current-thread` when the process may use one core (where it
    /// served 1.4-1.9 times the open-loop calls: BENCHMARKS.md), `multi-thread` otherwise.
    #[arg(long, value_enum, default_value_t = RuntimeFlavor::Auto)]
    pub runtime: RuntimeFlavor,
    /// Worker threads of the `multi-thread` runtime (default: one per core the process may use).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: Option<u16>,
    /// Address of the Prometheus `/metrics` listener, or `none` for no metrics.
    #[arg(long, env = "SESSIOND_METRICS_LISTEN", default_value = crate::config::DEFAULT_METRICS_LISTEN)]
    pub metrics_listen: MetricsListen,
}

/// `--metrics-listen`: an address, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsListen(pub Option<SocketAddr>);

impl FromStr for MetricsListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("none") {
            return Ok(Self(None));
        }
        s.parse().map(|a| Self(Some(a))).map_err(|_| format!("`{s}` is neither HOST:PORT (an IP address) nor `none`"))
    }
}

impl fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(address) => address.fmt(f),
            None => f.write_str("none"),
        }
    }
}

/// Which tokio runtime `serve` runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeFlavor {
    Auto,
    MultiThread,
    CurrentThread,
}

impl RuntimeFlavor {
    /// The runtime to build: `auto` is `current-thread` on one core (`cores`, the ones the
    /// process may use) unless worker threads were asked for, and `multi-thread` otherwise.
    pub fn resolve(self, cores: usize, worker_threads: Option<u16>) -> Self {
        match self {
            Self::Auto if cores <= 1 && worker_threads.is_none() => Self::CurrentThread,
            Self::Auto => Self::MultiThread,
            chosen => chosen,
        }
    }

    /// [`Self::resolve`] for this process, on the cores it may use (`taskset`, cgroup quotas).
    pub fn for_this_process(self, worker_threads: Option<u16>) -> Self {
        self.resolve(std::thread::available_parallelism().map_or(1, std::num::NonZero::get), worker_threads)
    }
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user; prints its id.
    Add {
        #[arg(long)]
        login_name: String,
        #[arg(long)]
        display_name: Option<String>,
        /// Organization id (default: `default`).
        #[arg(long)]
        org: Option<String>,
        /// Read the user's password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// The user's verified email address (one-time codes by email go there).
        #[arg(long)]
        email: Option<String>,
        /// The user's verified phone number, E.164 (`+41...`; one-time codes by SMS go there).
        #[arg(long)]
        phone: Option<String>,
    },
    /// List users.
    List,
    /// Set a user's password, read from standard input.
    SetPassword {
        id: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Unlock a user locked by failed password or one-time-code checks (both counters start over).
    Unlock { id: String },
    /// Enrol a TOTP secret; prints the otpauth:// URI.
    AddTotp {
        id: String,
        #[arg(long, default_value = "sessiond")]
        issuer: String,
    },
    /// Set (or with no address, clear) a user's verified email address.
    SetEmail { id: String, email: Option<String> },
    /// Set (or with no number, clear) a user's verified phone number (E.164, `+41...`).
    SetPhone { id: String, phone: Option<String> },
    /// Enable one-time codes by email for a user (who needs an email address).
    AddOtpEmail { id: String },
    /// Enable one-time codes by SMS for a user (who needs a phone number).
    AddOtpSms { id: String },
    /// List a user's passkeys (id, name, RP ID, created).
    Passkeys { id: String },
    /// Remove one of a user's passkeys.
    RemovePasskey { id: String, passkey: String },
    /// Forbid a user to sign in (their tokens stop working at once).
    Disable { id: String },
    /// Allow a disabled user again.
    Enable { id: String },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Issue an API token for a user; prints the token (shown once).
    Add {
        #[arg(long)]
        user: String,
        /// `session.read`, `session.write`, `session.delete` or `user.write` (repeatable).
        #[arg(long = "permission")]
        permissions: Vec<String>,
        /// Seconds until the token expires (default: never).
        #[arg(long)]
        expires_in: Option<u64>,
    },
    /// List tokens (ids, users, permissions; never secrets).
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by id; it is refused at once.
    Revoke { id: String },
}

/// Where `sqlite:` URLs point, for messages.
pub fn describe_database(url: &str) -> String {
    match url.strip_prefix("sqlite:") {
        Some(path) => PathBuf::from(path).display().to_string(),
        None => url.split('@').next_back().unwrap_or(url).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let cli = Cli::try_parse_from(["sessiond", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Serve(args) => Ok(args),
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn the_limit_flags_default_to_the_domains_bounds_and_refuse_a_zero_lifetime() {
        let defaults = serve(&[]).unwrap();
        assert_eq!(defaults.max_lifetime_secs, 34_560_000, "400 days");
        assert_eq!(defaults.max_metadata_bytes, limits::DEFAULT_MAX_METADATA_BYTES);
        let set = serve(&["--max-lifetime-secs", "60", "--max-metadata-bytes", "1024"]).unwrap();
        assert_eq!((set.max_lifetime_secs, set.max_metadata_bytes), (60, 1024));
        assert!(serve(&["--max-lifetime-secs", "0"]).is_err());
    }

    #[test]
    fn the_runtime_is_current_thread_on_one_core_unless_asked_otherwise() {
        let auto = serve(&[]).unwrap();
        assert_eq!(auto.runtime, RuntimeFlavor::Auto);
        assert_eq!(auto.runtime.resolve(1, None), RuntimeFlavor::CurrentThread);
        assert_eq!(auto.runtime.resolve(2, None), RuntimeFlavor::MultiThread);
        // Worker threads asked for are a multi-thread runtime, on any number of cores.
        let workers = serve(&["--worker-threads", "4"]).unwrap();
        assert_eq!(workers.runtime.resolve(1, workers.worker_threads), RuntimeFlavor::MultiThread);
        // A runtime named is the one built.
        for (flag, flavor) in
            [("multi-thread", RuntimeFlavor::MultiThread), ("current-thread", RuntimeFlavor::CurrentThread)]
        {
            let named = serve(&["--runtime", flag]).unwrap();
            assert_eq!(named.runtime.resolve(1, None), flavor);
            assert_eq!(named.runtime.resolve(8, None), flavor);
        }
        assert!(serve(&["--runtime", "fibers"]).is_err());
    }

    #[test]
    fn metrics_listen_defaults_to_loopback_and_turns_off_with_none() {
        assert_eq!(serve(&[]).unwrap().metrics_listen.0, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(serve(&["--metrics-listen", "none"]).unwrap().metrics_listen.0, None);
        assert_eq!(
            serve(&["--metrics-listen", "0.0.0.0:9100"]).unwrap().metrics_listen.0,
            Some("0.0.0.0:9100".parse().unwrap())
        );
        let error = serve(&["--metrics-listen", "localhost"]).unwrap_err().to_string();
        assert!(error.contains("neither HOST:PORT"), "{error}");
    }
}

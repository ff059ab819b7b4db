//! The command line: `serve`, `migrate`, and user and token administration.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::{store::Durability, telemetry::LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "sessiond",
    version,
    about = "Login sessions over ZITADEL's Session API v2 (gRPC, gRPC-Web, Connect, REST)"
)]
pub struct Cli {
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
    #[arg(long, value_enum, default_value_t = Durability::Normal)]
    pub sync: Durability,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub body_limit: usize,
    /// Allowed CORS origin (repeatable); without any, every origin is allowed.
    #[arg(long = "cors-origin")]
    pub cors_origins: Vec<String>,
    /// Calls served at once; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Consecutive failed password checks before a user is locked.
    #[arg(long, default_value_t = 5)]
    pub max_failed_attempts: i32,
    /// Seconds a terminated or expired session's row is kept before the sweeper removes it.
    #[arg(long, default_value_t = 86_400)]
    pub retention_secs: u64,
    /// Async runtime: `multi-thread` (work-stealing workers) or `current-thread` (every connection
    /// on one thread: the cheaper choice when the process is pinned to one core).
    #[arg(long, value_enum, default_value_t = RuntimeFlavor::MultiThread)]
    pub runtime: RuntimeFlavor,
    /// Worker threads of the `multi-thread` runtime (default: one per core the process may use).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: Option<u16>,
}

/// Which tokio runtime `serve` runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeFlavor {
    MultiThread,
    CurrentThread,
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
    },
    /// List users.
    List,
    /// Set a user's password, read from standard input.
    SetPassword {
        id: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Unlock a user locked by failed password checks.
    Unlock { id: String },
    /// Enrol a TOTP secret; prints the otpauth:// URI.
    AddTotp {
        id: String,
        #[arg(long, default_value = "sessiond")]
        issuer: String,
    },
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
        /// `session.read`, `session.write` or `session.delete` (repeatable).
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

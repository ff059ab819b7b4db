//! The `sessiond` binary: parses the command line, then serves or administers.

#![allow(clippy::print_stdout)] // printing ids and tokens is this binary's job

use std::{io::BufRead, time::Duration};

use anyhow::Context as _;
use sessiond::{
    cli::{Cli, Command, RuntimeFlavor, SecretsCommand, TokensCommand, UsersCommand},
    config::Config,
    config_file,
    domain::{
        Timestamp,
        keyring::{Keyring, valid_key_id},
        limits::Limits,
        otp::OtpMethod,
        password::PasswordHasher,
        user::{NewUser, UserState, Users, parse_permissions},
    },
    keyfile, limits,
    oidc::OidcConfig,
    server, store, telemetry,
};

/// mimalloc: glibc's malloc and free were ~13% of a GetSession's instructions (`bench/callgrind.sh`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = config_file::parse(std::env::args_os().collect())?;
    let _log_guard = telemetry::init(cli.log_format);
    runtime(&cli.command).context("cannot start the async runtime")?.block_on(run(cli))
}

/// The runtime `serve` asked for; the administrative commands take the default.
fn runtime(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match command {
        Command::Serve(args) if args.runtime.for_this_process(args.worker_threads) == RuntimeFlavor::CurrentThread => {
            tokio::runtime::Builder::new_current_thread()
        }
        Command::Serve(args) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = args.worker_threads {
                builder.worker_threads(usize::from(n));
            }
            builder
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let max_connections = connection_cap(args.max_connections);
            let config = Config {
                database: cli.database,
                secrets_key_file: cli.secrets_key_file,
                notify_webhook: args.notify_webhook,
                notify_webhook_secret_file: args.notify_webhook_secret_file,
                durability: args.sync.into(),
                body_limit: args.body_limit,
                max_in_flight: usize::try_from(args.max_in_flight).unwrap_or(usize::MAX),
                target_latency: Duration::from_millis(args.target_latency_ms),
                cors_origins: args.cors_origins,
                webauthn_origins: args.webauthn_origins,
                max_failed_attempts: args.max_failed_attempts,
                max_failed_otp_attempts: args.max_failed_otp_attempts,
                max_hash_wait: Duration::from_millis(args.max_hash_wait_ms),
                retention: Duration::from_secs(args.retention_secs),
                history_retention: Duration::from_secs(args.history_retention_secs),
                first_request_timeout: Duration::from_secs(args.first_request_timeout_secs),
                idle_timeout: Duration::from_secs(args.idle_timeout_secs),
                max_connections,
                metrics_listen: args.metrics_listen.0,
                limits: Limits {
                    max_lifetime: Duration::from_secs(args.max_lifetime_secs),
                    max_metadata_bytes: args.max_metadata_bytes,
                },
                oidc: args.oidc_issuer.map(|issuer| OidcConfig {
                    user_claim: args.oidc_user_claim,
                    permissions_claim: args.oidc_permissions_claim,
                    leeway: Duration::from_secs(args.oidc_leeway_secs),
                    ..OidcConfig::new(issuer, args.oidc_audiences)
                }),
                ..Config::default()
            };
            if let Some(oidc) = &config.oidc {
                oidc.check()?;
            }
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            server::run(listener, config, shutdown_signal()).await
        }
        Command::Config(_) => {
            print!("{}", config_file::effective(std::env::args_os().collect())?);
            Ok(())
        }
        Command::Migrate => {
            let store = store::open(&cli.database, Default::default()).await?;
            // The data too: TOTP seeds an older version kept in clear are sealed.
            let unlocked = keyfile::unlock(&cli.database, cli.secrets_key_file.as_deref(), store.clone()).await;
            store.close().await;
            unlocked?;
            eprintln!("database {} is up to date", sessiond::cli::describe_database(&cli.database));
            Ok(())
        }
        Command::Users(command) => {
            let store = store::open(&cli.database, Default::default()).await?;
            let result = async {
                let mut users = Users::new(store.clone(), PasswordHasher::default());
                // Only enrolment seals: the other commands run without the key.
                if matches!(command, UsersCommand::AddTotp { .. }) {
                    let key_file = cli.secrets_key_file.as_deref();
                    users = users.with_secrets(keyfile::unlock(&cli.database, key_file, store.clone()).await?);
                }
                users_command(&users, command).await
            }
            .await;
            store.close().await;
            result
        }
        Command::Secrets(SecretsCommand::GenerateKey { id }) => {
            if let Some(id) = &id {
                anyhow::ensure!(valid_key_id(id), "the key id must be 1 to 64 characters of A-Z a-z 0-9 . _ -");
            }
            println!("{}", Keyring::generate_line(id.as_deref()).context("the key id is invalid")?);
            Ok(())
        }
        Command::Secrets(SecretsCommand::Rotate) => {
            let store = store::open(&cli.database, Default::default()).await?;
            let result = async {
                let secrets = keyfile::unlock(&cli.database, cli.secrets_key_file.as_deref(), store.clone()).await?;
                let rotation = secrets.rotate().await?;
                let current = secrets.keyring().current_key_id();
                eprintln!("re-sealed {} secrets with key `{current}`", rotation.resealed);
                if !rotation.retired.is_empty() {
                    eprintln!("no longer needed (their lines may leave the key file): {}", rotation.retired.join(", "));
                }
                anyhow::Ok(())
            }
            .await;
            store.close().await;
            result
        }
        Command::Tokens(command) => {
            let store = store::open(&cli.database, Default::default()).await?;
            let users = Users::new(store.clone(), PasswordHasher::default());
            let result = tokens_command(&users, command).await;
            store.close().await;
            result
        }
    }
}

/// Raises the open-files limit and picks the connection cap: `asked`, or the largest the limit
/// holds up to the default. Warns when the limit cannot hold the default or the asked cap: past
/// it, accepting fails and clients wait in the backlog.
fn connection_cap(asked: Option<u32>) -> usize {
    let open_files = limits::raise_open_files_limit().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot raise the open-files limit");
        limits::open_files_limit()
    });
    let wanted = asked.map_or(limits::DEFAULT_MAX_CONNECTIONS, |n| n as usize);
    let cap = asked.map_or_else(|| limits::default_max_connections(open_files), |n| n as usize);
    if wanted > limits::connections_allowed(open_files) {
        tracing::warn!(
            open_files,
            max_connections = cap,
            reserved = limits::RESERVED_DESCRIPTORS,
            "the open-files limit is too low for the connection cap; raise it (systemd: LimitNOFILE=)"
        );
    } else {
        tracing::info!(open_files, max_connections = cap, "open-files limit raised");
    }
    cap
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(!password.is_empty(), "the password read from standard input is empty");
    Ok(password)
}

async fn users_command(users: &Users, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add { login_name, display_name, org, password_stdin, email, phone } => {
            let password = password_stdin.then(read_password).transpose()?;
            let new = NewUser { login_name, display_name, org_id: org, password, email, phone };
            let user = users.add_user(new).await?;
            println!("{}", user.id);
        }
        UsersCommand::List => {
            for u in users.list_users().await? {
                let locked = if u.is_locked() { " locked" } else { "" };
                println!("{}\t{}\t{}\t{}\t{}{locked}", u.id, u.login_name, u.display_name, u.org_id, u.state.as_str());
            }
        }
        UsersCommand::SetPassword { id, .. } => users.set_password(&id, read_password()?).await?,
        UsersCommand::Unlock { id } => users.unlock(&id).await?,
        UsersCommand::AddTotp { id, issuer } => println!("{}", users.add_totp(&id, &issuer).await?),
        UsersCommand::SetEmail { id, email } => users.set_contact(&id, OtpMethod::Email, email).await?,
        UsersCommand::SetPhone { id, phone } => users.set_contact(&id, OtpMethod::Sms, phone).await?,
        UsersCommand::AddOtpEmail { id } => users.enable_otp(&id, OtpMethod::Email).await?,
        UsersCommand::AddOtpSms { id } => users.enable_otp(&id, OtpMethod::Sms).await?,
        UsersCommand::Passkeys { id } => {
            for p in users.passkeys(&id).await? {
                println!("{}\t{}\t{}\t{}", p.id, p.name, p.rp_id, rfc3339(p.created_at));
            }
        }
        UsersCommand::RemovePasskey { id, passkey } => users.remove_passkey(&id, &passkey).await?,
        UsersCommand::Disable { id } => users.set_state(&id, UserState::Inactive).await?,
        UsersCommand::Enable { id } => users.set_state(&id, UserState::Active).await?,
    }
    Ok(())
}

async fn tokens_command(users: &Users, command: TokensCommand) -> anyhow::Result<()> {
    match command {
        TokensCommand::Add { user, permissions, expires_in } => {
            let permissions = parse_permissions(permissions.iter().map(String::as_str)).map_err(anyhow::Error::msg)?;
            let expires_at = expires_in.map(|s| Timestamp::now().plus(Duration::from_secs(s)));
            let (_, token) = users.add_token(&user, permissions, expires_at).await?;
            println!("{}", token.to_bearer());
        }
        TokensCommand::List { user } => {
            for t in users.list_tokens(user.as_deref()).await? {
                let permissions: Vec<_> = t.permissions.iter().map(|p| p.as_str()).collect();
                let state = if t.revoked_at.is_some() { "revoked" } else { "active" };
                println!("{}\t{}\t{}\t{state}", t.id, t.user_id, permissions.join(","));
            }
        }
        TokensCommand::Revoke { id } => users.revoke_token(&id).await?,
    }
    Ok(())
}

/// A stored time as RFC 3339 (UTC, seconds).
fn rfc3339(at: Timestamp) -> String {
    chrono::DateTime::from_timestamp_micros(at.micros())
        .map_or_else(|| at.micros().to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

//! sessiond: a login-session server speaking ZITADEL's Session API v2 over gRPC, gRPC-Web,
//! Connect and REST/JSON on one port, from one handler.
//!
//! # Layout
//!
//! - [`transport`]: the tower stack on the port (`transport::stack`): classifies each request,
//!   guards it (limits, deadline, credential: one not proven lately is looked up through
//!   `service::auth::Gate` before the body is read) and hands it to tonic's generated server: gRPC
//!   directly, gRPC-Web through tonic-web, Connect and REST through the descriptor-driven
//!   transcoder; refusals rendered in the caller's protocol.
//! - [`service`]: the generated tonic `SessionService` (and `UserService`, for passkey
//!   registration), implemented once over the domain, behind the token lookup (`service::auth`);
//!   large answers hold a share of a budget until delivered (`service::answers`).
//! - [`domain`]: sessions, users, tokens, passkeys (WebAuthn through webauthn-rs) and the
//!   authorization decisions; no I/O of its own. It owns the store's port (`domain::port`: the
//!   trait over its plain records).
//! - [`store`]: the port's SQLite (default) and PostgreSQL backends; depends on the domain only.
//! - [`oidc`]: JWT access tokens of an OpenID Connect provider: its keys fetched and cached,
//!   tokens verified into a user id and permissions (`service::auth` asks it).
//! - [`server`]: the composition root, `run(listener, config, shutdown)`.
//! - [`call_clock`]: each call's own time, less its waits for the client and for password
//!   hashing: what the in-flight limit judges queueing by.
//! - [`connections`]: how long a connection may stay open (first request, idle), per connection.
//! - [`keyfile`]: the secrets key file: found, created beside a SQLite database, checked against it.
//! - [`proto`]: generated code and the descriptor set.
//! - [`config`], [`telemetry`], [`cli`]: settings, logging and the command line.
//! - [`limits`]: the open-files limit, raised at start, and the connection cap it allows.
//! - [`metrics`]: Prometheus families (calls, store, logins, sweeper, process) and `/metrics`.

pub mod call_clock;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod connections;
pub mod domain;
pub mod keyfile;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod oidc;
pub mod proto;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod transport;

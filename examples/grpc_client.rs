//! A gRPC client for sessiond using the generated tonic client: creates a session for a user,
//! reads it, and terminates it.
//!
//! ```sh
//! SESSIOND_TOKEN=... cargo run --example grpc_client -- alice
//! ```

#![allow(clippy::print_stdout)] // an example prints what it got

use sessiond::proto::session::{
    CheckUser, Checks, CreateSessionRequest, DeleteSessionRequest, GetSessionRequest, check_user,
    session_service_client::SessionServiceClient,
};
use tonic::{Request, metadata::MetadataValue};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let login_name = std::env::args().nth(1).unwrap_or_else(|| "alice".into());
    let url = std::env::var("SESSIOND_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let token = std::env::var("SESSIOND_TOKEN").map_err(|_| anyhow::anyhow!("set SESSIOND_TOKEN to an API token"))?;
    let bearer: MetadataValue<_> = format!("Bearer {token}").parse()?;
    let channel = tonic::transport::Endpoint::from_shared(url)?.connect().await?;
    // Every call carries the bearer token.
    let mut client = SessionServiceClient::with_interceptor(channel, move |mut request: Request<()>| {
        request.metadata_mut().insert("authorization", bearer.clone());
        Ok(request)
    });

    let created = client
        .create_session(CreateSessionRequest {
            checks: Some(Checks {
                user: Some(CheckUser { search: Some(check_user::Search::LoginName(login_name)) }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    println!("created session {} (sequence {})", created.session_id, created.details.unwrap_or_default().sequence);

    let session = client
        .get_session(GetSessionRequest { session_id: created.session_id.clone(), session_token: None })
        .await?
        .into_inner()
        .session
        .unwrap_or_default();
    let user = session.factors.and_then(|f| f.user).unwrap_or_default();
    println!("session user: {} ({})", user.login_name, user.id);

    let deleted = client
        .delete_session(DeleteSessionRequest {
            session_id: created.session_id,
            session_token: Some(created.session_token),
        })
        .await?
        .into_inner();
    println!("terminated (sequence {})", deleted.details.unwrap_or_default().sequence);
    Ok(())
}

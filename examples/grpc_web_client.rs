//! A gRPC-Web client for sessiond over plain HTTP/1.1, framing messages by hand as a browser
//! library does: creates a session and terminates it with its token.
//!
//! ```sh
//! SESSIOND_TOKEN=... cargo run --example grpc_web_client -- alice
//! ```

#![allow(clippy::print_stdout)] // an example prints what it got

use anyhow::{Context, bail};
use prost::Message;
use sessiond::proto::session::{
    CheckUser, Checks, CreateSessionRequest, CreateSessionResponse, DeleteSessionRequest, DeleteSessionResponse,
    check_user,
};

/// Sends one gRPC-Web call and returns the response message, or the grpc-status error.
async fn call<Req: Message, Resp: Message + Default>(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    method: &str,
    request: &Req,
) -> anyhow::Result<Resp> {
    let message = request.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let response = http
        .post(format!("{base}/zitadel.session.v2.SessionService/{method}"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("authorization", format!("Bearer {token}"))
        .body(body)
        .send()
        .await?;
    let bytes = response.bytes().await?;
    // Frames: 1 flag byte, 4 length bytes, payload; flag 0x80 marks the trailer frame.
    let (mut data, mut trailers, mut rest) = (None, String::new(), &bytes[..]);
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let payload = rest.get(5..5 + len).context("truncated frame")?;
        if rest[0] & 0x80 != 0 {
            trailers = String::from_utf8_lossy(payload).into_owned();
        } else {
            data = Some(payload.to_vec());
        }
        rest = &rest[5 + len..];
    }
    let status = trailers.lines().find_map(|l| l.strip_prefix("grpc-status:")).unwrap_or("").trim().to_owned();
    if status != "0" {
        bail!("grpc-status {status}: {trailers}");
    }
    Ok(Resp::decode(data.unwrap_or_default().as_slice())?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let login_name = std::env::args().nth(1).unwrap_or_else(|| "alice".into());
    let base = std::env::var("SESSIOND_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let token = std::env::var("SESSIOND_TOKEN").context("set SESSIOND_TOKEN to an API token")?;
    let http = reqwest::Client::new();

    let request = CreateSessionRequest {
        checks: Some(Checks {
            user: Some(CheckUser { search: Some(check_user::Search::LoginName(login_name)) }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created: CreateSessionResponse = call(&http, &base, &token, "CreateSession", &request).await?;
    println!("created session {}", created.session_id);

    let request = DeleteSessionRequest { session_id: created.session_id, session_token: Some(created.session_token) };
    let deleted: DeleteSessionResponse = call(&http, &base, &token, "DeleteSession", &request).await?;
    println!("terminated (sequence {})", deleted.details.unwrap_or_default().sequence);
    Ok(())
}

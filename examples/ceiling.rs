//! The benchmark's ceiling: `SessionService` on plain tonic, every RPC answering a canned
//! response at once (no store, no auth, no protocol edge). What sessiond's numbers are divided by.
//!
//! ```sh
//! taskset -c 0 target/release/examples/ceiling --listen 127.0.0.1:7000 --runtime current-thread
//! ```

#![allow(clippy::print_stdout)] // a command-line tool: it prints where it listens

use std::net::SocketAddr;

use clap::Parser;
use sessiond::{
    cli::RuntimeFlavor,
    proto::{
        session::{
            self as pb,
            session_service_server::{SessionService, SessionServiceServer},
        },
        zitadel::object::v2::{Details, ListDetails},
    },
};
use tonic::{Request, Response, Status};

/// The allocator sessiond runs with, so that the ceiling differs from it only by the work.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Trivial tonic SessionService: canned answers, no store, no auth")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: SocketAddr,
    /// Same choices as `sessiond serve --runtime`, so that both run on the same kind of runtime.
    #[arg(long, value_enum, default_value_t = RuntimeFlavor::Auto)]
    runtime: RuntimeFlavor,
    #[arg(long)]
    worker_threads: Option<usize>,
    /// HTTP/2 streams per connection (sessiond's default).
    #[arg(long, default_value_t = 200)]
    max_concurrent_streams: u32,
}

/// Details as sessiond would answer them, so response sizes are alike.
fn details() -> Option<Details> {
    let at = sessiond::proto::Timestamp { seconds: 1_750_000_000, nanos: 123_456_000 };
    Some(Details { sequence: 2, change_date: Some(at), resource_owner: "default".into(), creation_date: Some(at) })
}

#[derive(Debug)]
struct Canned;

#[tonic::async_trait]
impl SessionService for Canned {
    async fn create_session(
        &self,
        _: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        Ok(Response::new(pb::CreateSessionResponse {
            details: details(),
            session_id: "Xq3kQ1bW2oVnYt8pLr0aZg".into(),
            session_token: "mU9YdW0c8Qe2vH5tKx3nR1sJ7pLa4bZ6wF0gC8iD2eo".into(),
            challenges: None,
        }))
    }

    async fn get_session(&self, r: Request<pb::GetSessionRequest>) -> Result<Response<pb::GetSessionResponse>, Status> {
        let at = sessiond::proto::Timestamp { seconds: 1_750_000_000, nanos: 0 };
        Ok(Response::new(pb::GetSessionResponse {
            session: Some(pb::Session {
                id: r.into_inner().session_id,
                creation_date: Some(at),
                change_date: Some(at),
                sequence: 1,
                factors: Some(pb::Factors {
                    user: Some(pb::UserFactor {
                        verified_at: Some(at),
                        id: "Zb2Q7x1LrT9kV4mN8cP0aw".into(),
                        login_name: "bench".into(),
                        display_name: "bench".into(),
                        organization_id: "default".into(),
                    }),
                    ..Default::default()
                }),
                expiration_date: Some(sessiond::proto::Timestamp { seconds: 1_760_000_000, nanos: 0 }),
                ..Default::default()
            }),
        }))
    }

    async fn set_session(&self, _: Request<pb::SetSessionRequest>) -> Result<Response<pb::SetSessionResponse>, Status> {
        Ok(Response::new(pb::SetSessionResponse { details: details(), ..Default::default() }))
    }

    async fn delete_session(
        &self,
        _: Request<pb::DeleteSessionRequest>,
    ) -> Result<Response<pb::DeleteSessionResponse>, Status> {
        Ok(Response::new(pb::DeleteSessionResponse { details: details() }))
    }

    async fn list_sessions(
        &self,
        _: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        Ok(Response::new(pb::ListSessionsResponse {
            details: Some(ListDetails { total_result: 0, processed_sequence: 0, timestamp: None }),
            sessions: Vec::new(),
        }))
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let workers = args.worker_threads.map(|n| u16::try_from(n).unwrap_or(u16::MAX));
    let mut builder = match args.runtime.for_this_process(workers) {
        RuntimeFlavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        RuntimeFlavor::MultiThread | RuntimeFlavor::Auto => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = args.worker_threads {
                builder.worker_threads(n);
            }
            builder
        }
    };
    builder.enable_all().build()?.block_on(async {
        println!("ceiling listening on {}", args.listen);
        tonic::transport::Server::builder()
            .max_concurrent_streams(args.max_concurrent_streams)
            .tcp_nodelay(true)
            .add_service(SessionServiceServer::new(Canned))
            .serve_with_shutdown(args.listen, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}

//! What the metrics add to one call, measured apart from the noise of a whole server: the call
//! metrics' start and finish, the RPC label's lookup, and the store decorator around a real
//! operation (SQLite `SELECT 1`), and the request id's generation and span, each run many times on
//! one thread.
//!
//! ```sh
//! cargo run --release --example metrics_cost
//! ```

#![allow(clippy::print_stdout)] // a measuring tool prints what it measured

use std::{hint::black_box, sync::Arc, time::Instant};

use sessiond::{
    metrics::{Metrics, Rpc, TimedStore},
    store::{Durability, Store, sqlite::SqliteStore},
    transport::Protocol,
};
use tonic::Code;

const CALLS: u32 = 2_000_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cost.db");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(path.to_str().expect("a UTF-8 path"), Durability::Normal).await?);
    let metrics = Metrics::new(Arc::clone(&store));
    let calls = metrics.calls();
    let rpc = Rpc::of("zitadel.session.v2.SessionService", "GetSession");

    let started = Instant::now();
    for _ in 0..CALLS {
        let call = calls.start();
        call.finished(black_box(rpc), black_box(Protocol::Grpc), black_box(Some(Code::Ok)), black_box(0.000_07));
    }
    let per_call = started.elapsed().as_nanos() as f64 / f64::from(CALLS);
    println!("call metrics (start, count, histogram, end): {per_call:.0} ns per call");

    let classify = Instant::now();
    for _ in 0..CALLS {
        black_box(Rpc::of(black_box("zitadel.session.v2.SessionService"), black_box("GetSession")));
    }
    let per_lookup = classify.elapsed().as_nanos() as f64 / f64::from(CALLS);
    println!("rpc label lookup: {per_lookup:.0} ns per call");

    // The store decorator around a real (cheap) operation, alternated with the bare store so that
    // the machine's drift falls on both alike.
    let timed = TimedStore::new(Arc::clone(&store), &metrics);
    let (pings, rounds) = (20_000u32, 6);
    let (mut raw, mut with_timing) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..pings {
            store.ping().await?;
        }
        raw.push(started.elapsed().as_nanos() as f64 / f64::from(pings));
        let started = Instant::now();
        for _ in 0..pings {
            timed.ping().await?;
        }
        with_timing.push(started.elapsed().as_nanos() as f64 / f64::from(pings));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "store ping (median of {rounds} alternated rounds): {:.0} ns bare, {:.0} ns timed",
        median(&mut raw),
        median(&mut with_timing)
    );

    // The request id's share: a generated id (as `transport::request_id` makes it) and the call's
    // span under the text logger (written to nowhere), entered and left once.
    let ids = Instant::now();
    for _ in 0..CALLS {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        black_box(http::HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))?);
    }
    println!("request id generated: {:.0} ns per call", ids.elapsed().as_nanos() as f64 / f64::from(CALLS));
    let _ = tracing_subscriber::fmt().with_writer(std::io::sink).try_init();
    let spans = Instant::now();
    for _ in 0..CALLS {
        let span = tracing::info_span!("call", request_id = black_box("0f8c2a9e-5d1b-4c7e-9a3f-2b6d8e1c4f70"));
        drop(black_box(span.enter()));
    }
    println!(
        "call span (created, entered, left, closed): {:.0} ns per call",
        spans.elapsed().as_nanos() as f64 / f64::from(CALLS)
    );
    store.close().await;
    Ok(())
}

//! Fills a SQLite database with live sessions for the benchmark, through the store itself
//! (`Store::create_session`, many at once so the writer commits them in large groups). Run it
//! while no server holds the file. Session ids come from `bench_common::session_id(seed, i)`.
//!
//! ```sh
//! target/release/examples/bulkload --database sqlite:/tmp/b.db --user USER_ID --count 1000000
//! ```

#![allow(clippy::print_stdout)] // a command-line tool: it reports what it loaded

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Parser;
use sessiond::{
    domain::{
        Timestamp,
        session::{Change, Factors, HistoryEntry, Session, UserFactor},
        token::Secret,
    },
    store::{self, Durability},
};

#[derive(Debug, Parser)]
#[command(about = "Bulk-load live benchmark sessions into a sessiond SQLite database")]
struct Args {
    #[arg(long)]
    database: String,
    /// The user the sessions belong to (their checked user and creator).
    #[arg(long)]
    user: String,
    /// Sessions to insert: indices `start .. start + count` of the pool.
    #[arg(long)]
    count: u64,
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Pool name the ids derive from; the load generator must be given the same one.
    #[arg(long, default_value = "bench")]
    seed: String,
    /// Inserts in flight (the writer commits up to 256 per transaction).
    #[arg(long, default_value_t = 1024)]
    concurrency: u64,
    /// Lifetime of each session (default 30 days: none expires during a run).
    #[arg(long, default_value_t = 30 * 24 * 3600)]
    lifetime_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let store = store::open(&args.database, Durability::Normal).await?;
    let user =
        store.user_by_id(&args.user).await?.with_context(|| format!("no user {} in {}", args.user, args.database))?;
    // One token hash for all: the benchmark deletes and reads with a permission, never the token.
    let token_hash = Secret::generate().hash();
    let end = args.start + args.count;
    let started = Instant::now();
    // Inserted in id order: the primary-key B-trees then grow at one end instead of at random
    // places, which keeps SQLite's small page cache hot (3x faster at 1M). Which index the
    // benchmark deletes next stays random in the tree.
    let mut ids: Vec<String> = (args.start..end).map(|i| bench_common::session_id(&args.seed, i)).collect();
    ids.sort_unstable();
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.min(args.count.max(1)) {
        let (store, next, user, token_hash, ids) =
            (store.clone(), next.clone(), user.clone(), token_hash.clone(), ids.clone());
        let lifetime = Duration::from_secs(args.lifetime_secs);
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return anyhow::Ok(());
                };
                let now = Timestamp::now();
                let expiration_date = now.plus(lifetime);
                let session = Session {
                    id: id.clone(),
                    resource_owner: user.org_id.clone(),
                    creator_id: user.id.clone(),
                    creation_date: now,
                    change_date: now,
                    sequence: 1,
                    token_hash: token_hash.clone(),
                    factors: Factors {
                        user: Some(UserFactor {
                            id: user.id.clone(),
                            login_name: user.login_name.clone(),
                            display_name: user.display_name.clone(),
                            org_id: user.org_id.clone(),
                            verified_at: now,
                        }),
                        ..Default::default()
                    },
                    metadata: Default::default(),
                    user_agent: Default::default(),
                    expiration_date: Some(expiration_date),
                    terminated_at: None,
                    otp_challenges: Default::default(),
                    passkey_challenge: None,
                };
                let entry = HistoryEntry {
                    session_id: session.id.clone(),
                    sequence: 1,
                    at: now,
                    actor: user.id.clone(),
                    changes: vec![
                        Change::Created,
                        Change::UserChecked { user_id: user.id.clone() },
                        Change::LifetimeSet { expiration_date },
                    ],
                };
                store.create_session(&session, &entry).await.with_context(|| format!("session {id}"))?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    store.close().await;
    println!(
        "loaded {} sessions (pool `{}`, indices {}..{}) in {:.1} s: {:.0}/s",
        args.count,
        args.seed,
        args.start,
        end,
        elapsed.as_secs_f64(),
        args.count as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

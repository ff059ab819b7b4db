//! Load generator for sessiond (and for the ceiling, `examples/ceiling.rs`): drives one or more
//! running servers with DeleteSession, CreateSession or GetSession over gRPC, gRPC-Web, Connect
//! JSON and REST JSON, and measures arms alternately (round 1: A B C, round 2: C B A, ...) so
//! that the machine's drift cancels out of the ratios. A call counts only when it succeeded
//! (HTTP status and grpc-status, or the Connect/REST status and body). Per arm it reports
//! calls/s, p50/p99/p99.9 latency, the server's CPU time per call and its peak RSS.
//!
//! ```sh
//! taskset -c 1 target/release/examples/loadgen \
//!   --server sessiond=127.0.0.1:7001,pid=$SESSIOND_PID --server ceiling=127.0.0.1:7000,pid=$CEILING_PID \
//!   --arm ceiling:grpc:delete --arm sessiond:grpc:delete --arm sessiond:rest:delete \
//!   --token "$TOKEN" --delete-count 400000
//! ```
//!
//! DeleteSession consumes sessions bulk-loaded beforehand (`examples/bulkload.rs`, pool
//! `--delete-seed`, indices from 0 up, each deleted once per server); GetSession reads random
//! sessions among the first `--read-ids` of pool `--read-seed`. With `--rate N` the load is
//! open-loop (N calls/s across all workers, latency counted from each call's scheduled time,
//! so a stalled server cannot hide its queue); otherwise each worker sends as soon as its previous
//! call is answered.

#![allow(clippy::print_stdout)] // a command-line tool: the report goes to standard output

#[path = "../bench_common/mod.rs"]
mod bench_common;
mod procfs;
mod wire;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::{
    body::Incoming,
    client::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::{net::TcpStream, sync::Semaphore};

use self::wire::{CallInput, Failure, Protocol, Rpc};

#[derive(Debug, Parser)]
#[command(
    about = "Drive sessiond (and the ceiling) with Session API calls; report rates, latencies, CPU and RSS",
    args_override_self = true
)]
struct Args {
    /// A server to drive: `NAME=HOST:PORT[,pid=PID][,any-id]` (repeatable). With a pid, its CPU
    /// time and peak RSS are measured; `any-id` marks a server that accepts any session id (the
    /// ceiling), whose DeleteSession calls reuse the pool's ids instead of running out.
    #[arg(long = "server")]
    servers: Vec<String>,
    /// An arm: `SERVER:PROTOCOL[@h1]:RPC`, PROTOCOL one of grpc, grpc-web, connect, rest; RPC one
    /// of delete, create, get; `@h1` sends over HTTP/1.1 (one connection per worker) instead of
    /// h2c (repeatable; measured in the order given, reversed every other round).
    #[arg(long = "arm")]
    arms: Vec<String>,
    /// The arm every other arm's rate is divided by (default: the first).
    #[arg(long)]
    baseline: Option<String>,
    /// Bearer token of the benchmark user (session.read, session.write, session.delete).
    #[arg(long, env = "BENCH_TOKEN", hide_env_values = true, default_value = "")]
    token: String,
    /// Login name CreateSession checks.
    #[arg(long, default_value = "bench")]
    login_name: String,
    /// Pool GetSession reads from, and how many of its sessions (indices 0..N) it picks among.
    #[arg(long, default_value = "bg")]
    read_seed: String,
    #[arg(long, default_value_t = 1000)]
    read_ids: u64,
    /// Pool DeleteSession consumes, and how many sessions it holds on every server.
    #[arg(long, default_value = "del")]
    delete_seed: String,
    #[arg(long, default_value_t = 0)]
    delete_count: u64,
    /// Calls in flight at once (workers).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// h2c connections the workers share (HTTP/1.1 arms always use one per worker).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Rounds; each round runs every arm once.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Measured seconds of one arm in one round.
    #[arg(long, default_value_t = 2.0)]
    round_secs: f64,
    /// Unmeasured seconds before each arm's window (fresh connections, warm caches).
    #[arg(long, default_value_t = 0.5)]
    warmup_secs: f64,
    /// Open loop: this many calls per second in total (default: closed loop, as fast as answered).
    #[arg(long)]
    rate: Option<f64>,
    /// Give up a call after this many seconds (it counts as failed).
    #[arg(long, default_value_t = 10.0)]
    call_timeout_secs: f64,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Title printed above the table (and stored in the JSON).
    #[arg(long, default_value = "")]
    title: String,
    /// Only write the framed gRPC GetSession request for read index 0 to this file (for h2load
    /// `-d`), print its session id, and exit.
    #[arg(long)]
    emit_get_body: Option<PathBuf>,
}

/// A server and the state every arm against it shares.
#[derive(Debug)]
struct Server {
    name: String,
    addr: SocketAddr,
    pid: Option<u32>,
    /// Next index of the delete pool on this server.
    next_delete: AtomicU64,
    /// Ids need not exist: the delete pool wraps around.
    any_id: bool,
}

#[derive(Debug, Clone)]
struct Arm {
    label: String,
    server: Arc<Server>,
    protocol: Protocol,
    http2: bool,
    rpc: Rpc,
}

fn parse_server(spec: &str) -> anyhow::Result<Server> {
    let (name, rest) = spec.split_once('=').context("--server NAME=HOST:PORT[,pid=PID]")?;
    let mut parts = rest.split(',');
    let addr: SocketAddr = parts.next().unwrap_or_default().parse().with_context(|| format!("address in `{spec}`"))?;
    anyhow::ensure!(addr.ip().is_loopback(), "the benchmark only targets loopback addresses, not {addr}");
    let (mut pid, mut any_id) = (None, false);
    for part in parts {
        match part.split_once('=') {
            Some(("pid", value)) => pid = Some(value.parse().with_context(|| format!("pid in `{spec}`"))?),
            None if part == "any-id" => any_id = true,
            _ => bail!("unknown server option `{part}` in `{spec}`"),
        }
    }
    Ok(Server { name: name.to_owned(), addr, pid, next_delete: AtomicU64::new(0), any_id })
}

fn parse_arm(spec: &str, servers: &[Arc<Server>]) -> anyhow::Result<Arm> {
    let [server, protocol, rpc] = spec.split(':').collect::<Vec<_>>()[..] else {
        bail!("--arm SERVER:PROTOCOL[@h1]:RPC, got `{spec}`");
    };
    let server = servers.iter().find(|s| s.name == server).with_context(|| format!("no --server named `{server}`"))?;
    let (protocol, http2) = match protocol.strip_suffix("@h1") {
        Some(p) => (p, false),
        None => (protocol, true),
    };
    Ok(Arm {
        label: spec.to_owned(),
        server: Arc::clone(server),
        protocol: protocol.parse().map_err(anyhow::Error::msg)?,
        http2,
        rpc: rpc.parse().map_err(anyhow::Error::msg)?,
    })
}

/// Settings every worker reads.
#[derive(Debug)]
struct Plan {
    authorization: http::HeaderValue,
    login_name: String,
    read_ids: Vec<String>,
    delete_seed: String,
    delete_count: u64,
    concurrency: usize,
    connections: usize,
    round: Duration,
    warmup: Duration,
    rate: Option<f64>,
    call_timeout: Duration,
}

/// One connection's sending half.
#[derive(Debug, Clone)]
enum Client {
    H2(http2::SendRequest<Full<Bytes>>),
    H1(Arc<tokio::sync::Mutex<http1::SendRequest<Full<Bytes>>>>),
}

impl Client {
    async fn connect(addr: SocketAddr, http2: bool) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await.with_context(|| format!("cannot connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        let io = TokioIo::new(tcp);
        if http2 {
            let (send, connection) = http2::Builder::new(TokioExecutor::new()).handshake(io).await?;
            tokio::spawn(connection);
            Ok(Self::H2(send))
        } else {
            let (send, connection) = http1::handshake(io).await?;
            tokio::spawn(connection);
            Ok(Self::H1(Arc::new(tokio::sync::Mutex::new(send))))
        }
    }

    async fn send(&mut self, request: http::Request<Full<Bytes>>) -> hyper::Result<http::Response<Incoming>> {
        match self {
            Self::H2(send) => {
                send.ready().await?;
                send.send_request(request).await
            }
            // One worker per HTTP/1.1 connection: the lock is never contended.
            Self::H1(send) => {
                let mut send = send.lock().await;
                send.ready().await?;
                send.send_request(request).await
            }
        }
    }
}

/// Open loop: a thread releases one permit per scheduled call; call `k` is due at `start + k/rate`.
#[derive(Debug)]
struct Pacer {
    permits: Arc<Semaphore>,
    taken: AtomicU64,
    start: Instant,
    rate: f64,
    stop: Arc<AtomicBool>,
}

impl Pacer {
    fn start(rate: f64, start: Instant) -> Arc<Self> {
        let pacer = Arc::new(Self {
            permits: Arc::new(Semaphore::new(0)),
            taken: AtomicU64::new(0),
            start,
            rate,
            stop: Default::default(),
        });
        let (permits, stop) = (Arc::clone(&pacer.permits), Arc::clone(&pacer.stop));
        // A thread, not a tokio timer: tokio's timer ticks in milliseconds, too coarse to pace
        // tens of thousands of calls a second evenly.
        std::thread::spawn(move || {
            let mut released = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = (start.elapsed().as_secs_f64() * rate) as u64 + 1;
                if due > released {
                    permits.add_permits((due - released) as usize);
                    released = due;
                }
                // Until the next call is due, but at least 50 us and at most 1 ms per nap (to see
                // `stop`): few wake-ups at low rates, a batch per wake-up at high ones.
                let next = Duration::from_secs_f64(released as f64 / rate).saturating_sub(start.elapsed());
                std::thread::sleep(next.clamp(Duration::from_micros(50), Duration::from_millis(1)));
            }
        });
        pacer
    }

    fn scheduled(&self, k: u64) -> Instant {
        self.start + Duration::from_secs_f64(k as f64 / self.rate)
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What one arm measured in one round.
#[derive(Debug)]
struct RoundResult {
    ok: u64,
    failures: BTreeMap<String, u64>,
    window: Duration,
    latency_us: Histogram<u64>,
    server_cpu: Option<Duration>,
    generator_cpu: Option<Duration>,
    peak_rss_kib: Option<u64>,
    pool_exhausted: bool,
}

impl RoundResult {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }
}

/// What one worker saw.
#[derive(Debug)]
struct WorkerResult {
    ok: u64,
    failures: BTreeMap<String, u64>,
    latency_us: Histogram<u64>,
    pool_exhausted: bool,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

async fn worker(
    arm: Arc<Arm>,
    plan: Arc<Plan>,
    mut client: Client,
    pacer: Option<Arc<Pacer>>,
    window: (Instant, Instant),
    seed: u64,
) -> WorkerResult {
    let (measure_from, end) = window;
    let mut result = WorkerResult { ok: 0, failures: BTreeMap::new(), latency_us: histogram(), pool_exhausted: false };
    let mut rng = seed | 1;
    let authority = arm.server.addr.to_string();
    loop {
        let began = match &pacer {
            Some(pacer) => match tokio::time::timeout_at(end.into(), pacer.permits.acquire()).await {
                Ok(Ok(permit)) => {
                    permit.forget();
                    pacer.scheduled(pacer.taken.fetch_add(1, Ordering::Relaxed))
                }
                _ => break,
            },
            None => Instant::now(),
        };
        if began >= end {
            break;
        }
        let session_id = match arm.rpc {
            Rpc::Delete => {
                let mut index = arm.server.next_delete.fetch_add(1, Ordering::Relaxed);
                if arm.server.any_id {
                    index %= plan.delete_count.max(1);
                } else if index >= plan.delete_count {
                    result.pool_exhausted = true;
                    break;
                }
                bench_common::session_id(&plan.delete_seed, index)
            }
            Rpc::Get => {
                // xorshift64: cheap, and good enough to spread reads.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                plan.read_ids[(rng % plan.read_ids.len() as u64) as usize].clone()
            }
            Rpc::Create => String::new(),
        };
        let input = CallInput {
            authority: &authority,
            authorization: &plan.authorization,
            session_id: &session_id,
            login_name: &plan.login_name,
            http2: arm.http2,
        };
        let request = wire::request(arm.protocol, arm.rpc, &input);
        let outcome = tokio::time::timeout(plan.call_timeout, async {
            match client.send(request).await {
                Ok(response) => wire::check(arm.protocol, arm.rpc, response).await,
                Err(e) => Err(Failure::Transport(e.to_string())),
            }
        })
        .await
        .unwrap_or_else(|_| Err(Failure::Transport("timed out".into())));
        let done = Instant::now();
        if done > end {
            break;
        }
        if done < measure_from {
            continue;
        }
        match outcome {
            Ok(()) => {
                result.ok += 1;
                let micros = u64::try_from(done.duration_since(began).as_micros()).unwrap_or(u64::MAX);
                result.latency_us.saturating_record(micros.max(1));
            }
            Err(failure) => {
                let transport = matches!(failure, Failure::Transport(_));
                *result.failures.entry(failure.to_string()).or_default() += 1;
                if transport {
                    // The connection is gone: stop rather than spin on it.
                    break;
                }
            }
        }
    }
    result
}

async fn run_arm_round(arm: &Arc<Arm>, plan: &Arc<Plan>) -> anyhow::Result<RoundResult> {
    let connections = if arm.http2 { plan.connections.max(1) } else { plan.concurrency };
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(Client::connect(arm.server.addr, arm.http2).await?);
    }
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.round;
    let pacer = plan.rate.map(|rate| Pacer::start(rate, start));
    let workers: Vec<_> = (0..plan.concurrency)
        .map(|w| {
            let client = clients[w % clients.len()].clone();
            let seed = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(w as u64 + 1);
            tokio::spawn(worker(Arc::clone(arm), Arc::clone(plan), client, pacer.clone(), (measure_from, end), seed))
        })
        .collect();
    drop(clients);

    tokio::time::sleep_until(measure_from.into()).await;
    let pid = arm.server.pid;
    let server_before = pid.and_then(|p| procfs::cpu_time(Some(p)));
    let generator_before = procfs::cpu_time(None);
    if let Some(pid) = pid {
        procfs::reset_peak_rss(pid);
    }
    tokio::time::sleep_until(end.into()).await;
    let server_after = pid.and_then(|p| procfs::cpu_time(Some(p)));
    let generator_after = procfs::cpu_time(None);
    let peak_rss_kib = pid.and_then(procfs::peak_rss_kib);
    drop(pacer);

    let mut round = RoundResult {
        ok: 0,
        failures: BTreeMap::new(),
        window: plan.round,
        latency_us: histogram(),
        server_cpu: server_before.zip(server_after).map(|(b, a)| a.saturating_sub(b)),
        generator_cpu: generator_before.zip(generator_after).map(|(b, a)| a.saturating_sub(b)),
        peak_rss_kib,
        pool_exhausted: false,
    };
    for handle in workers {
        let w = handle.await?;
        round.ok += w.ok;
        round.latency_us.add(&w.latency_us)?;
        round.pool_exhausted |= w.pool_exhausted;
        for (failure, n) in w.failures {
            *round.failures.entry(failure).or_default() += n;
        }
    }
    Ok(round)
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 }
}

/// An arm's rounds, summarised.
#[derive(Debug)]
struct Summary {
    rate: f64,
    rates: Vec<f64>,
    ratio_to_baseline: f64,
    ratio_to_grpc: Option<f64>,
    /// The same ratios by server CPU time per call: what the rates would be if each server had
    /// its core to itself (robust when other work on the machine steals the server's core).
    cpu_ratio_to_baseline: Option<f64>,
    cpu_ratio_to_grpc: Option<f64>,
    latency_ms: [f64; 4],
    failures: BTreeMap<String, u64>,
    ok: u64,
    cpu_us_per_call: Option<f64>,
    server_cpu_share: Option<f64>,
    generator_cpu_share: Option<f64>,
    peak_rss_mib: Option<f64>,
    pool_exhausted: bool,
}

fn per_round_ratio(a: &[RoundResult], b: &[RoundResult]) -> f64 {
    median(a.iter().zip(b).map(|(a, b)| a.rate() / b.rate()).collect())
}

fn summarise(arms: &[Arc<Arm>], results: &[Vec<RoundResult>], baseline: usize) -> Vec<Summary> {
    let cpu_per_call: Vec<Option<f64>> = results
        .iter()
        .map(|rounds| {
            let ok: u64 = rounds.iter().map(|r| r.ok).sum();
            let cpu = rounds.iter().map(|r| r.server_cpu).sum::<Option<Duration>>()?;
            (ok > 0).then(|| cpu.as_secs_f64() * 1e6 / ok as f64)
        })
        .collect();
    let cpu_ratio = |a: usize, b: usize| Some(cpu_per_call[b]? / cpu_per_call[a]?);
    arms.iter()
        .enumerate()
        .zip(results)
        .map(|((i, arm), rounds)| {
            let mut latency = histogram();
            let mut failures = BTreeMap::new();
            for r in rounds {
                latency.add(&r.latency_us).expect("same bounds");
                for (f, n) in &r.failures {
                    *failures.entry(f.clone()).or_default() += n;
                }
            }
            let ok: u64 = rounds.iter().map(|r| r.ok).sum();
            let window: f64 = rounds.iter().map(|r| r.window.as_secs_f64()).sum();
            let sum = |f: fn(&RoundResult) -> Option<Duration>| -> Option<f64> {
                rounds.iter().map(f).sum::<Option<Duration>>().map(|d| d.as_secs_f64())
            };
            let server_cpu = sum(|r| r.server_cpu);
            let generator_cpu = sum(|r| r.generator_cpu);
            // The same RPC over gRPC h2c on the same server: what the other protocols are held to.
            let grpc = arms.iter().position(|g| {
                Arc::ptr_eq(&g.server, &arm.server) && g.rpc == arm.rpc && g.protocol == Protocol::Grpc && g.http2
            });
            let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
            Summary {
                rate: median(rounds.iter().map(RoundResult::rate).collect()),
                rates: rounds.iter().map(RoundResult::rate).collect(),
                ratio_to_baseline: per_round_ratio(rounds, &results[baseline]),
                ratio_to_grpc: grpc.map(|g| per_round_ratio(rounds, &results[g])),
                cpu_ratio_to_baseline: cpu_ratio(i, baseline),
                cpu_ratio_to_grpc: grpc.and_then(|g| cpu_ratio(i, g)),
                latency_ms: [ms(0.5), ms(0.99), ms(0.999), latency.max() as f64 / 1000.0],
                failures,
                ok,
                cpu_us_per_call: cpu_per_call[i],
                server_cpu_share: server_cpu.map(|c| c / window),
                generator_cpu_share: generator_cpu.map(|c| c / window),
                peak_rss_mib: rounds.iter().filter_map(|r| r.peak_rss_kib).max().map(|k| k as f64 / 1024.0),
                pool_exhausted: rounds.iter().any(|r| r.pool_exhausted),
            }
        })
        .collect()
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn print_table(title: &str, arms: &[Arc<Arm>], summaries: &[Summary], baseline: usize, args: &Args) {
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate:.0} calls/s (latency from each call's scheduled time)"),
        None => "closed loop".into(),
    };
    println!("\n## {title}\n");
    println!(
        "concurrency {}, {} h2c connection(s), {} rounds x {:.1} s (+{:.1} s warm-up), {mode}; baseline {}\n",
        args.concurrency, args.connections, args.rounds, args.round_secs, args.warmup_secs, arms[baseline].label
    );
    println!(
        "| arm | calls/s | x baseline | x gRPC | p50 ms | p99 ms | p99.9 ms | max ms | server CPU us/call | x baseline by CPU | x gRPC by CPU | server busy | generator busy | peak RSS MiB | failed |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (arm, s) in arms.iter().zip(summaries) {
        let failed: u64 = s.failures.values().sum();
        println!(
            "| {} | {:.0} | {:.3} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {} | {} | {} | {}{} |",
            arm.label,
            s.rate,
            s.ratio_to_baseline,
            opt(s.ratio_to_grpc, 3),
            s.latency_ms[0],
            s.latency_ms[1],
            s.latency_ms[2],
            s.latency_ms[3],
            opt(s.cpu_us_per_call, 1),
            opt(s.cpu_ratio_to_baseline, 3),
            opt(s.cpu_ratio_to_grpc, 3),
            s.server_cpu_share.map_or_else(|| "-".into(), |c| format!("{:.0}%", c * 100.0)),
            s.generator_cpu_share.map_or_else(|| "-".into(), |c| format!("{:.0}%", c * 100.0)),
            opt(s.peak_rss_mib, 1),
            failed,
            if s.pool_exhausted { " (pool exhausted)" } else { "" },
        );
    }
    for (arm, s) in arms.iter().zip(summaries) {
        for (failure, n) in &s.failures {
            println!("- {}: {n} x {failure}", arm.label);
        }
    }
}

fn write_json(
    path: &PathBuf,
    args: &Args,
    arms: &[Arc<Arm>],
    summaries: &[Summary],
    baseline: usize,
) -> anyhow::Result<()> {
    let arms_json: Vec<_> = arms
        .iter()
        .zip(summaries)
        .map(|(arm, s)| {
            json!({
                "arm": arm.label,
                "server": arm.server.name,
                "protocol": arm.protocol.name(),
                "http": if arm.http2 { "h2c" } else { "http/1.1" },
                "rpc": arm.rpc.name(),
                "rate": s.rate,
                "round_rates": s.rates,
                "ratio_to_baseline": s.ratio_to_baseline,
                "ratio_to_grpc": s.ratio_to_grpc,
                "cpu_ratio_to_baseline": s.cpu_ratio_to_baseline,
                "cpu_ratio_to_grpc": s.cpu_ratio_to_grpc,
                "p50_ms": s.latency_ms[0],
                "p99_ms": s.latency_ms[1],
                "p999_ms": s.latency_ms[2],
                "max_ms": s.latency_ms[3],
                "ok": s.ok,
                "failures": s.failures,
                "cpu_us_per_call": s.cpu_us_per_call,
                "server_cpu_share": s.server_cpu_share,
                "generator_cpu_share": s.generator_cpu_share,
                "peak_rss_mib": s.peak_rss_mib,
                "pool_exhausted": s.pool_exhausted,
            })
        })
        .collect();
    let document = json!({
        "title": args.title,
        "baseline": arms[baseline].label,
        "concurrency": args.concurrency,
        "connections": args.connections,
        "rounds": args.rounds,
        "round_secs": args.round_secs,
        "rate": args.rate,
        "arms": arms_json,
    });
    std::fs::write(path, serde_json::to_vec_pretty(&document)?)?;
    Ok(())
}

fn emit_get_body(args: &Args, path: &PathBuf) -> anyhow::Result<()> {
    let session_id = bench_common::session_id(&args.read_seed, 0);
    let authorization = http::HeaderValue::from_static("");
    let input = CallInput {
        authority: "",
        authorization: &authorization,
        session_id: &session_id,
        login_name: "",
        http2: true,
    };
    std::fs::write(path, sessiond::transport::frame::encode_message(&wire::proto_request(Rpc::Get, &input)))?;
    println!("{session_id}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(path) = &args.emit_get_body {
        return emit_get_body(&args, path);
    }
    let servers: Vec<Arc<Server>> =
        args.servers.iter().map(|s| parse_server(s).map(Arc::new)).collect::<anyhow::Result<_>>()?;
    let arms: Vec<Arc<Arm>> =
        args.arms.iter().map(|a| parse_arm(a, &servers).map(Arc::new)).collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!arms.is_empty(), "name at least one --arm");
    anyhow::ensure!(args.rounds > 0 && args.round_secs > 0.0 && args.concurrency > 0, "nothing to measure");
    anyhow::ensure!(args.read_ids > 0, "--read-ids must be positive");
    let baseline = match &args.baseline {
        Some(label) => arms.iter().position(|a| &a.label == label).with_context(|| format!("no arm `{label}`"))?,
        None => 0,
    };
    let plan = Arc::new(Plan {
        authorization: http::HeaderValue::from_str(&format!("Bearer {}", args.token))?,
        login_name: args.login_name.clone(),
        read_ids: (0..args.read_ids).map(|i| bench_common::session_id(&args.read_seed, i)).collect(),
        delete_seed: args.delete_seed.clone(),
        delete_count: args.delete_count,
        concurrency: args.concurrency,
        connections: args.connections,
        round: Duration::from_secs_f64(args.round_secs),
        warmup: Duration::from_secs_f64(args.warmup_secs),
        rate: args.rate,
        call_timeout: Duration::from_secs_f64(args.call_timeout_secs),
    });

    // One thread: the generator is pinned to one core, where a work-stealing pool only adds cost.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let results = runtime.block_on(async {
        let mut results: Vec<Vec<RoundResult>> = arms.iter().map(|_| Vec::new()).collect();
        for round in 0..args.rounds {
            let order: Vec<usize> =
                if round % 2 == 0 { (0..arms.len()).collect() } else { (0..arms.len()).rev().collect() };
            for i in order {
                let r = run_arm_round(&arms[i], &plan).await.with_context(|| format!("arm {}", arms[i].label))?;
                let failed: u64 = r.failures.values().sum();
                eprintln!(
                    "round {}/{} {:<32} {:>8.0} calls/s  p99 {:>7.2} ms  failed {failed}{}",
                    round + 1,
                    args.rounds,
                    arms[i].label,
                    r.rate(),
                    r.latency_us.value_at_quantile(0.99) as f64 / 1000.0,
                    if r.pool_exhausted { "  (delete pool exhausted)" } else { "" }
                );
                results[i].push(r);
            }
        }
        anyhow::Ok(results)
    })?;
    let summaries = summarise(&arms, &results, baseline);
    let title = if args.title.is_empty() { "loadgen" } else { args.title.as_str() };
    print_table(title, &arms, &summaries, baseline, &args);
    if let Some(path) = &args.json {
        write_json(path, &args, &arms, &summaries, baseline)?;
    }
    Ok(())
}

//! Prometheus metrics: one registry per server (no global state), the families an operator alerts
//! on, and `/metrics` on a listener of its own. Every label value comes from a fixed set (the RPCs
//! the descriptors name, the protocol classifier's enum, gRPC code names, static store operation
//! names), never from a caller, so the number of series is bounded.

mod calls;
mod listener;
mod process;
mod store;

use std::{fmt, sync::Arc};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _},
    metrics::{
        MetricType,
        counter::Counter,
        family::Family,
        gauge::ConstGauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

pub use self::calls::{CallMetrics, InFlight, Rpc};
pub use self::listener::serve as serve_metrics;
pub use self::store::TimedStore;
use crate::domain::{
    events::{CheckOutcome, Factor, LoginEvents},
    port::{Store, StoreStats},
    user::LockoutCounter,
};

/// Buckets of latencies, in seconds: 50 µs to ~13 s, each √2 times the last (doubling buckets
/// cannot tell a p99 of 13 ms from one of 25).
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_05, std::f64::consts::SQRT_2, 37)
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    factor: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CounterLabels {
    counter: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Everything a server records; its registry renders `/metrics`.
pub struct Metrics {
    registry: Registry,
    calls: Arc<CallMetrics>,
    store_operations: Family<store::OperationLabels, Histogram, fn() -> Histogram>,
    logins: Family<LoginLabels, Counter>,
    lockouts: Family<CounterLabels, Counter>,
    sweeper_runs: Counter,
    sweeper_rows: Family<KindLabels, Counter>,
    /// Readiness checks the store failed (probes are not calls: they are counted apart).
    readiness_failures: Counter,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// The families, registered; `store` is read at scrape time (WAL size, pool).
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("sessiond");
        let calls = Arc::new(CallMetrics::register(registry));
        let store_operations = Family::<_, _, fn() -> Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register_with_unit(
            "store_operation_duration",
            "Store operations by kind: how long each took",
            Unit::Seconds,
            store_operations.clone(),
        );
        let logins = Family::default();
        registry.register(
            "logins",
            "Credential checks (password, totp, otp_sms, otp_email) by outcome: success, rejected (wrong or \
             unusable credential), locked (the user is locked), error (the server could not decide)",
            logins.clone(),
        );
        let lockouts = Family::default();
        registry.register("lockouts", "Users locked by reaching a failed-check limit, by counter", lockouts.clone());
        let sweeper_runs = Counter::default();
        registry.register("sweeper_runs", "Runs of the sweeper", sweeper_runs.clone());
        let sweeper_rows = Family::default();
        registry.register(
            "sweeper_rows_removed",
            "Rows the sweeper removed: ended sessions, history entries past their retention",
            sweeper_rows.clone(),
        );
        let readiness_failures = Counter::default();
        registry.register(
            "readiness_failures",
            "Readiness checks (/readyz) the store did not pass",
            readiness_failures.clone(),
        );
        registry.register_collector(Box::new(StoreCollector(store)));
        // The process's families carry the names every client uses: no prefix.
        root.register_collector(Box::new(process::ProcessCollector));
        Arc::new(Self {
            registry: root,
            calls,
            store_operations,
            logins,
            lockouts,
            sweeper_runs,
            sweeper_rows,
            readiness_failures,
        })
    }

    /// The per-call metrics, for the front door.
    pub fn calls(&self) -> Arc<CallMetrics> {
        Arc::clone(&self.calls)
    }

    /// The OpenMetrics text of every family.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// One sweeper run that removed `sessions` ended sessions and `history` history entries.
    pub fn swept(&self, sessions: u64, history: u64) {
        self.sweeper_runs.inc();
        self.sweeper_rows.get_or_create(&KindLabels { kind: "sessions" }).inc_by(sessions);
        self.sweeper_rows.get_or_create(&KindLabels { kind: "history" }).inc_by(history);
    }

    pub fn readiness_failed(&self) {
        self.readiness_failures.inc();
    }
}

impl LoginEvents for Metrics {
    fn checked(&self, factor: Factor, outcome: CheckOutcome) {
        self.logins.get_or_create(&LoginLabels { factor: factor.as_str(), outcome: outcome.as_str() }).inc();
    }

    fn locked(&self, counter: LockoutCounter) {
        let counter = match counter {
            LockoutCounter::Password => "password",
            LockoutCounter::OneTimeCode => "one_time_code",
        };
        self.lockouts.get_or_create(&CounterLabels { counter }).inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// What the store tells of itself, read at scrape time.
#[derive(Debug)]
struct StoreCollector(Arc<dyn Store>);

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let StoreStats { wal_bytes, checkpoints, pool } = self.0.stats();
        if let Some(bytes) = wal_bytes {
            let gauge = ConstGauge::new(bytes as i64);
            let metric = encoder.encode_descriptor(
                "sqlite_wal",
                "Size of the SQLite write-ahead log file",
                Some(&Unit::Bytes),
                MetricType::Gauge,
            )?;
            gauge.encode(metric)?;
        }
        if let Some(n) = checkpoints {
            let counter = prometheus_client::metrics::counter::ConstCounter::new(n);
            let metric = encoder.encode_descriptor(
                "sqlite_checkpoints",
                "SQLite checkpoint passes (WAL pages copied into the database file)",
                None,
                MetricType::Counter,
            )?;
            counter.encode(metric)?;
        }
        if let Some(pool) = pool {
            let mut metric = encoder.encode_descriptor(
                "postgres_pool_connections",
                "PostgreSQL connections of the pool, by state",
                None,
                MetricType::Gauge,
            )?;
            for (state, n) in [("idle", pool.idle), ("active", pool.size.saturating_sub(pool.idle))] {
                ConstGauge::new(i64::from(n)).encode(metric.encode_family(&StateLabels { state })?)?;
            }
            let metric = encoder.encode_descriptor(
                "postgres_pool_waiting",
                "Store calls waiting for a PostgreSQL connection",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(pool.waiting as i64).encode(metric)?;
            let metric = encoder.encode_descriptor(
                "postgres_pool_max_connections",
                "The PostgreSQL pool's size limit",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::from(pool.max)).encode(metric)?;
        }
        Ok(())
    }
}

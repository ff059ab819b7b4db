//! The process's own resources, read from `/proc/self` at scrape time under the names every
//! Prometheus client uses (`process_*`); elsewhere than Linux the families are left out.

use std::fmt;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Unit,
};

/// Clock ticks per second of `/proc/self/stat` (USER_HZ: 100 on every Linux architecture's ABI).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug)]
pub(super) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        // These names are everyone's: no `sessiond_` prefix (the registry's applies to registered
        // metrics only, not to what collectors write).
        if let Some(seconds) = cpu_seconds() {
            let metric = encoder.encode_descriptor(
                "process_cpu",
                "User and system CPU time spent",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            ConstCounter::new(seconds).encode(metric)?;
        }
        if let Some(bytes) = resident_bytes() {
            let metric = encoder.encode_descriptor(
                "process_resident_memory",
                "Resident memory size",
                Some(&Unit::Bytes),
                MetricType::Gauge,
            )?;
            ConstGauge::new(bytes as i64).encode(metric)?;
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            let metric =
                encoder.encode_descriptor("process_open_fds", "Open file descriptors", None, MetricType::Gauge)?;
            ConstGauge::new(entries.count() as i64).encode(metric)?;
        }
        if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
            let metric =
                encoder.encode_descriptor("process_max_fds", "The open-files limit", None, MetricType::Gauge)?;
            ConstGauge::new(i64::try_from(soft).unwrap_or(i64::MAX)).encode(metric)?;
        }
        Ok(())
    }
}

/// utime + stime of `/proc/self/stat` (fields 14 and 15; the command name before them may hold
/// spaces, so count from the closing parenthesis).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th from here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn the_process_reads_itself() {
        assert!(super::resident_bytes().is_some_and(|b| b > 0));
        assert!(super::cpu_seconds().is_some());
    }
}

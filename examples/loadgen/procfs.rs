//! What the kernel knows about a process: CPU time (all threads, dead ones included) and peak
//! resident memory, read from `/proc`.

use std::{fs, sync::OnceLock, time::Duration};

/// `sysconf(_SC_CLK_TCK)`: the unit of `utime` and `stime` (asked of `getconf` once; 100 on Linux).
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// `utime + stime` of process `pid` (`None`: this process).
pub(crate) fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let stat = fs::read_to_string(match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    })
    .ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // Fields 14 and 15 of stat(5) are the 12th and 13th after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / clock_ticks()))
}

/// `VmHWM` (peak resident set) of `pid`, in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmHWM:")
}

fn status_field(pid: u32, name: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Restarts `VmHWM` from the current resident set (`clear_refs` value 5, Linux 4.0+), so that the
/// peak read later belongs to the measured window. Fails silently if not permitted.
pub(crate) fn reset_peak_rss(pid: u32) {
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

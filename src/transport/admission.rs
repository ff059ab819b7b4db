//! How many calls are admitted at once: an adaptive limit (tower-acc's `Algorithm`) that keeps
//! what is admitted from queueing behind the store, judged by each call's own time
//! (`call_clock`: time spent waiting for the client's body or a password hash is not queueing).

use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

/// The settings of admission (`--max-in-flight`, `--target-latency-ms`).
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    /// The most calls admitted at once, whatever the latency.
    pub max: usize,
    /// Calls always admitted at once, however slow they are.
    pub floor: usize,
    /// A call's own time past which it is taken as a sign of queueing.
    pub target: Duration,
}

/// How long, and over how many calls, the limit watches before it moves.
const WINDOW: Duration = Duration::from_millis(100);
const WINDOW_CALLS: u32 = 16;

/// The limit, decided once per window (at least 100 ms and 16 calls) from the calls that ended
/// in it:
/// - more than a tenth of them over the target, with more calls in flight than the server
///   completes in the target's time (the rate of the last windows times the target: by Little's
///   law, that many in flight wait about the target each; with fewer, slow calls are slow on
///   their own, not queued): down by a fifth, but never below that number, nor below the floor;
/// - otherwise, while at least half of the limit was in use: up by a tenth;
///
/// and never above the maximum. Under overload it settles where calls take about the target:
/// the queue in front of the store stays as long as the server's own rate makes it, whatever
/// that rate is (a fixed floor is a long queue on a slow machine and a short one on a fast one).
#[derive(Debug, Clone)]
pub struct Little {
    settings: Admission,
    limit: f64,
    /// Calls completed per second, smoothed over windows.
    rate: f64,
    window_start: Instant,
    calls: u32,
    slow: u32,
    busiest: usize,
    /// Where the limit is shown (`sessiond_calls_admission_limit`), when metrics are on.
    shown: Option<Gauge>,
}

impl Little {
    pub fn new(settings: Admission, shown: Option<Gauge>) -> Self {
        let max = settings.max.max(1);
        let settings = Admission { max, floor: settings.floor.clamp(1, max), target: settings.target };
        let little = Self {
            settings,
            limit: max as f64,
            rate: 0.0,
            window_start: Instant::now(),
            calls: 0,
            slow: 0,
            busiest: 0,
            shown,
        };
        little.show();
        little
    }

    fn show(&self) {
        if let Some(gauge) = &self.shown {
            gauge.set(self.limit as i64);
        }
    }

    /// One call ended; `slow` when its own time passed the target. `now` is passed in so that
    /// tests can drive the windows.
    fn ended(&mut self, slow: bool, in_flight: usize, now: Instant) {
        self.calls += 1;
        self.slow += u32::from(slow);
        self.busiest = self.busiest.max(in_flight);
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW || self.calls < WINDOW_CALLS {
            return;
        }
        let rate = f64::from(self.calls) / elapsed.as_secs_f64();
        self.rate = if self.rate == 0.0 { rate } else { (self.rate + rate) / 2.0 };
        let Admission { max, floor, target } = self.settings;
        let sustainable = self.rate * target.as_secs_f64();
        let slow = self.slow * 10 > self.calls;
        if slow && self.busiest as f64 > sustainable {
            self.limit = (self.limit * 0.8).max(sustainable);
        } else if !slow && self.busiest * 2 >= self.limit as usize {
            self.limit += (self.limit * 0.1).max(1.0);
        }
        self.limit = self.limit.clamp(floor as f64, max as f64);
        self.show();
        self.window_start = now;
        self.calls = 0;
        self.slow = 0;
        self.busiest = 0;
    }
}

impl tower_acc::Algorithm for Little {
    fn max_concurrency(&self) -> usize {
        self.limit as usize
    }

    /// `is_error` is what [`Queued`] said of the call: whether its own time passed the target
    /// (tower-acc's round trip counts the excused waits too, so it is not used).
    fn update(&mut self, _rtt: Duration, in_flight: usize, is_error: bool, is_canceled: bool) {
        if !is_canceled {
            self.ended(is_error, in_flight, Instant::now());
        }
    }
}

/// Flags a call whose own time (its clock, `call_clock`) passed the target, for [`Little`].
#[derive(Debug, Clone, Copy)]
pub struct Queued {
    pub target: Duration,
}

impl<T, E> tower_acc::Classifier<T, E> for Queued {
    fn is_server_error(&self, _result: &Result<T, E>) -> bool {
        crate::call_clock::own_time().is_some_and(|own| own > self.target)
    }
}

#[cfg(test)]
mod tests {
    use tower_acc::Algorithm as _;

    use super::*;

    fn settings() -> Admission {
        Admission { max: 1024, floor: 64, target: Duration::from_millis(5) }
    }

    /// Drives `windows` windows of `per_window` calls, a share `slow_share` of them slow, with
    /// `in_flight` calls in flight.
    fn drive(little: &mut Little, windows: u32, per_window: u32, slow_share: f64, in_flight: usize) {
        for _ in 0..windows {
            let start = little.window_start;
            for i in 0..per_window {
                let slow = f64::from(i) < slow_share * f64::from(per_window);
                let at = if i + 1 == per_window { start + WINDOW } else { start };
                little.ended(slow, in_flight, at);
            }
        }
    }

    #[test]
    fn fast_calls_keep_the_limit_open() {
        let mut little = Little::new(settings(), None);
        drive(&mut little, 50, 2_800, 0.0, 1024);
        assert_eq!(little.max_concurrency(), 1024);
    }

    #[test]
    fn queueing_brings_the_limit_to_the_rate_times_the_target() {
        let mut little = Little::new(settings(), None);
        // 28k calls/s, every call slow: the limit falls to 28k x 5 ms = 140, not to the floor.
        drive(&mut little, 60, 2_800, 1.0, 1024);
        let limit = little.max_concurrency();
        assert!((135..=145).contains(&limit), "{limit}");
        // At a tenth of that rate the queue of the same length would be ten times as long.
        let mut slow_machine = Little::new(settings(), None);
        drive(&mut slow_machine, 60, 280, 1.0, 1024);
        assert_eq!(slow_machine.max_concurrency(), 64, "the floor holds");
    }

    #[test]
    fn a_few_slow_calls_do_not_move_it_and_it_reopens_after_overload() {
        let mut little = Little::new(settings(), None);
        drive(&mut little, 60, 2_800, 1.0, 1024);
        assert!(little.max_concurrency() < 200);
        // Overload over: calls are fast again (a few stragglers), and the limit is in use.
        drive(&mut little, 60, 2_800, 0.05, 1024);
        assert_eq!(little.max_concurrency(), 1024);
    }

    #[test]
    fn slow_calls_without_a_queue_leave_it_alone() {
        let mut little = Little::new(settings(), None);
        // Half the calls slow (a store hiccup, say), but only two in flight: no queue to shrink.
        drive(&mut little, 50, 100, 0.5, 2);
        assert_eq!(little.max_concurrency(), 1024);
    }

    #[test]
    fn an_idle_server_does_not_grow_it_and_settings_are_kept_in_range() {
        let mut little = Little::new(Admission { max: 10, floor: 50, target: Duration::from_millis(5) }, None);
        assert_eq!(little.max_concurrency(), 10, "the floor is at most the maximum");
        drive(&mut little, 10, 100, 1.0, 10);
        assert_eq!(little.max_concurrency(), 10);
        let mut little = Little::new(settings(), None);
        drive(&mut little, 30, 2_800, 1.0, 1024);
        let limit = little.max_concurrency();
        drive(&mut little, 30, 2_800, 0.0, 1);
        assert_eq!(little.max_concurrency(), limit, "a limit not in use is not raised");
    }
}

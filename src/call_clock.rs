//! The current call's clock, for admission control: when the call was admitted, and how long it
//! has waited since on what says nothing about the server's queue: its own request body coming
//! from the client, and password hashing, which is slow by design and has a limit of its own
//! (`domain::password`). The in-flight limit (`transport::limits`) judges queueing by the rest,
//! so that a slow client or a burst of logins does not read as an overloaded server.

use std::{
    cell::Cell,
    future::Future,
    time::{Duration, Instant},
};

use tokio::task::futures::TaskLocalFuture;

tokio::task_local! {
    static CLOCK: Clock;
}

/// One call's clock.
#[derive(Debug)]
pub struct Clock {
    admitted: Instant,
    excused: Cell<Duration>,
}

/// Runs `call` with a clock started now.
pub fn start<F: Future>(call: F) -> TaskLocalFuture<Clock, F> {
    CLOCK.scope(Clock { admitted: Instant::now(), excused: Cell::new(Duration::ZERO) }, call)
}

/// Awaits `wait` without counting its time as the call's own.
pub async fn excused<F: Future>(wait: F) -> F::Output {
    let began = Instant::now();
    let output = wait.await;
    excuse(began.elapsed());
    output
}

/// Takes `time` off the call's own time (nothing outside a call).
pub fn excuse(time: Duration) {
    let _ = CLOCK.try_with(|clock| clock.excused.set(clock.excused.get() + time));
}

/// The call's own time so far: since it was admitted, less what was excused; `None` outside a
/// call.
pub fn own_time() -> Option<Duration> {
    CLOCK.try_with(|clock| clock.admitted.elapsed().saturating_sub(clock.excused.get())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn excused_waits_are_not_the_calls_own_time() {
        assert_eq!(own_time(), None, "no clock outside a call");
        let (after_wait, after_work) = start(async {
            excused(tokio::time::sleep(Duration::from_millis(50))).await;
            let after_wait = own_time().unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            (after_wait, own_time().unwrap())
        })
        .await;
        assert!(after_wait < Duration::from_millis(25), "the excused wait counted: {after_wait:?}");
        assert!(after_work >= Duration::from_millis(50), "the call's own time went missing: {after_work:?}");
    }
}

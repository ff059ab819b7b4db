//! The budget for large answers not yet delivered. A ListSessions page may be tens of megabytes,
//! and an HTTP/2 client that opens streams and never grants flow-control window keeps each
//! answer in memory for as long as its connection lives (it answers pings, so nothing times
//! out): one connection with 200 streams could pin gigabytes. So an answer of at least
//! `LARGE_ANSWER` bytes holds a share of a fixed budget until its body is delivered or dropped
//! (`HeldAnswer`, carried in the response's extensions to the transport, which ties it to the
//! body). An answer that finds the budget taken waits for it a while, then is refused with
//! RESOURCE_EXHAUSTED; smaller answers never wait.

use std::{sync::Arc, time::Duration};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use crate::domain::{Error, ErrorClass};

/// Answers from this size (encoded protobuf) on take a share of the budget.
pub const LARGE_ANSWER: usize = 1024 * 1024;
/// The budget's default: about three of the largest pages the limits allow.
pub const DEFAULT_BUDGET: usize = 128 * 1024 * 1024;
/// How long a large answer waits for its share before it is refused.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// Large answers that wait for room at once; past them one is refused at once, since each
/// waits with its answer built.
pub const MAX_WAITING: usize = 4;

/// Shares are counted in KiB, so that a budget of any size fits a semaphore's permits.
const UNIT: usize = 1024;

/// The budget: shared by every call of one server.
#[derive(Debug, Clone)]
pub struct AnswerBudget {
    shares: Arc<Semaphore>,
    units: usize,
    wait: Duration,
    waiting: Arc<Semaphore>,
}

/// A large answer's share of the budget, given back when the last clone is dropped (with the
/// answer's body, once the transport has moved it there).
#[derive(Debug, Clone)]
pub struct HeldAnswer(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

impl AnswerBudget {
    /// A budget of `bytes` (at least one large answer's worth), an answer waiting at most `wait`.
    pub fn new(bytes: usize, wait: Duration) -> Self {
        let units = bytes.max(LARGE_ANSWER) / UNIT;
        Self { shares: Arc::new(Semaphore::new(units)), units, wait, waiting: Arc::new(Semaphore::new(MAX_WAITING)) }
    }

    /// The share of an answer of `bytes`: `None` for a small one; an answer larger than the
    /// whole budget takes all of it.
    pub async fn hold(&self, bytes: usize) -> Result<Option<HeldAnswer>, Status> {
        if bytes < LARGE_ANSWER {
            return Ok(None);
        }
        let units = u32::try_from(bytes.div_ceil(UNIT).min(self.units)).unwrap_or(u32::MAX);
        if let Ok(permit) = Arc::clone(&self.shares).try_acquire_many_owned(units) {
            return Ok(Some(HeldAnswer(Arc::new(permit))));
        }
        // (The budget's semaphore is never closed: a failed acquire is a timeout.)
        let waited = match self.waiting.try_acquire() {
            Ok(_waiting) => {
                tokio::time::timeout(self.wait, Arc::clone(&self.shares).acquire_many_owned(units)).await.ok()
            }
            Err(_) => None,
        };
        match waited.and_then(Result::ok) {
            Some(permit) => Ok(Some(HeldAnswer(Arc::new(permit)))),
            None => Err(Error::new(
                ErrorClass::ResourceExhausted,
                "SERVER-AnswersPending",
                format!(
                    "the server holds {} MiB of large answers that their clients have not read yet; \
                     retry later or ask for a smaller page",
                    (self.units - self.shares.available_permits()) / 1024
                ),
            )
            .into()),
        }
    }
}

impl Default for AnswerBudget {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET, DEFAULT_WAIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn large_answers_share_the_budget_until_dropped_small_ones_never_wait() {
        let budget = AnswerBudget::new(3 * LARGE_ANSWER, Duration::from_millis(50));
        assert!(budget.hold(LARGE_ANSWER - 1).await.unwrap().is_none());
        let first = budget.hold(2 * LARGE_ANSWER).await.unwrap().expect("a share");
        let copy = first.clone();
        let second = budget.hold(LARGE_ANSWER).await.unwrap().expect("the rest");
        let refused = budget.hold(LARGE_ANSWER).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("3 MiB"), "{}", refused.message());
        assert!(budget.hold(10).await.unwrap().is_none(), "small answers pass a full budget");
        drop(first);
        assert!(budget.hold(LARGE_ANSWER).await.is_err(), "a clone still holds the share");
        drop((copy, second));
        // Larger than the whole budget: takes all of it rather than waiting forever.
        let all = budget.hold(100 * LARGE_ANSWER).await.unwrap();
        assert!(all.is_some());

        // While the budget is full, at most `MAX_WAITING` answers wait; the next is refused at once.
        let budget = AnswerBudget::new(LARGE_ANSWER, Duration::from_secs(30));
        let full = budget.hold(LARGE_ANSWER).await.unwrap();
        let waiters: Vec<_> = (0..MAX_WAITING)
            .map(|_| {
                let budget = budget.clone();
                tokio::spawn(async move { budget.hold(LARGE_ANSWER).await.map(|held| held.is_some()) })
            })
            .collect();
        tokio::task::yield_now().await;
        while budget.waiting.available_permits() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let started = std::time::Instant::now();
        assert_eq!(budget.hold(LARGE_ANSWER).await.unwrap_err().code(), tonic::Code::ResourceExhausted);
        assert!(started.elapsed() < Duration::from_secs(30), "refused without waiting");
        drop(full);
        let mut served = 0;
        for waiter in waiters {
            // Each waiter gets the whole budget in turn once the one before it is dropped.
            served += usize::from(waiter.await.unwrap().unwrap());
        }
        assert_eq!(served, MAX_WAITING);
    }
}

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

/// Shares are counted in KiB, so that a budget of any size fits a semaphore's permits.
const UNIT: usize = 1024;

/// The budget: shared by every call of one server.
#[derive(Debug, Clone)]
pub struct AnswerBudget {
    shares: Arc<Semaphore>,
    units: usize,
    wait: Duration,
}

/// A large answer's share of the budget, given back when the last clone is dropped (with the
/// answer's body, once the transport has moved it there).
#[derive(Debug, Clone)]
pub struct HeldAnswer(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

impl AnswerBudget {
    /// A budget of `bytes` (at least one large answer's worth), an answer waiting at most `wait`.
    pub fn new(bytes: usize, wait: Duration) -> Self {
        let units = bytes.max(LARGE_ANSWER) / UNIT;
        Self { shares: Arc::new(Semaphore::new(units)), units, wait }
    }

    /// The share of an answer of `bytes`: `None` for a small one; an answer larger than the
    /// whole budget takes all of it.
    pub async fn hold(&self, bytes: usize) -> Result<Option<HeldAnswer>, Status> {
        if bytes < LARGE_ANSWER {
            return Ok(None);
        }
        let units = u32::try_from(bytes.div_ceil(UNIT).min(self.units)).unwrap_or(u32::MAX);
        match tokio::time::timeout(self.wait, Arc::clone(&self.shares).acquire_many_owned(units)).await {
            Ok(Ok(permit)) => Ok(Some(HeldAnswer(Arc::new(permit)))),
            Ok(Err(_)) => Err(crate::service::status::internal("the answer budget is closed")),
            Err(_) => Err(Error::new(
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
        assert!(budget.hold(100 * LARGE_ANSWER).await.unwrap().is_some());
    }
}
